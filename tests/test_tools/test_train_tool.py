"""tools/train.py (mopro.apis.train_model): one-line errors before
training, what ``--resume`` resumes."""
import glob
import logging
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmpretrain.registry import MODELS

from mopro.apis import train_model
from mopro.config.arguments import check_hook_args
from mopro.engine import MoProRunner
from mopro.engine import resume as runner_utils
from mopro.engine.resume import inexact_resume_reasons
from mopro.utils.errors import ConfigError, is_user_error, one_line
from helpers import ROOT
from helpers.configs import tiny_mopro_options, tool_config
from helpers.data import make_webvision

V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _tiny_options(data_root, work_dir) -> dict:
    options = tiny_mopro_options(data_root, work_dir)
    options.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None,
        'val_evaluator.topk': [1],
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None
    })
    return options


def _save_model(path, data_root, **model_options) -> str:
    """A checkpoint of this project's format: the tiny v1 model, changed by
    ``model_options``."""
    cfg = Config.fromfile(V1)
    cfg.merge_from_dict(tiny_mopro_options(data_root, '.'))
    cfg.merge_from_dict({f'model.{k}': v for k, v in model_options.items()})
    model = MODELS.build(cfg.model)
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def bad_inputs(tmp_path_factory):
    """Configs and checkpoints a user may get wrong."""
    tmp = tmp_path_factory.mktemp('bad_inputs')
    data_root = make_webvision(str(tmp / 'webvision'))
    paths = dict(data_root=data_root, tmp=tmp)
    paths['good'] = tmp / 'good.py'
    paths['good'].write_text(f'_base_ = [{V1!r}]\n')
    paths['broken'] = tmp / 'broken.py'
    paths['broken'].write_text(
        f'_base_ = [{V1!r}]\nmodel = dict(momentum=0.99\n')
    paths['broken_base'] = tmp / 'broken_base.py'
    paths['broken_base'].write_text("_base_ = ['./broken.py']\n")
    paths['empty'] = tmp / 'empty.pth'
    paths['empty'].write_bytes(b'')
    # a torchvision-style state dict: no meta, no MoPro names
    paths['torchvision'] = tmp / 'resnet18.pth'
    torch.save(
        dict(
            torch.nn.Conv2d(3, 64, 7).state_dict(),
            **{'fc.weight': torch.zeros(10, 512)}), paths['torchvision'])
    paths['five_classes'] = _save_model(tmp / 'five.pth', data_root,
                                        num_classes=5)
    paths['resnet34'] = _save_model(tmp / 'r34.pth', data_root,
                                    **{'backbone.depth': 34})
    paths['missing'] = tmp / 'missing.pth'
    # the same tree with empty training lists
    paths['empty_root'] = make_webvision(str(tmp / 'empty_lists'))
    for source in ('google', 'flickr'):
        (tmp / 'empty_lists' / 'info' /
         f'train_filelist_{source}.txt').write_text('')
    return paths


def _train_argv(bad_inputs, name, config, *extra) -> list:
    """``config`` shrunk to one tiny CPU epoch, work dir per case."""
    work_dir = str(bad_inputs['tmp'] / name)
    options = [a for a in extra if '=' in a]
    flags = [a for a in extra if '=' not in a]
    tiny = _tiny_options(bad_inputs['data_root'], work_dir)
    return [
        str(config), '--cfg-options', *[f'{k}={v}' for k, v in tiny.items()],
        *options, *flags
    ]


def _train(bad_inputs, name, config, *extra) -> None:
    """train_model on ``config`` shrunk as ``_train_argv`` does; ``extra``:
    ``key=value`` options and ``--resume CKPT``."""
    options = _tiny_options(bad_inputs['data_root'],
                            str(bad_inputs['tmp'] / name))
    # values parsed as --cfg-options parses them
    options.update(
        (key, DictAction._parse_iterable(value))
        for key, value in (a.split('=', 1) for a in extra if '=' in a))
    flags = [a for a in extra if '=' not in a]
    resume = flags[1] if flags[:1] == ['--resume'] else None
    train_model(tool_config(config, options), resume=resume)


