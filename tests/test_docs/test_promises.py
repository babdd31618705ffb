"""Each promise of docs/reliability.md and each message of
docs/troubleshooting.md, run as a user meets it, one small case each: a
claim that stops holding fails here.

- Every top-level bullet and table row of reliability.md holds the phrase
  of one case of ``PROMISES``, and so does every row of troubleshooting.md's
  table of ``MESSAGES``: a promise or row without a case fails the
  coverage tests, and so does a case whose phrase the page no longer
  holds.
- A promise's case makes the claim happen on the tiny configs (the tools
  in this process, ``helpers.commands.call_tool``, where a user meets it
  through a tool) and checks it.
- A message's case makes the mistake and returns what was printed or
  logged: each code span of the row's first cell must match one of them,
  its placeholders (``<...>``, ``...``, ``N``, ``W x H``, numbers, ``0x..``)
  standing for any value.

A claim that only holds on CUDA is marked ``gpu``; the one that only shows
without CUDA (a GPU config on a CPU) is skipped on CUDA.
"""
import argparse
import datetime
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
from types import SimpleNamespace
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample
from PIL import Image

from mopro.checkpoint import (CheckpointError, load_checkpoint,
                              load_model_weights)
from mopro.datasets.seeding import SeededIndex
from mopro.datasets.transforms.loading import decode_rgb
from mopro.engine import MoProRunner, NonFiniteCheckHook
from mopro.engine.launch import check_launched_gpu, init_launched_group
from mopro.models.nonfinite import NonFiniteError
from mopro.utils.errors import (TRACEBACK_ENV, ConfigError, DataError,
                                UserError, run_tool)
from mopro.utils.fileio import AtomicLocalBackend, write_json
from helpers import ROOT
from helpers.commands import call_tool, free_port, tool_module
from helpers.configs import (tiny_mopro_cfg, tiny_mopro_options, tool_config,
                             untrained_checkpoint)
from helpers.data import make_webvision
from helpers.gpu_views import dirty_files, gpu_data_cfg, train_recording
from helpers.log_records import log_messages
from helpers.models import build as build_mopro
from helpers.models import samples, views
from helpers.toy_runner import Killed, toy_runner

K = 4
V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
CE = osp.join(ROOT, 'configs', 'ce_r18_demo.py')
RELIABILITY = osp.join(ROOT, 'docs', 'reliability.md')
TROUBLESHOOTING = osp.join(ROOT, 'docs', 'troubleshooting.md')

Case = Callable[[SimpleNamespace], object]
PROMISES: Dict[str, Case] = {}
MESSAGES: Dict[str, Case] = {}
GPU_ONLY = set()
SLOW = set()


def promise(*phrases: str, gpu: bool = False, slow: bool = False):
    """Register a case for the reliability.md items holding ``phrases``;
    ``gpu`` and ``slow`` give its tests those markers."""

    def register(case: Case) -> Case:
        for phrase in phrases:
            PROMISES[phrase] = case
            if gpu:
                GPU_ONLY.add(phrase)
            if slow:
                SLOW.add(phrase)
        return case

    return register


def message(*prefixes: str):
    """Register a case for the troubleshooting.md rows holding
    ``prefixes``; the case returns the messages it produced."""

    def register(case: Case) -> Case:
        for prefix in prefixes:
            MESSAGES[prefix] = case
        return case

    return register


# ----------------------------------------------------------------------
# the pages
def _read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def reliability_items() -> List[str]:
    """The top-level bullets (continuation lines joined) and table rows
    (but headers) of reliability.md."""
    items, current = [], None
    for line in _read(RELIABILITY).splitlines():
        if line.startswith(('- ', '| ')):
            if current:
                items.append(current)
            current = line
        elif line.startswith('  ') and current and current.startswith('- '):
            current += ' ' + line.strip()
        elif current:
            items.append(current)
            current = None
    if current:
        items.append(current)
    return [
        item for item in items
        if not item.startswith(('| `model.nonfinite`', '| ---'))
    ]


def troubleshooting_rows() -> List[str]:
    """The first cells of troubleshooting.md's table."""
    rows = [
        line.strip().strip('|').split(' | ')[0].strip()
        for line in _read(TROUBLESHOOTING).splitlines()
        if line.startswith('| ')
    ]
    return [row for row in rows if row not in ('message', '---')]


def _the_one(text: str, registry: Dict[str, Case]) -> List[str]:
    return [key for key in registry if key in text]


def documented(cell: str) -> List[re.Pattern]:
    """A pattern for each code span of a table cell: placeholders match any
    value."""
    patterns = []
    for span in re.findall(r'`([^`]+)`', cell):
        regex = ''
        for part in re.split(r'(<[^>]+>|\s*\.\.\.\s*|0x\.\.|\b[NMWH]\b|\d+)',
                             span):
            if not part:
                continue
            if part.startswith('<') and part.endswith('>'):
                regex += '.+?'
            elif part.strip() == '...':
                regex += '.*?'
            elif part == '0x..':
                regex += '0x[0-9a-f]{2}'
            elif re.fullmatch(r'[NMWH]|\d+', part):
                regex += r'\d+'
            else:
                regex += re.escape(part)
        patterns.append(re.compile(regex))
    return patterns


