"""Bad input and faults through the tools as users run them: a process per
command (run side by side), exit status 1, one ``error: ...`` line on
stderr naming the file or key, and no output left behind."""
import os.path as osp

import numpy as np
import pytest
import torch
import torchvision
from mmengine.config import Config
from mmpretrain.registry import MODELS

from helpers import ROOT
from helpers.commands import run_tools
from helpers.configs import tiny_mopro_options
from helpers.data import make_webvision

K = 4


def _write_nan_features(path):
    """Cached features with one NaN among the test features."""
    cls = np.repeat(np.arange(K), 2)
    feats = np.eye(8, dtype=np.float32)[cls]
    test = feats.copy()
    test[5, 2] = np.nan
    np.savez(path, dataset=np.array('places205'), train_feats=feats,
             train_index=np.arange(len(cls)), train_labels=cls,
             test_feats=test, test_labels=cls)
    return str(path)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Every command's inputs, the commands, and their results."""
    tmp = tmp_path_factory.mktemp('tools')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    work = str(tmp / 'work')
    # a tiny MoPro checkpoint of the v1 config shrunk to ResNet-18
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'))
    options = tiny_mopro_options(root, work, K)
    cfg.merge_from_dict(options)
    mopro = MODELS.build(cfg.model)
    ckpt = str(tmp / 'mopro.pth')
    torch.save({'meta': {}, 'state_dict': mopro.state_dict()}, ckpt)
    # ... the same in the released format, and a diverged one
    released = str(tmp / 'released.pth.tar')
    torch.save(
        {
            'epoch': 1,
            'state_dict': {
                f'module.encoder_q.{k}': v
                for k, v in mopro.backbone.state_dict().items()
            }
        }, released)
    diverged = dict(mopro.state_dict())
    diverged['backbone.layer4.1.conv2.weight'] = torch.full_like(
        diverged['backbone.layer4.1.conv2.weight'], float('nan'))
    nan_ckpt = str(tmp / 'diverged.pth')
    torch.save({'meta': {}, 'state_dict': diverged}, nan_ckpt)
    # a torchvision ResNet-18 state dict
    tv = str(tmp / 'resnet18.pth')
    torch.save(torchvision.models.resnet18().state_dict(), tv)
    blocker = str(tmp / 'a_file')
    open(blocker, 'w').close()
    inputs = dict(root=root, ckpt=ckpt, released=released, nan_ckpt=nan_ckpt,
                  tv=tv, blocker=blocker, tmp=str(tmp),
                  released_bytes=open(released, 'rb').read(),
                  nan_features=_write_nan_features(tmp / 'nan.npz'))
    ce_options = [
        f'model.head.num_classes={K}',
        f'model.data_preprocessor.num_classes={K}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.num_classes={K}'
    ]
    commands = {
        'convert_onto_input':
        ['model_converters/convert_from_original', released, released],
        'convert_nan': ['convert_to_d2', nan_ckpt, f'{tmp}/nan.pkl'],
        'svm_nan_features': [
            'svm_eval', '--dataset', 'places205', '--features',
            inputs['nan_features'], '--work-dir', f'{tmp}/svm_nan'
        ],
        'cleaning_unwritable': [
            'noise_cleaning',
            osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'), ckpt,
            '--out', f'{blocker}/pseudo_label.json', '--num-workers', '0',
            '--work-dir', f'{tmp}/cleaning', '--cfg-options',
            *[f'{k}={v}' for k, v in options.items() if k != 'work_dir']
        ],
        'test_torchvision': [
            'test',
            osp.join(ROOT, 'configs', 'ce_r18_demo.py'), tv, '--work-dir',
            f'{tmp}/test_tv', '--cfg-options', *ce_options
        ],
    }
    results = dict(zip(commands, run_tools(list(commands.values()))))
    return inputs, results


def test_converter_never_overwrites_its_input(runs):
    inputs, results = runs
    path = inputs['released']
    assert results['convert_onto_input'].error == (
        f'error: {path}: the output is the input {path}; write it to another '
        'path')
    with open(path, 'rb') as f:
        assert f.read() == inputs['released_bytes']