@pytest.mark.slow
def test_a_user_error_is_one_line_on_stderr(bad_inputs):
    """As a user meets it: exit status 1, one line on stderr."""
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        *_train_argv(bad_inputs, 'syntax', bad_inputs['broken'])
    ], env=dict(
        os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=os.pathsep.join(
            filter(None, [ROOT, os.environ.get('PYTHONPATH')]))),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr == (f'error: {bad_inputs["broken"]}:2: syntax '
                             "error: '(' was never closed\n")


SEEDED = 'ResumableSampler or SqrtBalancedSampler'
RESUME_WARNINGS = {
    'shipped': ({}, []),
    'default_sampler': ({
        'train_dataloader.sampler.type': 'DefaultSampler'
    }, [f'train_dataloader.sampler.type is DefaultSampler, not {SEEDED}']),
    'no_seed': ({
        'randomness.seed': None
    }, ['randomness.seed is None (a new seed at every start)']),
}


@pytest.mark.parametrize('case', list(RESUME_WARNINGS))
def test_train_warns_when_a_resume_would_not_repeat_the_run(
        bad_inputs, monkeypatch, case):
    """The views of a resumed run repeat the uninterrupted run's only with
    a seeded sampler and a fixed seed: otherwise train_model warns, before
    the Runner is built."""
    options, reasons = RESUME_WARNINGS[case]
    logged = []
    monkeypatch.setattr(runner_utils, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))

    def stop(cfg):
        raise KeyboardInterrupt  # no training: the warnings come before

    monkeypatch.setattr(MoProRunner, 'from_cfg', stop)
    cfg = tool_config(
        bad_inputs['good'],
        dict(
            _tiny_options(bad_inputs['data_root'],
                          str(bad_inputs['tmp'] / 'warn')), **options))
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg)
    suffix = (': a resumed run will not repeat an uninterrupted one '
              '(docs/reliability.md)')
    warnings = [
        msg for msg, kwargs in logged if kwargs.get('level') == logging.WARNING
    ]
    assert warnings == [reason + suffix for reason in reasons]


def test_every_shipped_training_config_resumes_exactly():
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))):
        assert inexact_resume_reasons(Config.fromfile(path)) == [], path