# ----------------------------------------------------------------------
# the user's world: a tiny WebVision, the v1 config shrunk, its checkpoint
@pytest.fixture(scope='module')
def world(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp('promises')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    options = tiny_mopro_options(root, '.', K)
    ckpt = untrained_checkpoint(V1, options, str(tmp / 'mopro.pth'))
    return SimpleNamespace(tmp=tmp, root=root, ckpt=ckpt)


@pytest.fixture
def ctx(world, tmp_path, capsys, monkeypatch) -> SimpleNamespace:
    return SimpleNamespace(world=world, tmp=tmp_path, capsys=capsys,
                           monkeypatch=monkeypatch)


def tiny(root: str, **extra) -> dict:
    """``--cfg-options`` of a one-epoch CPU run of the v1 config."""
    options = tiny_mopro_options(root, '.', K)
    del options['work_dir']
    options.update({
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 100,
        'visualizer.vis_backends': None,
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None,
    })
    options.update(extra)
    return options


def train(ctx, *flags, config: str = V1, work=None, **extra):
    """``tools/train.py`` on ``config`` shrunk by :func:`tiny`, in this
    process; its work dir ``ctx.tmp/work`` unless given."""
    options = tiny(ctx.world.root, **extra)
    work = work or ctx.tmp / 'work'
    return call_tool(
        tool_module('train'), [
            config, '--work-dir', work, '--cfg-options',
            *[f'{k}={v}' for k, v in options.items()], *flags
        ], ctx.capsys, ctx.monkeypatch)


def stop_before_the_runner(ctx) -> None:
    """End a tool's work where the Runner would be built (exit 130): what
    comes before it is what the case checks."""

    def stop(cfg):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr(MoProRunner, 'from_cfg', stop)


def tool(ctx, name: str, *argv):
    return call_tool(
        tool_module(name), list(argv), ctx.capsys, ctx.monkeypatch)


def mopro_checkpoint(path, **model) -> str:
    """A checkpoint (meta and weights) of a tiny MoPro model."""
    torch.manual_seed(0)
    state = MODELS.build(tiny_mopro_cfg(**{
        'num_classes': K,
        **model
    })).state_dict()
    torch.save({'meta': {}, 'state_dict': state}, path)
    return str(path)


def webvision_lists(root, google: bytes) -> str:
    """The lists of a WebVision root: the Google list ``google``, one good
    Flickr line."""
    os.makedirs(osp.join(root, 'info'), exist_ok=True)
    with open(osp.join(root, 'info', 'train_filelist_google.txt'), 'wb') as f:
        f.write(google)
    with open(osp.join(root, 'info', 'train_filelist_flickr.txt'), 'w') as f:
        f.write('flickr/q0000/000.jpg 0\n')
    return str(root)


def webvision(root: str, **kwargs):
    dataset = DATASETS.build(
        dict(type='WebVision', data_root=root, num_classes=K, **kwargs))
    dataset.full_init()
    return dataset


# ----------------------------------------------------------------------
# Resume is exact
def _first_batches(root: str, workers: int) -> list:
    cfg = Config.fromfile(V1)
    cfg.merge_from_dict(tiny_mopro_options(root, '.', K))
    loader = cfg.train_dataloader
    loader.update(num_workers=workers, persistent_workers=workers > 0)
    loader.sampler.seed = 0
    batches = []
    for i, batch in enumerate(Runner.build_dataloader(loader, seed=0)):
        batches.append([view.clone() for view in batch['inputs']])
        if i == 1:
            return batches


@promise('**Random views do not depend on the workers.**')
def views_do_not_depend_on_the_workers(ctx):
    in_process = _first_batches(ctx.world.root, 0)
    for ours, theirs in zip(_first_batches(ctx.world.root, 2), in_process):
        for view, other in zip(ours, theirs):
            assert torch.equal(view, other)


def _training_state(path: str) -> dict:
    ckpt = load_checkpoint(path)
    state = dict(ckpt['state_dict'])
    for i, param in ckpt['optimizer']['state'].items():
        state[f'momentum.{i}'] = param['momentum_buffer']
    return state


@promise('**A resumed run repeats the uninterrupted one.**', slow=True)
def a_resumed_run_repeats_the_uninterrupted_one(ctx):
    seeded = {
        'randomness.deterministic': True,
        'custom_hooks.0.start_clean_epoch': 1,  # noise correction in epoch 2
        'train_dataloader.batch_size': 8,  # 4 iterations an epoch
    }
    straight, first = ctx.tmp / 'straight', ctx.tmp / 'first'
    assert train(ctx, work=straight, **seeded, **{
        'train_cfg.max_epochs': 2
    }).code == 0
    theirs = _training_state(str(straight / 'epoch_2.pth'))
    shutil.rmtree(straight)  # compared from this state, in memory
    assert train(ctx, work=first, **seeded).code == 0
    assert train(ctx, '--resume', work=first, **seeded, **{
        'train_cfg.max_epochs': 2
    }).code == 0
    ours = _training_state(str(first / 'epoch_2.pth'))
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


@promise('**The GPU data path too.**', slow=True)
def the_gpu_data_path_resumes_with_the_same_views(ctx):
    root = make_webvision(str(ctx.tmp / 'wv'), size=40)
    first = str(ctx.tmp / 'first')
    eager = dict(compile_views=False)
    full, _ = train_recording(
        gpu_data_cfg(root, first, 3, **eager), ctx.monkeypatch)
    cfg = gpu_data_cfg(root, str(ctx.tmp / 'second'), 3, **eager)
    cfg.resume, cfg.load_from = True, osp.join(first, 'iter_2.pth')
    resumed, _ = train_recording(cfg, ctx.monkeypatch)
    assert resumed[0][0] == full[2][0]
    for ours, theirs in zip(resumed[0][2], full[2][2]):
        assert torch.equal(ours, theirs)


@promise('**What it takes.**')
def an_inexact_config_is_warned_about(ctx):
    stop_before_the_runner(ctx)
    with log_messages() as logged:
        result = train(
            ctx, **{
                'train_dataloader.sampler.type': 'DefaultSampler',
                'randomness.seed': None
            })
    assert result.code == 130
    suffix = ': a resumed run will not repeat an uninterrupted one'
    assert [line for line in logged if suffix in line] == [
        'train_dataloader.sampler.type is DefaultSampler, not '
        f'ResumableSampler or SqrtBalancedSampler{suffix} '
        '(docs/reliability.md)',
        f'randomness.seed is None (a new seed at every start){suffix} '
        '(docs/reliability.md)'
    ]


@promise('**What is redone.**')
def the_configs_save_every_epoch(ctx):
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))):
        cfg = Config.fromfile(path)
        hook = cfg.default_hooks.checkpoint
        expected = cfg.train_cfg.max_epochs if path.endswith('_demo.py') \
            else 1
        assert hook.interval == expected and hook.get('by_epoch', True), path


