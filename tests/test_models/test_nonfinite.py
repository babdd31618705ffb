"""The non-finite guard of the classifiers (cross-entropy baselines, cRT,
fine-tuning): the same raise/skip behaviour as MoPro's
(``test_algorithms/test_mopro_nonfinite.py``), on the real configs."""
import os.path as osp

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mopro.apis import train_model
from mopro.engine import NonFiniteCheckHook
from mopro.models.nonfinite import NonFiniteError
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.configs import tool_config
from helpers.data import make_webvision

K = 4


def classifier(**overrides):
    cfg = dict(type='CompilableImageClassifier',
               backbone=dict(type='ResNet',
                             depth=18), neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=K, in_channels=512))
    cfg.update(overrides)
    torch.manual_seed(0)
    return MODELS.build(cfg).train()


def batch(seed, nan=False):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(8, 3, 32, 32, generator=gen)
    if nan:
        inputs[0, 0, 0, 0] = float('nan')
    return inputs, [DataSample().set_gt_label(i % K) for i in range(8)]


def test_raise_reports_at_the_next_step_and_on_check():
    model = classifier()
    model.loss(*batch(0, nan=True))  # only records the device flag
    with pytest.raises(
            NonFiniteError, match='CompilableImageClassifier: '
            'non-finite loss in a recent iteration'):
        model.loss(*batch(1))
    model.loss(*batch(2, nan=True))
    with pytest.raises(NonFiniteError, match='loss=nan'):
        model.finite_guard.check()


def test_skip_gives_zero_loss_and_restores_batchnorm():
    model = classifier(nonfinite='skip')
    model.loss(*batch(0))
    before = {n: b.clone() for n, b in model.named_buffers()}
    losses = model.loss(*batch(1, nan=True))
    assert losses['loss'].item() == 0.0
    losses['loss'].backward()
    assert all(
        torch.isfinite(p.grad).all() and not p.grad.any()
        for p in model.parameters() if p.grad is not None)
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name
    assert model.finite_guard.num_skipped == 1


def test_hook_needs_a_guarded_model():
    runner = type('Runner', (), dict(model=torch.nn.Linear(2, 2)))
    with pytest.raises(
            ConfigError, match='NonFiniteCheckHook needs a model '
            'with a finite_guard'):
        NonFiniteCheckHook().before_train(runner)


def train_ce_demo(root, work_dir, **extra):
    """tools/train.py's work (mopro.apis.train_model) on the demo's
    cross-entropy config, shrunk to one epoch of ``root``."""
    options = {
        'model.head.num_classes': K,
        'model.data_preprocessor.num_classes': K,
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.num_classes': K,
        'train_dataloader.batch_size': 8,
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.num_classes': K,
        'train_cfg.max_epochs': 1,
        'default_hooks.checkpoint.interval': 1,
        'work_dir': work_dir,
    }
    options.update(extra)
    train_model(
        tool_config(osp.join(ROOT, 'configs', 'ce_r18_demo.py'), options))


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_webvision(
        str(tmp_path_factory.mktemp('ce') / 'webvision'), num_classes=K,
        size=32)


def test_ce_baseline_at_a_huge_lr_stops_without_a_checkpoint(
        demo_root, tmp_path):
    # the demo's cross-entropy baseline diverges at lr=1e6: the run stops
    # with the guard's error, and no checkpoint of NaN weights is written
    work = tmp_path / 'work'
    with pytest.raises(NonFiniteError, match='non-finite loss'):
        train_ce_demo(demo_root, str(work),
                      **{'optim_wrapper.optimizer.lr': 1e6})
    assert not list(work.glob('*.pth'))


def test_ce_baseline_skip_stops_after_consecutive_skips(demo_root, tmp_path):
    work = tmp_path / 'work'
    with pytest.raises(NonFiniteError, match='2 iterations in a row'):
        train_ce_demo(
            demo_root, str(work), **{
                'optim_wrapper.optimizer.lr': 1e6,
                'model.nonfinite': 'skip',
                'model.max_consecutive_skips': 2
            })
    assert not list(work.glob('*.pth'))