CASES = {
    'syntax_in_base': ('broken_base', (), '{broken}:2: syntax error'),
    'checkpoint_key':
    ('good', ('default_hooks.checkpoint.max_keep_ckpt=1', ),
     'default_hooks.checkpoint.max_keep_ckpt: SafeCheckpointHook has no '
     "argument 'max_keep_ckpt' (did you mean 'max_keep_ckpts'?)"),
    'resume_missing': ('good', ('--resume', '{missing}'),
                       '--resume {missing}: no such checkpoint file'),
    'resume_empty':
    ('good', ('--resume', '{empty}'), '{empty}: checkpoint file is empty'),
    'resume_weights': ('good', ('--resume', '{torchvision}'),
                       '{torchvision}: not a checkpoint of a training run'),
    'load_from_torchvision':
    ('good', ('load_from={torchvision}', ),
     '{torchvision}: expected a mopro checkpoint, got neither'),
    'load_from_classes': ('good', ('load_from={five_classes}', ),
                          '{five_classes}: checkpoint has 5 classes'),
    'load_from_depth': ('good', ('load_from={resnet34}', ),
                        '{resnet34}: checkpoint is a ResNet-34'),
    # values torch, numpy or mmengine used to reject only once they used
    # them, after the model was built and the lists were read
    'lr_negative': ('good', ('optim_wrapper.optimizer.lr=-0.1', ),
                    'optim_wrapper.optimizer.lr must be >= 0, got -0.1'),
    'lr_text': ('good', ('optim_wrapper.optimizer.lr=abc', ),
                "optim_wrapper.optimizer.lr must be a number >= 0, got 'abc'"),
    'batch_zero': ('good', ('train_dataloader.batch_size=0', ),
                   'train_dataloader.batch_size must be >= 1, got 0'),
    'val_batch_zero': ('good', ('val_dataloader.batch_size=0', ),
                       'val_dataloader.batch_size must be >= 1, got 0'),
    'workers_negative': ('good', ('train_dataloader.num_workers=-1', ),
                         'train_dataloader.num_workers must be >= 0, got -1'),
    'seed_negative':
    ('good', ('randomness.seed=-1', ), 'randomness.seed must be >= 0, got -1'),
    'seed_too_large': ('good', ('randomness.seed=4294967296', ),
                       'randomness.seed must be <= 2**32 - 1, got 4294967296'),
    'logger_interval_zero':
    ('good', ('default_hooks.logger.interval=0', ),
     'default_hooks.logger.interval must be >= 1, got 0'),
    # the model's arguments as the hooks': the registered class's keywords
    'model_key': ('good', ('model.threshhold=0.5', ),
                  "model.threshhold: MoPro has no argument 'threshhold' "
                  "(did you mean 'threshold'?)"),
    'backbone_key': ('good', ('model.backbone.dept=18', ),
                     "model.backbone.dept: ResNet has no argument 'dept' "
                     "(did you mean 'depth'?)"),
    'backbone_depth': ('good', ('model.backbone.depth=19', ),
                       'model.backbone.depth: ResNet has no depth 19 (it has '
                       '18, 34, 50, 101, 152)'),
    'backbone_type': ('good', ('model.backbone.type=ResNett', ),
                      "model.backbone.type: no model named 'ResNett' is "
                      "registered (did you mean 'ResNet'?)"),
    'dataset_type': ('good', ('train_dataloader.dataset.type=Nope', ),
                     "train_dataloader.dataset.type: no dataset named 'Nope' "
                     'is registered'),
    'sampler_type':
    ('good', ('train_dataloader.sampler.type=ResumableSamplr', ),
     "train_dataloader.sampler.type: no sampler named 'ResumableSamplr' is "
     "registered (did you mean 'ResumableSampler'?)"),
    'transform_key':
    ('good', ('train_dataloader.dataset.pipeline.1.transforms.0.0.scal=32', ),
     'train_dataloader.dataset.pipeline.1.transforms.0.0.scal: '
     "RandomResizedCrop has no argument 'scal' (did you mean 'scale'?)"),
    'transform_value':
    ('good', ('train_dataloader.dataset.pipeline.1.transforms.0.0.scale=0', ),
     'train_dataloader.dataset.pipeline.1.transforms.0.0: RandomResizedCrop '
     'rejects its arguments: assert scale > 0'),
    'empty_list':
    ('good', ('train_dataloader.dataset.data_root={empty_root}', ),
     'WebVision train at {empty_root}: the dataset is empty (no image in '
     'google, flickr)'),
}


@pytest.mark.parametrize('case', list(CASES))
def test_user_errors_are_one_line_before_training(bad_inputs, case):
    """A config or hook key, ``--resume CKPT`` or ``load_from`` that is
    wrong: a user error (run_tool prints it as one line and exits with 1,
    tests/test_utils/test_cli.py) whose message names the file, line or
    key, raised before any checkpoint is written."""
    config, extra, message = CASES[case]
    extra = [e.format(**bad_inputs) for e in extra]
    with pytest.raises(Exception) as info:  # noqa: B017 (checked below)
        _train(bad_inputs, case, bad_inputs[config], *extra)
    assert is_user_error(info.value), repr(info.value)
    assert message.format(**bad_inputs) in one_line(info.value)
    assert '\n' not in str(info.value)
    assert not osp.exists(bad_inputs['tmp'] / case / 'epoch_1.pth')