@message('no checkpoint in <work dir>: starting from epoch 1')
@promise('`--resume` (no path) finds what to resume by itself')
def resume_in_an_empty_work_dir(ctx):
    stop_before_the_runner(ctx)
    with log_messages() as logged:
        assert train(ctx, '--resume').code == 130
    assert f'no checkpoint in {ctx.tmp / "work"}: starting from epoch 1' \
        in logged
    return logged


# ----------------------------------------------------------------------
# Checkpoints survive a kill
@promise('writes each checkpoint atomically')
def a_kill_while_saving_keeps_a_checkpoint(ctx):
    replace = os.replace

    def replace_or_die(src, dst, **kwargs):
        if osp.basename(dst) == 'epoch_2.pth':
            raise Killed
        replace(src, dst, **kwargs)

    ctx.monkeypatch.setattr(os, 'replace', replace_or_die)
    with pytest.raises(Killed):
        toy_runner(ctx.tmp, 'killed_saving', save_best=None).train()
    ctx.monkeypatch.undo()
    assert sorted(n for n in os.listdir(ctx.tmp) if n.endswith('.pth')) == \
        ['epoch_1.pth']
    assert (ctx.tmp / 'last_checkpoint').read_text() == \
        str(ctx.tmp / 'epoch_1.pth')
    load_checkpoint(str(ctx.tmp / 'epoch_1.pth'))


@promise('Temporaries of an interrupted save')
def temporaries_go_when_the_next_run_starts(ctx):
    stale = ctx.tmp / '.epoch_3.pth.0123456789abcdef.tmp'
    stale.write_bytes(b'half a checkpoint')
    runner = toy_runner(ctx.tmp, 'temporaries', save_best=None)
    with log_messages() as logged:
        runner.train()
    assert not stale.exists()
    assert 'removed the temporary file of an interrupted save: ' \
        f'{stale}' in logged


def _resumable(path) -> str:
    torch.save(
        dict(meta=dict(epoch=1, iter=8), state_dict={}, message_hub={}), path)
    return str(path)


@message('last_checkpoint is empty: resuming from the newest complete')
@promise('A `last_checkpoint` that is empty')
def a_damaged_pointer_resumes_the_newest_checkpoint(ctx):
    work = ctx.tmp / 'work'
    work.mkdir()
    newest = _resumable(work / 'epoch_1.pth')
    (work / 'last_checkpoint').write_text('')
    stop_before_the_runner(ctx)
    with log_messages() as logged:
        assert train(ctx, '--resume').code == 130
    assert f'{work}/last_checkpoint is empty: resuming from the newest ' \
        f'complete checkpoint, {newest}' in logged
    return logged


