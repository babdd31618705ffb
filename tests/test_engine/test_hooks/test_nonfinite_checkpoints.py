"""``model.nonfinite='skip'`` at a learning rate that makes the run
diverge: no checkpoint holds NaN or infinity, and the last good one stays.

The lr is multiplied by 1e5 after the first epoch (a ``MultiStepLR``): the
first epoch's checkpoint is good, the second epoch's steps overflow the
BatchNorm running variance while their losses stay finite.
Run through ``tools/train.py``'s work (``mopro.apis.train_model``) on the
tiny v1 MoPro config and on the demo's cross-entropy classifier, with
``max_keep_ckpts=1``: before the fix, ``epoch_2.pth`` held non-finite
running variances and ``epoch_1.pth`` was gone.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mopro.apis import train_model
from mopro.checkpoint import load_checkpoint
from helpers import ROOT
from helpers.commands import launcher_env
from helpers.configs import tiny_mopro_options, tool_config
from helpers.data import make_webvision
from helpers.log_records import log_messages

K = 4
DIVERGING = {
    'train_cfg.max_epochs':
    2,
    'train_cfg.val_interval':
    100,
    'visualizer.vis_backends':
    None,
    'model.nonfinite':
    'skip',
    'param_scheduler':
    [dict(type='MultiStepLR', by_epoch=True, milestones=[1], gamma=1e5)],
    'default_hooks.checkpoint.interval':
    1,
    'default_hooks.checkpoint.max_keep_ckpts':
    1,
}


def _mopro_options(root: str, work_dir: str) -> dict:
    options = tiny_mopro_options(root, work_dir, K)
    options.update(test_dataloader=None, test_evaluator=None, test_cfg=None)
    return options


def _ce_options(root: str, work_dir: str) -> dict:
    return {
        'model.head.num_classes': K,
        'model.data_preprocessor.num_classes': K,
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.num_classes': K,
        'train_dataloader.batch_size': 8,
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.num_classes': K,
        'work_dir': work_dir,
    }


RUNS = {
    'mopro': ('mopro_r50_webvision_v1.py', _mopro_options),
    'cross_entropy': ('ce_r18_demo.py', _ce_options),
}


def non_finite_tensors(path: str) -> list:
    """The names of the weights, buffers and optimizer states of a
    checkpoint that hold NaN or infinity."""
    ckpt = load_checkpoint(path)
    named = list(ckpt['state_dict'].items()) + [
        (f'optimizer.{i}.{k}', v)
        for i, state in ckpt['optimizer']['state'].items()
        for k, v in state.items()
    ]
    return [
        name for name, value in named if torch.is_tensor(value)
        and value.is_floating_point() and not torch.isfinite(value).all()
    ]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    return make_webvision(
        str(tmp_path_factory.mktemp('diverging')), num_classes=K, size=32)


@pytest.mark.slow
@pytest.mark.parametrize('model', list(RUNS))
def test_skip_keeps_checkpoints_finite(data_root, tmp_path, model):
    config, options = RUNS[model]
    work = tmp_path / 'work'
    cfg_options = dict(options(data_root, str(work)), **DIVERGING)
    train_model(tool_config(osp.join(ROOT, 'configs', config), cfg_options))
    checkpoints = sorted(p.name for p in work.glob('*.pth'))
    assert checkpoints == ['epoch_2.pth']
    assert non_finite_tensors(str(work / 'epoch_2.pth')) == []


def test_skip_restores_statistics_that_overflowed_under_a_finite_loss():
    """Huge inputs overflow BatchNorm's running variance to infinity while
    the normalised output, and the loss, stay finite: the step is skipped
    all the same, its statistics put back."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='CompilableImageClassifier', nonfinite='skip',
             backbone=dict(type='ResNet',
                           depth=18), neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=K,
                       in_channels=512))).train()
    labels = [DataSample().set_gt_label(i % K) for i in range(4)]
    model.loss(torch.randn(4, 3, 32, 32), labels)
    before = {name: buf.clone() for name, buf in model.named_buffers()}
    with log_messages() as logged:
        losses = model.loss(torch.randn(4, 3, 32, 32) * 1e25, labels)
    assert losses['loss'].item() == 0.0
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name
    assert model.finite_guard.num_skipped == 1
    assert logged[0].startswith(
        'CompilableImageClassifier: skipped an iteration with non-finite '
        'BatchNorm statistics (backbone.bn1.running_var (')


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_a_launched_job_stops_on_every_rank(data_root, tmp_path):
    """tools/dist_train.sh, 2 CPU processes: rank 1's BatchNorm statistics
    turn infinite at the end of epoch 2. Both ranks stop with the one line
    before the checkpoint (rank 0, whose own state is finite, names another
    rank's tensor), at once rather than after the collective timeout
    (rank 0 alone writes checkpoints: a check there would wait for rank 1
    forever); epoch 1's checkpoint stays."""
    config = tmp_path / 'diverging.py'
    v1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
    config.write_text(
        f'_base_ = [{v1!r}]\n'
        "custom_imports = dict(imports=['mopro', 'helpers.diverge_hook'])\n"
        "custom_hooks = [dict(type='MoProHook'), "
        "dict(type='DivergeOnRank', rank=1, epoch=1)]\n")
    work = tmp_path / 'work'
    options = dict(
        _mopro_options(data_root, str(work)), **{
            'train_cfg.max_epochs': 2,
            'train_cfg.val_interval': 100,
            'visualizer.vis_backends': None,
            'default_hooks.checkpoint.max_keep_ckpts': 1,
        })
    env = launcher_env()
    env['PYTHONPATH'] = os.pathsep.join(
        [env['PYTHONPATH'], osp.join(ROOT, 'tests')])
    result = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'),
        str(config), '2', '--cfg-options',
        *[f'{k}={v}' for k, v in options.items()]
    ], env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode != 0
    errors = sorted(line for line in result.stderr.splitlines()
                    if line.startswith('error: '))
    assert errors == [
        'error: the checkpoint of epoch 2 is not written: '
        f'{bad} is NaN or infinite, the run has diverged; the checkpoints '
        f'written before are kept (--resume continues from the last one, '
        f'in {work}): lower the learning rate or check the data'
        for bad in ('a tensor of another rank',
                    'state_dict.backbone.bn1.running_var (64 of 64 values)')
    ], result.stderr[-3000:]
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
