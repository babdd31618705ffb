"""The shard walkthrough of docs/shards.md, run from the page itself: a
folder of class subfolders -> lists -> shards -> MoPro pretraining with
configs/mopro_r50_custom.py switched to the shards by ``data_format``.

As in test_own_data_walkthrough.py, ``configs/...`` paths become
absolute and the CI-size options are appended to the training command;
the data are given by the page's switches alone.
"""
import json
import os.path as osp

import pytest
from test_own_data_walkthrough import (CI_EPOCHS, SMALL, SMALL_TRAINING,
                                       bash_commands, option, positional,
                                       run_page, step_output, tool_of,
                                       with_cfg_options)

from mopro.checkpoint import load_checkpoint
from helpers import ROOT
from helpers.data import write_image

DOC = osp.join(ROOT, 'docs', 'shards.md')
STEPS = {
    'dataset_converters/folder_to_lists': 'lists',
    'dataset_converters/lists_to_shards': 'shards',
    'train': 'train'
}
CLASSES = ['bird', 'cat', 'dog']


@pytest.fixture(scope='module')
def page():
    with open(DOC, encoding='utf-8') as f:
        commands = bash_commands(f.read())
    tools = [tool_of(argv) for argv in commands]
    assert tools == list(STEPS), tools
    return {STEPS[tool]: argv for tool, argv in zip(tools, commands)}


def ci_args(step, argv):
    args = [
        osp.join(ROOT, a) if a.startswith('configs/') else a for a in argv[2:]
    ]
    if step == 'train':
        return with_cfg_options(args, SMALL + SMALL_TRAINING)
    return args


@pytest.fixture(scope='module')
def walkthrough(page, tmp_path_factory):
    """12 images a class; the page's commands one after the other."""
    cwd = str(tmp_path_factory.mktemp('shards'))
    data = positional(page['lists'])[0]
    for label, name in enumerate(CLASSES):
        for i in range(12):
            write_image(
                osp.join(cwd, data, name, f'{i:03d}.jpg'), 12 * label + i)
    return cwd, run_page(page, cwd, ci_args)


def _ok(results, step):
    return step_output(results, step, 'docs/shards.md')


@pytest.mark.slow
def test_lists_become_shards(page, walkthrough):
    cwd, results = walkthrough
    output = _ok(results, 'shards')
    out = option(page['shards'], '--out')
    with open(osp.join(cwd, out, 'train-index.json')) as f:
        index = json.load(f)
    # 12 images a class, one of each held out for val.txt
    assert index['records'] == 33 and index['classes'] == CLASSES
    assert index['lists'] == [dict(name='train', file='train.txt', records=33)]
    assert '33 images of 33 listed (0 undecodable)' in output


@pytest.mark.slow
def test_training_reads_the_shards(page, walkthrough):
    cwd, results = walkthrough
    output = _ok(results, 'train')
    shard_root = option(page['shards'], '--out')
    assert f'shard_root={shard_root}' in page['train']
    assert (f'data_format=shards: train_dataloader reads ShardDataset at '
            f'{shard_root}') in output
    assert f'ShardDataset at {shard_root}: 33 images of 3 classes' in output
    # 33 records in 8 streams of 4, a batch of 4: 8 iterations an epoch
    assert f'Epoch(train) [{CI_EPOCHS}][8/8]' in output
    work_dir = option(page['train'], '--work-dir')
    checkpoint = load_checkpoint(
        osp.join(cwd, work_dir, f'epoch_{CI_EPOCHS}.pth'))
    assert checkpoint['meta']['dataset_meta']['classes'] == CLASSES