@promise('Atomically written outputs')
def outputs_get_the_umasks_permissions(ctx):
    old = os.umask(0o022)
    try:
        write_json(str(ctx.tmp / 'pseudo_label.json'), {})
        AtomicLocalBackend().put(b'checkpoint', str(ctx.tmp / 'epoch_1.pth'))
    finally:
        os.umask(old)
    for name in ('pseudo_label.json', 'epoch_1.pth'):
        assert os.stat(ctx.tmp / name).st_mode & 0o777 == 0o644, name


@promise('load weights strictly')
def loading_is_strict_and_weights_only(ctx):
    other = mopro_checkpoint(ctx.tmp / 'r34.pth',
                             backbone=dict(type='ResNet', depth=34))
    result = train(ctx, load_from=other)
    assert result.error.startswith(f'error: {other}: checkpoint is a '
                                   'ResNet-34')
    assert not list((ctx.tmp / 'work').glob('*.pth'))
    ckpt = torch.load(ctx.world.ckpt, weights_only=False)
    ckpt['meta']['note'] = argparse.Namespace(copied='by hand')
    resaved = ctx.tmp / 'resaved.pth'
    torch.save(ckpt, resaved)
    stop_before_the_runner(ctx)
    assert train(ctx, load_from=resaved).error == (
        f'error: {resaved}: holds objects outside the weights-only '
        'allow-list (argparse.Namespace); pass --trust-checkpoint only if '
        'you trust its source')
    assert train(ctx, '--trust-checkpoint', load_from=resaved).code == 130


# ----------------------------------------------------------------------
# A non-finite loss never reaches a checkpoint
def _nan_views(seed: int) -> list:
    inputs = views(seed)
    inputs[0][0, 0, 0, 0] = float('nan')
    return inputs


def _classifier(**overrides):
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='CompilableImageClassifier',
             backbone=dict(type='ResNet',
                           depth=18), neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=K,
                       in_channels=512), **overrides)).train()


def _classifier_batch(seed: int, nan: bool = False):
    inputs = torch.randn(8, 3, 32, 32,
                         generator=torch.Generator().manual_seed(seed))
    if nan:
        inputs[0, 0, 0, 0] = float('nan')
    return inputs, [DataSample().set_gt_label(i % K) for i in range(8)]


@message('`MoPro: non-finite loss in a recent iteration (...)`')
@promise("| `'raise'` (default) |")
def raise_stops_before_a_checkpoint(ctx):
    produced = []
    model = build_mopro(phase='proto', nonfinite='raise')
    labels = samples(torch.arange(8) % K)
    model.loss(_nan_views(1), labels)  # records the flag only
    runner = SimpleNamespace(model=model)
    with pytest.raises(NonFiniteError) as info:
        NonFiniteCheckHook().before_save_checkpoint(runner, {})
    produced.append(str(info.value))
    classifier = _classifier()
    classifier.loss(*_classifier_batch(1, nan=True))
    with pytest.raises(NonFiniteError) as info:
        classifier.loss(*_classifier_batch(2))  # a later step reads it
    produced.append(str(info.value))
    return produced


@promise("| `'skip'` |")
def skip_zeroes_the_step_and_restores_batchnorm(ctx):
    model = build_mopro(phase='proto', nonfinite='skip',
                        max_consecutive_skips=2)
    labels = samples(torch.arange(8) % K)
    model.loss(views(1), labels)
    before = {name: buf.clone() for name, buf in model.named_buffers()}
    with log_messages() as logged:
        losses = model.loss(_nan_views(2), labels)
    assert all(v.item() == 0 for k, v in losses.items() if 'loss' in k)
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name
    assert logged[0].startswith('MoPro: skipped an iteration')
    with pytest.raises(NonFiniteError, match='2 iterations in a row'):
        model.loss(_nan_views(3), labels)


@message('the checkpoint of epoch N is not written')
@promise('does not write a checkpoint whose')
def a_non_finite_state_is_not_saved(ctx):
    runner = toy_runner(ctx.tmp, 'diverged', save_best=None,
                        custom_hooks=[dict(type='DivergeInEpoch2')])
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert sorted(n for n in os.listdir(ctx.tmp) if n.endswith('.pth')) == \
        ['epoch_1.pth']
    assert (ctx.tmp / 'last_checkpoint').read_text() == \
        str(ctx.tmp / 'epoch_1.pth')
    return [str(info.value)]


# ----------------------------------------------------------------------
# Bad images
@promise('Web images are decoded tolerantly')
def web_images_decode(ctx):
    files = dirty_files()
    for kind in ('truncated', 'cmyk', 'gif', 'grey', 'progressive'):
        path = ctx.tmp / f'{kind}.jpg'
        path.write_bytes(files[kind])
        assert decode_rgb(str(path)).shape[2] == 3, kind
    path = str(ctx.tmp / 'grey16.png')
    Image.fromarray(np.full((12, 10), 65535, np.uint16)).save(path)
    assert decode_rgb(path).min() == 255