def test_converter_refuses_non_finite_weights(runs):
    inputs, results = runs
    assert results['convert_nan'].error == (
        f'error: {inputs["nan_ckpt"]}: backbone.layer4.1.conv2.weight holds '
        '2359296 non-finite values (NaN or inf) of 2359296: the weights of a '
        'diverged run')
    assert not osp.exists(osp.join(inputs['tmp'], 'nan.pkl'))


def test_svm_refuses_nan_features(runs):
    inputs, results = runs
    assert results['svm_nan_features'].error == (
        f'error: {inputs["nan_features"]}: test_feats hold 1 non-finite '
        'values (NaN or inf) in 1 of 8 rows')
    assert not osp.exists(osp.join(inputs['tmp'], 'svm_nan'))


def test_noise_cleaning_checks_its_output_first(runs):
    inputs, results = runs
    blocker = inputs['blocker']
    assert results['cleaning_unwritable'].error == (
        f'error: {blocker}/pseudo_label.json: cannot write the --out file: '
        f'{blocker} is a file, not a folder')
    assert not osp.exists(osp.join(inputs['tmp'], 'cleaning'))


def test_test_tool_refuses_a_torchvision_state_dict(runs):
    # it used to load non-strictly and print the top-1 of random weights
    inputs, results = runs
    assert results['test_torchvision'].error == (
        f'error: {inputs["tv"]}: expected a mopro checkpoint, got a bare '
        'ResNet state dict (conv1.weight at the top level, as torchvision '
        'writes it), not a checkpoint of this project or of the released '
        'MoPro code')


# Arguments that used to end in a traceback after the models were built, or
# in output with exit 0 (a negative --test-per-class made a demo dataset);
# the processes see no GPU (``helpers.commands.user_env``).
BAD_ARGUMENTS = {
    'gpu_is_no_device': ('analysis_tools/benchmark', 'CONFIG', '--device',
                         'gpu', "'gpu': expected cpu, cuda or cuda:N"),
    'no_cuda_here': ('svm_eval', '--dataset', 'voc07', '--device', 'cuda',
                     'cuda: this process sees no CUDA device'),
    'zero_iterations': ('analysis_tools/benchmark', 'CONFIG', '--iters', '0',
                        '0: must be at least 1'),
    'negative_workers': ('noise_cleaning', 'CONFIG', 'CKPT', '--out', 'OUT',
                         '--num-workers', '-1', '-1: must be at least 0'),
    'negative_seed': ('dataset_converters/folder_to_lists', 'OUT', '--seed',
                      '-1', '-1: must be at least 0'),
    'negative_test_images':
    ('dataset_converters/make_demo_dataset', '--out', 'OUT',
     '--test-per-class', '-1', '-1: must be at least 1'),
    'zero_epochs':
    ('run_demo', '--out-dir', 'OUT', '--epochs', '0', '0: must be at least 1'),
}


@pytest.fixture(scope='module')
def bad_arguments(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('arguments')
    names = {
        'CONFIG': osp.join(ROOT, 'configs', 'mopro_r18_demo.py'),
        'CKPT': str(tmp / 'absent.pth'),
        'OUT': str(tmp / 'out'),
    }
    commands = [[names.get(a, a) for a in case[:-1]]
                for case in BAD_ARGUMENTS.values()]
    return tmp, dict(zip(BAD_ARGUMENTS, run_tools(commands)))


@pytest.mark.parametrize('case', BAD_ARGUMENTS)
def test_bad_arguments_end_the_tool_as_it_starts(bad_arguments, case):
    """argparse's usage error (exit 2, the argument and why) before any
    model, data or output is made."""
    tmp, results = bad_arguments
    tool, *args, message = BAD_ARGUMENTS[case]
    flag = next(a for a in reversed(args) if a.startswith('--'))
    result = results[case]
    assert result.code == 2, result
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'{osp.basename(tool)}.py: error: argument {flag}: {message}')
    assert not osp.exists(tmp / 'out')


