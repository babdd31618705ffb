"""Paths as users have them: a data folder, work dirs, checkpoints and
outputs whose names hold blanks, a quote and letters beyond ASCII, given
to the tools as processes, through ``--cfg-options`` too; and the commands
the tools print for the user to copy, pasted into bash.

The walk of a user: ``folder_to_lists.py`` on ``my data/Ana's naïve set``
(copied from a Mac, hidden files and all) prints the training command;
that line, pasted into ``bash -c`` from the repository root with a work
dir and CI-size options appended (and ``load_from``, initial weights in
``weights/Ana's start.pth``), trains; ``tools/test.py`` and
``tools/noise_cleaning.py`` read the checkpoint it wrote, with
``--cfg-options data_root=...``, a ``--work-dir`` and an ``--out`` of the
same kind; the copy of the config that the run wrote to its work dir
trains as a config of its own.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
from typing import List

import pytest
import torch
from mmpretrain.registry import MODELS

from mopro.checkpoint import CheckpointError
from mopro.engine.resume import check_resumable
from mopro.utils.cli import add_config_args
from helpers import ROOT
from helpers.commands import run, user_env
from helpers.configs import CUSTOM_SMALL, custom_small_training, tool_config
from helpers.data import write_image
from helpers.macos import add_macos_leftovers

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_custom.py')
CLASSES = ['bird', 'cat', 'dog']
EPOCHS = 2
DATA = osp.join('my data', "Ana's naïve set")
WEIGHTS = osp.join('weights', "Ana's start.pth")
WORK_DIR = osp.join('work dirs', 'première run')
TEST_DIR = osp.join('work dirs', 'test é')
CLEAN_DIR = osp.join('work dirs', 'nettoyage ü')
COPY_DIR = osp.join('work dirs', 'from the copy')
OUT = osp.join('outputs', 'pseudo labels ü.json')


def make_images(root: str) -> None:
    """6 images of each class, and what a Mac leaves beside them."""
    for c, name in enumerate(CLASSES):
        for i in range(6):
            write_image(osp.join(root, name, f'{i:03d}.jpg'), 10 * c + i)
    add_macos_leftovers(root)


def cfg_options(argv: List[str]) -> dict:
    """The ``--cfg-options`` of ``argv`` as the tools parse them."""
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    return parser.parse_args(['config.py', *argv]).cfg_options


def save_initial_weights(path: str, data: str) -> None:
    """Untrained weights of the CI-size model, saved at ``path``."""
    cfg = tool_config(
        CONFIG,
        cfg_options([
            '--cfg-options', f'data_root={data}', 'num_classes=3',
            *CUSTOM_SMALL
        ]))
    os.makedirs(osp.dirname(path))
    torch.save({
        'meta': {},
        'state_dict': MODELS.build(cfg.model).state_dict()
    }, path)


def pasted(line: str, cwd: str) -> subprocess.CompletedProcess:
    """``line`` run by bash in ``cwd``, ``python`` this interpreter."""
    env = user_env()
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    return subprocess.run(['bash', '-c', line], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _ok(result: subprocess.CompletedProcess) -> str:
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log


@pytest.fixture(scope='module')
def walk(tmp_path_factory):
    """The steps of the module docstring, one after the other, in a fresh
    folder; a failed step ends the walk. (folder, {step: result})."""
    base = str(tmp_path_factory.mktemp('paths'))
    data, weights = osp.join(base, DATA), osp.join(base, WEIGHTS)
    make_images(data)
    save_initial_weights(weights, data)
    results = {}
    results['lists'] = run('dataset_converters/folder_to_lists', [data], base)
    if results['lists'].returncode:
        return base, results
    printed = results['lists'].stdout.splitlines()[-1]
    results['printed'] = printed
    appended = ['--work-dir', osp.join(base, WORK_DIR), '--cfg-options'] + \
        CUSTOM_SMALL + custom_small_training(EPOCHS) + \
        [f'load_from={weights}']
    # the line as printed: the tool names the repository's paths
    line = printed[len('train: '):] + ' ' + shlex.join(appended)
    results['train'] = pasted(line, ROOT)
    if results['train'].returncode:
        return base, results
    checkpoint = osp.join(base, WORK_DIR, f'epoch_{EPOCHS}.pth')
    data_options = ['--cfg-options', f'data_root={data}', 'num_classes=3']
    results['test'] = run('test', [
        CONFIG, checkpoint, '--work-dir',
        osp.join(base, TEST_DIR), *data_options, *CUSTOM_SMALL
    ], base)
    results['clean'] = run('noise_cleaning', [
        CONFIG, checkpoint, '--work-dir',
        osp.join(base, CLEAN_DIR), '--out',
        osp.join(base, OUT), '--num-workers', '0', '--batch-size', '8',
        *data_options, *CUSTOM_SMALL
    ], base)
    results['from_copy'] = run('train', [
        osp.join(base, WORK_DIR, osp.basename(CONFIG)), '--work-dir',
        osp.join(base, COPY_DIR), '--cfg-options', 'max_epochs=1'
    ], base)
    return base, results


@pytest.mark.slow
def test_printed_training_command_quotes_its_paths(walk):
    base, results = walk
    _ok(results['lists'])
    data = osp.join(base, DATA)
    # the quote ends a quoted word, is quoted itself, and a new one begins
    assert results['printed'] == (
        'train: python tools/train.py configs/mopro_r50_custom.py '
        f"--cfg-options 'data_root={base}/my data/Ana'\"'\"'s naïve set' "
        'num_classes=3')
    assert shlex.split(
        results['printed'])[-2:] == [f'data_root={data}', 'num_classes=3']


@pytest.mark.slow
def test_pasted_command_trains_on_the_folder(walk):
    base, results = walk
    log = _ok(results['train'])
    data = osp.join(base, DATA)
    assert (f'--cfg-options data_root={data} set '
            'train_dataloader.dataset.data_root, '
            'val_dataloader.dataset.data_root') in log
    # the 18 images; the hidden files left out
    assert f'CustomImageList at {data}: 15 images of 3 classes from ' \
        'train.txt' in log
    assert f'CustomImageList at {data}: 3 images of 3 classes from ' \
        'val.txt' in log
    assert f'Load checkpoint from {osp.join(base, WEIGHTS)}' in log
    work_dir = osp.join(base, WORK_DIR)
    assert {f'epoch_{e}.pth'
            for e in range(1, EPOCHS + 1)} <= set(os.listdir(work_dir))
    assert not osp.exists(osp.join(ROOT, 'work_dirs', 'mopro_r50_custom'))


@pytest.mark.slow
def test_test_tool_reads_the_checkpoint_and_folder(walk):
    base, results = walk
    log = _ok(results['test'])
    assert f'CustomImageList at {osp.join(base, DATA)}: 3 images of 3 ' \
        'classes from val.txt' in log
    assert 'Epoch(val) [0][1/1]    accuracy/top1:' in log
    assert os.listdir(osp.join(base, TEST_DIR))


@pytest.mark.slow
def test_noise_cleaning_writes_its_out_file(walk):
    base, results = walk
    _ok(results['clean'])
    with open(osp.join(base, OUT), encoding='utf-8') as f:
        cleaned = json.load(f)
    assert set(cleaned.values()) <= {0, 1, 2}
    assert all(path.split('/')[0] in CLASSES for path in cleaned)
    assert osp.isfile(osp.join(base, CLEAN_DIR, 'noise_cleaning_summary.json'))


@pytest.mark.slow
def test_the_runs_copy_of_the_config_trains_as_a_config(walk):
    base, results = walk
    log = _ok(results['from_copy'])
    assert f'CustomImageList at {osp.join(base, DATA)}: 15 images of 3 ' \
        'classes from train.txt' in log
    assert f'Load checkpoint from {osp.join(base, WEIGHTS)}' in log
    assert osp.isfile(osp.join(base, COPY_DIR, 'epoch_1.pth'))


def test_resume_hint_names_load_from_as_it_can_be_pasted(tmp_path):
    """A weights-only checkpoint given to ``--resume``: the hint's
    ``--cfg-options`` item, split as a shell splits it and parsed as the
    tools parse it, gives ``load_from`` the path."""
    path = str(tmp_path / "Ana's weights" / 'naïve run.pth')
    os.makedirs(osp.dirname(path))
    torch.save({'meta': {}, 'state_dict': {}}, path)
    with pytest.raises(CheckpointError) as info:
        check_resumable(path)
    hint = str(info.value).split('; to start from its weights pass ')[1]
    assert cfg_options(shlex.split(hint)) == {'load_from': path}