@message('`skipping undecodable image (N so far in this worker)')
@promise('An undecodable training image is skipped')
def an_undecodable_image_is_skipped_the_same_way_each_run(ctx):
    root = make_webvision(str(ctx.tmp / 'wv'), num_classes=K, size=32)
    bad = osp.join(root, 'google/q0001/000.jpg')
    open(bad, 'wb').close()
    replacements = []
    with log_messages() as logged:
        for _ in range(2):
            dataset = webvision(root, pipeline=[dict(type='LoadWebImage')])
            idx = next(
                i for i in range(len(dataset))
                if dataset.get_data_info(i)['img_path'] == bad)
            item = dataset[SeededIndex(idx, (0, 3, 5))]
            assert dataset.num_bad >= 1
            replacements.append(item['img_path'])
    assert replacements[0] == replacements[1] != bad
    return logged


@promise('More than `train_dataloader.dataset.max_bad_fraction`')
def too_many_bad_images_stop_training(ctx):
    root = make_webvision(str(ctx.tmp / 'wv'), num_classes=K, size=32)
    for path in glob.glob(osp.join(root, '*', '*', '*.jpg')):
        open(path, 'wb').close()
    dataset = webvision(root, pipeline=[dict(type='LoadWebImage')])
    with log_messages(), pytest.raises(DataError) as info:
        dataset[0]
    assert '100 of 100 images could not be decoded, more than ' \
        'max_bad_fraction=0.01' in str(info.value)


@message('`<path>: W x H image')
@promise('A file whose header declares a huge image')
def a_huge_image_is_skipped_and_counted(ctx):
    dataset = webvision(ctx.world.root,
                        pipeline=[dict(type='LoadWebImage', max_pixels=1000)])
    with log_messages() as logged:
        assert dataset.prepare_data(0) is None
    assert dataset.num_bad == 1
    return logged


# ----------------------------------------------------------------------
# Errors come before the work, in one line
@promise('The tools\' error boundary is `mopro/utils/errors.py`')
def the_error_boundary(ctx):

    def user_mistake():
        raise ConfigError('model.threshold must be in [0, 1], got 2')

    def ctrl_c():
        raise KeyboardInterrupt

    def bug():
        raise ValueError('a bug')

    assert tool_result(ctx, user_mistake).error == \
        'error: model.threshold must be in [0, 1], got 2'
    assert tool_result(ctx, ctrl_c).code == 130
    with pytest.raises(ValueError):
        run_tool(bug)
    ctx.monkeypatch.setenv(TRACEBACK_ENV, '1')
    with pytest.raises(ConfigError):
        run_tool(user_mistake)


def tool_result(ctx, work):
    return call_tool(work, None, ctx.capsys, ctx.monkeypatch)


@promise('command-line arguments, as they are parsed')
def arguments_are_checked_as_parsed(ctx):
    result = tool(ctx, 'noise_cleaning', V1, ctx.world.ckpt, '--out',
                  ctx.tmp / 'out.json', '--num-workers', '-1')
    assert result.code == 2
    assert result.stderr.splitlines()[-1].endswith(
        'error: argument --num-workers: -1: must be at least 0')


@message('`<config>:<line>: syntax error: ...`')
@promise('config syntax (`<config>:<line>: syntax error`')
def a_syntax_error_names_file_and_line(ctx):
    broken = ctx.tmp / 'broken.py'
    broken.write_text(f'_base_ = [{V1!r}]\nmodel = dict(momentum=0.99\n')
    base = ctx.tmp / 'mine.py'
    base.write_text("_base_ = ['./broken.py']\n")
    result = train(ctx, config=str(base))
    assert result.error == (f"error: {broken}:2: syntax error: '(' was "
                            'never closed')
    return [result.error]


@promise('a `--cfg-options` item that is not `KEY=VALUE`')
def a_cfg_option_without_value_is_a_usage_error(ctx):
    result = train(ctx, '--cfg-options', 'foo')
    assert result.code == 2
    assert result.stderr.splitlines()[-1].endswith(
        "error: argument --cfg-options: expected KEY=VALUE, got 'foo'")


def _launch(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ['bash', osp.join(ROOT, 'tools', script), *args], capture_output=True,
        text=True, timeout=60)


@message("`tools/dist_train.sh: CONFIG '<path>': no such file`")
@promise("the launchers' arguments")
def the_launchers_check_their_arguments(ctx):
    script = osp.join(ROOT, 'tools', 'dist_train.sh')
    usage = _launch('dist_train.sh', V1)
    assert (usage.returncode,
            usage.stderr) == (2,
                              f'usage: {script} CONFIG GPUS [train.py args]\n')
    missing = [
        _launch('dist_train.sh', str(ctx.tmp / 'x.py'), '2'),
        _launch('dist_test.sh', V1, str(ctx.tmp / 'x.pth'), '2')
    ]
    for result in missing:
        assert result.returncode == 2 and result.stdout == ''
        assert result.stderr.count('\n') == 1
    return [result.stderr for result in missing]