# Config values that used to fail only once used: after a whole epoch and
# its checkpoint (top-k above the classes, val_interval=0), at the first
# iteration (a batch larger than MoPro's queue), or never (a batch larger
# than the training set: exit 0 with the untrained weights saved as
# epoch_1.pth). ``{name: (tool, --cfg-options items, flags, the last line
# of stderr)}``; exit status 1 for an ``error:`` line, else 2 (usage).
CONFIG_MISTAKES = {
    'train_batch_above_dataset':
    ('train', ['train_dataloader.batch_size=40', 'model.queue_len=64'], [],
     'error: train_dataloader makes no batch: 32 training images, '
     'train_dataloader.batch_size=40 x 1 process(es), drop_last=True: lower '
     'the batch size or set train_dataloader.drop_last=False'),
    'train_topk_above_classes':
    ('train', ['val_evaluator.topk=[5]', 'train_cfg.val_interval=1'], [],
     'error: val_evaluator.topk: top-5 accuracy needs at least 5 classes, '
     'the model has 4'),
    'train_val_interval_zero':
    ('train', ['train_cfg.val_interval=0'], [],
     'error: train_cfg.val_interval must be >= 1, got 0'),
    'train_batch_above_queue':
    ('train', ['model.queue_len=2'], [],
     'error: model.queue_len=2 is smaller than the global batch 4 '
     '(train_dataloader.batch_size=4 x 1 process(es)): MoPro enqueues every '
     'batch'),
    'train_work_dir_is_a_file':
    ('train', [], ['--work-dir', '{blocker}'],
     'error: {blocker}: the work dir is a file, not a folder'),
    'train_option_without_value': ('train', ['foo'], [],
                                   "train.py: error: argument --cfg-options: "
                                   "expected KEY=VALUE, got 'foo'"),
    'test_topk_above_classes':
    ('test', ['val_evaluator.topk=[5]'], ['--sets', 'val'],
     'error: val_evaluator.topk: top-5 accuracy needs at least 5 classes, '
     'the model has 4'),
}


@pytest.fixture(scope='module')
def config_mistakes(tmp_path_factory):
    """The tools run on the tiny v1 config (one epoch) with each of
    CONFIG_MISTAKES, side by side, a work dir per case."""
    tmp = tmp_path_factory.mktemp('config_mistakes')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    config = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
    blocker = tmp / 'a_file'
    blocker.write_text('')
    options = tiny_mopro_options(root, '.', K)
    del options['work_dir']
    options.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None
    })
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    ckpt = str(tmp / 'mopro.pth')
    torch.save({
        'meta': {},
        'state_dict': MODELS.build(cfg.model).state_dict()
    }, ckpt)
    commands = []
    for name, (tool, items, flags, _) in CONFIG_MISTAKES.items():
        commands.append([
            tool, config, *([ckpt] if tool == 'test' else []), '--work-dir',
            str(tmp / 'work' / name),
            *[f.format(blocker=blocker) for f in flags], '--cfg-options',
            *[f'{k}={v}' for k, v in options.items()], *items
        ])
    return tmp, blocker, dict(zip(CONFIG_MISTAKES, run_tools(commands)))


@pytest.mark.parametrize('case', CONFIG_MISTAKES)
def test_config_mistakes_end_the_tool_before_the_work(config_mistakes, case):
    """One line naming the key and what it allows, before a checkpoint is
    written."""
    tmp, blocker, results = config_mistakes
    result = results[case]
    message = CONFIG_MISTAKES[case][-1].format(blocker=blocker)
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    if message.startswith('error: '):
        assert result.error == message
    else:
        assert result.code == 2, result
        assert result.stderr.splitlines()[-1] == message
    work = tmp / 'work' / case
    written = [p.name for p in work.rglob('*')] if work.exists() else []
    assert not [
        n for n in written if n.endswith('.pth') or n == 'last_checkpoint'
    ], written
    assert blocker.read_text() == ''