def test_unknown_hook_arguments_name_the_key():
    cfg = Config.fromfile(V1)
    check_hook_args(cfg)  # the configs' own hooks pass
    cfg.custom_hooks[0].start_clean_epch = 3
    with pytest.raises(
            ConfigError, match=r"^custom_hooks\.0\."
            r"start_clean_epch: MoProHook has no argument "
            r"'start_clean_epch' \(did you mean "
            r"'start_clean_epoch'\?\)$"):
        check_hook_args(cfg)
    cfg = Config.fromfile(V1)
    cfg.default_hooks.logger.intervall = 5
    with pytest.raises(ConfigError, match=r'^default_hooks\.logger\.'):
        check_hook_args(cfg)
    cfg = Config.fromfile(V1)
    cfg.default_hooks.checkpoint.type = 'CheckpointHok'
    with pytest.raises(
            ConfigError, match=r"^default_hooks\.checkpoint\."
            r"type: no hook named 'CheckpointHok'"):
        check_hook_args(cfg)


def _checkpoint(path, epoch) -> str:
    """What --resume needs of a training run's checkpoint."""
    torch.save(
        dict(
            meta=dict(epoch=epoch, iter=8 * epoch),
            state_dict=dict(w=torch.zeros(1)), message_hub={}), path)
    return str(path)


@pytest.fixture
def work_dir_cfg(tmp_path):
    cfg = Config.fromfile(V1)
    cfg.work_dir = str(tmp_path)
    return cfg


def test_resume_follows_a_valid_pointer(work_dir_cfg, tmp_path):
    _checkpoint(tmp_path / 'epoch_1.pth', 1)
    named = _checkpoint(tmp_path / 'epoch_2.pth', 2)
    _checkpoint(tmp_path / 'epoch_3.pth', 3)  # newer, not named
    (tmp_path / 'last_checkpoint').write_text(named)
    assert runner_utils.find_resumable_checkpoint(work_dir_cfg) == named
    runner_utils.resolve_checkpoints(work_dir_cfg, 'auto')
    assert work_dir_cfg.resume and work_dir_cfg.load_from == named


@pytest.fixture
def logged(monkeypatch) -> list:
    """The lines mopro.engine.resume logs."""
    lines = []
    monkeypatch.setattr('mopro.engine.resume.print_log',
                        lambda msg, **kwargs: lines.append(msg))
    return lines


@pytest.mark.parametrize(
    'pointer', ['empty', 'missing file', 'truncated file', 'no pointer'])
def test_a_broken_pointer_resumes_the_newest_complete_checkpoint(
        work_dir_cfg, tmp_path, pointer, logged):
    _checkpoint(tmp_path / 'epoch_1.pth', 1)
    newest = _checkpoint(tmp_path / 'epoch_2.pth', 2)
    data = open(newest, 'rb').read()
    (tmp_path / 'epoch_3.pth').write_bytes(data[:len(data) // 2])
    text = {
        'empty': '',
        'missing file': str(tmp_path / 'epoch_9.pth'),
        'truncated file': str(tmp_path / 'epoch_3.pth')
    }.get(pointer)
    if text is not None:
        (tmp_path / 'last_checkpoint').write_text(text)
    assert runner_utils.find_resumable_checkpoint(work_dir_cfg) == newest
    expected = {
        'empty': 'last_checkpoint is empty',
        'missing file': 'last_checkpoint names a missing file, ',
        'truncated file': 'last_checkpoint names an incomplete file, ',
        'no pointer': f'no {tmp_path}/last_checkpoint',
    }[pointer]
    assert len(logged) == 1
    assert expected in logged[0]
    assert logged[0].endswith(
        f': resuming from the newest complete checkpoint, {newest}')


def test_nothing_to_resume_starts_from_epoch_1(work_dir_cfg, tmp_path, logged):
    (tmp_path / 'last_checkpoint').write_text('')
    work_dir_cfg.load_from = None
    runner_utils.resolve_checkpoints(work_dir_cfg, 'auto')
    assert not work_dir_cfg.resume and work_dir_cfg.load_from is None
    assert logged[-1] == f'no checkpoint in {tmp_path}: starting from epoch 1'