@promise('each process\'s GPU (its local rank)', gpu=True)
def more_processes_than_gpus_is_one_line(ctx):
    count = torch.cuda.device_count()
    ctx.monkeypatch.setenv('LOCAL_RANK', str(count))
    with pytest.raises(UserError) as info:
        check_launched_gpu('pytorch')
    assert str(info.value).startswith(
        f'LOCAL_RANK={count}, but this node shows {count} GPU(s)')


@message('`model.<key> must be ...`')
@promise('config values, when the model, hooks and datasets are built')
def config_values_when_built(ctx):
    threshold = train(ctx, **{'model.threshold': 2})
    hook = train(ctx, **{'custom_hooks.0.start_clean_epoch': -1})
    assert not list((ctx.tmp / 'work').glob('*.pth'))
    return [threshold.error, hook.error]


@promise('what mmengine and torch check only when they use it')
def values_checked_before_the_runner(ctx):
    stop_before_the_runner(ctx)
    result = train(ctx, **{'val_evaluator.topk': [5]})
    assert result.error == ('error: val_evaluator.topk: top-5 accuracy needs '
                            'at least 5 classes, the model has 4')


@promise('every registered type')
def every_built_components_arguments(ctx):
    stop_before_the_runner(ctx)
    result = train(ctx, **{'train_cfg.max_epoch': 2})
    assert result.error == (
        "error: train_cfg.max_epoch: EpochBasedTrainLoop has no argument "
        "'max_epoch' (did you mean 'max_epochs'?)")


@message('`default_hooks.checkpoint.<key>: SafeCheckpointHook has no')
def a_misspelled_hook_argument(ctx):
    stop_before_the_runner(ctx)
    return [train(ctx, **{'default_hooks.checkpoint.max_keep_ckpt': 1}).error]


@message('`--cfg-options <key>: nothing reads the top-level key')
@promise('top-level keys that nothing reads')
def a_top_level_key_nothing_reads(ctx):
    stop_before_the_runner(ctx)
    option = train(ctx, **{'train_dataloder.batch_size': 4})
    config = ctx.tmp / 'mine.py'
    config.write_text(f'_base_ = [{V1!r}]\ntrain_dataloder = dict()\n')
    in_file = train(ctx, config=str(config))
    assert option.error.endswith("(did you mean 'train_dataloader'?)")
    return [option.error, in_file.error]


@promise("MoPro's queue holds the global batch")
def the_queue_holds_the_global_batch(ctx):
    stop_before_the_runner(ctx)
    assert train(ctx, **{
        'model.queue_len': 2
    }).error == (
        'error: model.queue_len=2 is smaller than the global batch 4 '
        '(train_dataloader.batch_size=4 x 1 process(es)): MoPro enqueues '
        'every batch')


@promise('the train dataloader makes at least one batch')
def a_dataloader_without_a_batch(ctx):
    result = train(
        ctx, **{
            'train_dataloader.batch_size': 40,
            'model.queue_len': 64
        })
    assert result.error.startswith(
        'error: train_dataloader makes no batch: 32 training images')
    assert not list((ctx.tmp / 'work').glob('*.pth'))


@message('`--cfg-options <switch>: ... has no top-level <switch> switch`')
@promise('the top-level switches `data_root`')
def switches_a_config_cannot_apply(ctx):
    produced = []
    for config, options in [
        (osp.join(ROOT, 'configs', 'finetune_r50_imagenet_1pct.py'), {
            'data_root': '/data'
        }),
        (V1, {
            'max_epochs': 3,
            'train_cfg': None
        }),
    ]:
        with pytest.raises(ConfigError) as info:
            tool_config(config, options)
        produced.append(str(info.value))
    return produced


@message('`<list>:<line>: expected "relative/path label"`')
@promise('image lists: each malformed line is named')
def malformed_lists_name_file_and_line(ctx):
    produced = []
    for name, google in [('path', b'justapath\n'),
                         ('range', b'google/a.jpg 7\n'),
                         ('dup', b'google/a.jpg 0\ngoogle/a.jpg 1\n')]:
        root = webvision_lists(ctx.tmp / name, google)
        with pytest.raises(DataError) as info:
            webvision(root)
        produced.append(str(info.value))
    root = webvision_lists(ctx.tmp / 'empty', b'')
    (ctx.tmp / 'empty' / 'info' / 'train_filelist_flickr.txt').write_text('')
    with pytest.raises(DataError, match='the dataset is empty'):
        webvision(root)
    return produced


@message('`<list>:<line>: not UTF-8 text')
def a_list_in_another_encoding(ctx):
    root = webvision_lists(ctx.tmp,
                           'google/caf\u00e9.jpg 0\n'.encode('latin-1'))
    with pytest.raises(DataError) as info:
        webvision(root)
    return [str(info.value)]


@message('`<list>: WebVision list not found`')
def not_a_webvision_root(ctx):
    with pytest.raises(FileNotFoundError) as info:
        webvision(str(ctx.tmp))
    return [str(info.value)]


@message('`<root>/train.txt: image list not found`')
def not_a_folder_of_lists(ctx):
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.build(
            dict(type='CustomImageList', data_root=str(ctx.tmp),
                 num_classes=K)).full_init()
    return [str(info.value)]


@message('`N of M images could not be decoded')
@promise('`noise_cleaning`: more undecodable training images')
def noise_cleaning_stops_on_broken_data(ctx):
    root = make_webvision(str(ctx.tmp / 'wv'), num_classes=K, size=32)
    for path in glob.glob(osp.join(root, '*', 'q*', '*.jpg')):
        open(path, 'wb').close()
    options = tiny(root)
    out = ctx.tmp / 'cleaned.json'
    with log_messages():
        result = tool(ctx, 'noise_cleaning', V1, ctx.world.ckpt, '--out', out,
                      '--num-workers', 0, '--work-dir', ctx.tmp / 'cleaning',
                      '--cfg-options',
                      *[f'{k}={v}' for k, v in options.items()])
    assert not out.exists() and not (ctx.tmp / 'cleaning').exists()
    return [result.error]


@message('`<ckpt>: truncated or corrupt checkpoint`')
@promise('checkpoints (`--resume`, `load_from`, a tool\'s `CKPT`)')
def a_cut_file_and_random_bytes(ctx):
    data = open(ctx.world.ckpt, 'rb').read()
    cut = ctx.tmp / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    noise = ctx.tmp / 'noise.pth'
    noise.write_bytes(b'PNG' + bytes(100))
    return [
        tool(ctx, 'convert_to_d2', ckpt, ctx.tmp / 'out.pkl').error
        for ckpt in (cut, noise)
    ]


@message('`<ckpt>: holds objects outside the weights-only allow-list')
def a_checkpoint_with_other_objects(ctx):
    ckpt = torch.load(ctx.world.ckpt, weights_only=False)
    ckpt['meta']['args'] = argparse.Namespace(lr=0.1)
    path = ctx.tmp / 'with_args.pth'
    torch.save(ckpt, path)
    return [tool(ctx, 'convert_to_d2', path, ctx.tmp / 'out.pkl').error]


@message('`<ckpt>: expected an original checkpoint')
def importing_a_checkpoint_of_this_project(ctx):
    return [
        tool(ctx, 'model_converters/convert_from_original', ctx.world.ckpt,
             ctx.tmp / 'imported.pth').error
    ]


def _load_into_tiny(path: str):
    with pytest.raises(CheckpointError) as info:
        load_model_weights(MODELS.build(tiny_mopro_cfg(num_classes=K)), path)
    return str(info.value)


@message('`<ckpt>: checkpoint has 5000 classes')
def another_class_count(ctx):
    return [
        _load_into_tiny(mopro_checkpoint(ctx.tmp / 'k5.pth', num_classes=5))
    ]


@message('`<ckpt>: checkpoint is a ResNet-50')
def another_depth(ctx):
    return [
        _load_into_tiny(
            mopro_checkpoint(ctx.tmp / 'r50.pth',
                             backbone=dict(type='ResNet',
                                           depth=50), feat_dim=2048))
    ]


@message('`<ckpt>: architecture mismatch at <key>`')
def another_architecture(ctx):
    wider = mopro_checkpoint(ctx.tmp / 'wide.pth', embed_dim=16)
    torch.manual_seed(0)
    state = MODELS.build(tiny_mopro_cfg(num_classes=K)).state_dict()
    del state['queue_ptr']
    torch.save({'meta': {}, 'state_dict': state}, ctx.tmp / 'less.pth')
    return [_load_into_tiny(wider), _load_into_tiny(str(ctx.tmp / 'less.pth'))]


@message('`<ckpt>: <tensor> holds N non-finite values`')
def a_diverged_checkpoint(ctx):
    ckpt = torch.load(ctx.world.ckpt)
    ckpt['state_dict']['backbone.conv1.weight'][0, 0, 0, 0] = float('nan')
    path = ctx.tmp / 'diverged.pth'
    torch.save(ckpt, path)
    result = tool(ctx, 'convert_to_d2', path, ctx.tmp / 'out.pkl')
    assert not (ctx.tmp / 'out.pkl').exists()
    return [result.error]


@message('`--resume <ckpt>: no such checkpoint file`')
def resume_from_what_is_no_training_run(ctx):
    missing = ctx.tmp / 'missing.pth'
    return [
        train(ctx, '--resume', missing).error,
        train(ctx, '--resume', ctx.world.ckpt).error
    ]


@message('`error: tools/train_d2.py needs Detectron2')
def train_d2_without_detectron2(ctx):
    ctx.monkeypatch.setattr('mopro.transfer.d2_compat.detectron2_dir',
                            lambda: None)
    return [tool(ctx, 'train_d2', '--help').error]


@message('`<path>: cannot write the <output> ...`')
@promise('outputs: a tool checks that it can write its outputs')
def outputs_are_checked_first(ctx):
    blocker = ctx.tmp / 'a_file'
    blocker.write_text('')
    return [
        tool(ctx, 'convert_to_d2', ctx.world.ckpt, blocker / 'out.pkl').error,
        tool(ctx, 'model_converters/convert_from_original', ctx.world.ckpt,
             ctx.world.ckpt).error
    ]


@message('`no CUDA device: training in float32 with OptimWrapper`')
def a_gpu_config_on_a_cpu(ctx):
    if torch.cuda.is_available():
        pytest.skip('shows only without CUDA')
    stop_before_the_runner(ctx)
    with log_messages() as logged:
        assert train(ctx).code == 130
    return logged


@message('a run hangs after one rank failed')
@promise('A dataloader worker that crashes on one rank')
def collectives_time_out(ctx):
    """A launched job's group gets the config's timeout (torch then ends a
    collective that waits for a dead rank). The crash of a worker on one
    of two ranks, ending both, runs under torchrun in
    tests/test_engine/test_training.py, the processes this needs."""
    given = []
    init = dist.init_process_group

    def recording(*args, **kwargs):
        given.append(kwargs.get('timeout'))
        return init(*args, **kwargs)

    ctx.monkeypatch.setattr(dist, 'init_process_group', recording)
    for name, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                            MASTER_ADDR='127.0.0.1',
                            MASTER_PORT=str(free_port())).items():
        ctx.monkeypatch.setenv(name, value)
    cfg = tool_config(V1, tiny(ctx.world.root), launcher='pytorch')
    try:
        init_launched_group(cfg, 'cpu')
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert cfg.env_cfg.dist_cfg.timeout == 1800
    assert given == [datetime.timedelta(seconds=1800)]
    return []


@promise('`svm_eval`: labels an SVM can score')
def svm_labels_are_checked_before_fitting(ctx):
    feats = np.eye(8, dtype=np.float32)
    path = str(ctx.tmp / 'features.npz')
    np.savez(path, dataset=np.array('places205'), train_feats=feats[:4],
             train_index=np.arange(4), train_labels=np.array([0, 0, 1, 1]),
             test_feats=feats[4:], test_labels=np.array([0, 1, 2, 2]))
    result = tool(ctx, 'svm_eval', '--dataset', 'places205', '--features',
                  path, '--work-dir', ctx.tmp / 'svm', '--shots', '1',
                  '--runs', '1')
    assert 'every test class must occur in training' in result.error
    assert not (ctx.tmp / 'svm').exists()


@promise('`train_d2`: every trailing `KEY VALUE` override')
def train_d2_overrides_are_checked(ctx):
    pytest.importorskip('detectron2')
    from mopro.transfer import d2_train
    args = d2_train.parse_args([
        '--config-file',
        osp.join(ROOT, 'configs', 'detectron2', 'coco_R_50_FPN_1x.yaml'),
        '--num-gpus', '0', 'OUTPUT_DIR',
        str(ctx.tmp), 'MODEL.RESNETS.DEPHT', '50'
    ])
    with pytest.raises(ConfigError, match='MODEL.RESNETS.DEPHT'):
        d2_train.setup(args)


# ----------------------------------------------------------------------
# the tests
ITEMS = reliability_items()
ROWS = troubleshooting_rows()


def test_every_promise_has_a_case():
    """Each bullet and table row of reliability.md holds one phrase of
    ``PROMISES``; each phrase is still on the page."""
    text = ' '.join(_read(RELIABILITY).split())
    assert [item for item in ITEMS if len(_the_one(item, PROMISES)) != 1] \
        == []
    assert [phrase for phrase in PROMISES if phrase not in text] == []


def test_every_message_has_a_case():
    assert [row for row in ROWS if len(_the_one(row, MESSAGES)) != 1] == []
    assert [
        prefix for prefix in MESSAGES if not any(prefix in row for row in ROWS)
    ] == []


def _marks(phrase: str) -> list:
    """The markers :func:`promise` gave the case of ``phrase``."""
    return [
        mark for mark, phrases in ((pytest.mark.gpu, GPU_ONLY),
                                   (pytest.mark.slow, SLOW))
        if phrase in phrases
    ]


@pytest.mark.parametrize('phrase',
                         [pytest.param(p, marks=_marks(p)) for p in PROMISES])
def test_promise(ctx, phrase):
    PROMISES[phrase](ctx)


@pytest.mark.parametrize('row', ROWS)
def test_message(ctx, row):
    (prefix, ) = _the_one(row, MESSAGES) or pytest.fail(f'no case: {row}')
    produced = MESSAGES[prefix](ctx)
    missing = [
        pattern.pattern for pattern in documented(row)
        if not any(pattern.search(text) for text in produced)
    ]
    assert missing == [], produced
