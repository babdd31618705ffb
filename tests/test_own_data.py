"""The own-data walkthrough, command by command as configs/README.md gives
it: a folder of class subfolders -> lists -> MoPro pretraining with
configs/mopro_r50_custom.py from a fresh work dir -> tools/test.py,
tools/noise_cleaning.py and tools/convert_to_d2.py on its checkpoint. On
the CPU; the ResNet-50 recipe shrunk by ``--cfg-options`` (ResNet-18, 32 px
views, 2 epochs) so that it runs in CI, the data given by the switches
``data_root`` and ``num_classes`` alone."""
import json
import os
import os.path as osp
import pickle

import pytest
import torch
from conftest import ROOT, write_image

from mopro.utils.checkpoint import load_checkpoint
from _user_commands import finish, run, start

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_custom.py')
CLASSES = ['bird', 'cat', 'dog']
# the user's switches: the data and the run's length
SWITCHES = ['data_root=my_images', 'num_classes=3']
# the CI's: a ResNet-18 on 32 px views, eager, in the main process
SMALL = [
    'model.backbone.depth=18', 'model.feat_dim=512',
    'model.proj_hidden_dim=64', 'model.embed_dim=16', 'model.queue_len=32',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'val_dataloader.dataset.pipeline.1.scale=32',
    'val_dataloader.dataset.pipeline.2.crop_size=32',
    'visualizer.vis_backends=None',
]
SMALL_TRAINING = [
    'max_epochs=2', 'train_dataloader.batch_size=4',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
    'train_dataloader.dataset.pipeline.1.transforms.1.0.scale=32',
    # MoPro's phases within the 2 epochs: noise correction in epoch 2
    'custom_hooks.0.start_clean_epoch=1', 'default_hooks.logger.interval=1',
]


def make_images(root: str) -> None:
    """8 images of each class, and a file that is no image."""
    seed = 0
    for name in CLASSES:
        for i in range(8):
            write_image(osp.join(root, name, f'{i:03d}.jpg'), seed)
            seed += 1
    with open(osp.join(root, 'cat', 'notes.txt'), 'w') as f:
        f.write('taken in the garden\n')


def lines_of(path):
    with open(path, encoding='utf-8') as f:
        return f.read().splitlines()


@pytest.fixture(scope='module')
def walkthrough(tmp_path_factory):
    """The commands' results, run in a fresh folder."""
    cwd = str(tmp_path_factory.mktemp('own_data'))
    make_images(osp.join(cwd, 'my_images'))
    results = {
        'lists': run('dataset_converters/folder_to_lists', ['my_images'],
                     cwd)}
    results['train'] = run('train', [
        CONFIG, '--work-dir', 'work_dirs/mine', '--cfg-options', *SWITCHES,
        *SMALL, *SMALL_TRAINING], cwd)
    checkpoint = 'work_dirs/mine/epoch_2.pth'
    # the three commands on the checkpoint, side by side
    names = ('test', 'clean', 'd2')
    results.update(zip(names, finish([
        start('test', [CONFIG, checkpoint, '--work-dir', 'work_dirs/test',
                       '--cfg-options', *SWITCHES, *SMALL], cwd),
        start('noise_cleaning', [
            CONFIG, checkpoint, '--out', 'work_dirs/mine/cleaned.json',
            '--work-dir', 'work_dirs/cleaning', '--device', 'cpu',
            '--num-workers', '0', '--batch-size', '8', '--cfg-options',
            *SWITCHES, *SMALL], cwd),
        start('convert_to_d2', [checkpoint, 'work_dirs/mine/mopro.pkl'],
              cwd),
    ])))
    return cwd, results


def _ok(result):
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def test_folder_becomes_lists(walkthrough):
    cwd, results = walkthrough
    out = _ok(results['lists'])
    assert out.splitlines()[0] == (
        'my_images: 3 classes, 24 images (1 other files skipped) -> '
        'my_images/train.txt (21 images), my_images/val.txt (3), '
        'my_images/classes.txt')
    assert lines_of(osp.join(cwd, 'my_images', 'classes.txt')) == CLASSES
    val = lines_of(osp.join(cwd, 'my_images', 'val.txt'))
    assert sorted(int(line.split()[1]) for line in val) == [0, 1, 2]


def test_pretraining_reads_the_folder_and_says_so(walkthrough):
    cwd, results = walkthrough
    log = _ok(results['train'])
    assert ('--cfg-options data_root=my_images set '
            'train_dataloader.dataset.data_root, '
            'val_dataloader.dataset.data_root') in log
    assert ('--cfg-options num_classes=3 set model.num_classes, '
            'train_dataloader.dataset.num_classes, '
            'val_dataloader.dataset.num_classes') in log
    assert ('CustomImageList at my_images: 21 images of 3 classes from '
            'train.txt') in log
    assert ('CustomImageList at my_images: 3 images of 3 classes from '
            'val.txt') in log
    assert 'no checkpoint' not in log  # a fresh work dir, no --resume
    ckpt = load_checkpoint(osp.join(cwd, 'work_dirs/mine/epoch_2.pth'))
    # 21 images, 4 a batch, the last one dropped: 5 iterations an epoch
    assert ckpt['meta']['iter'] == 10
    assert ckpt['meta']['dataset_meta'] == {'classes': CLASSES}
    state = ckpt['state_dict']
    assert state['prototypes'].shape == (3, 16)
    assert state['classifier.weight'].shape == (3, 512)
    assert torch.isfinite(state['prototypes']).all()


def test_test_tool_evaluates_the_held_out_images(walkthrough):
    _, results = walkthrough
    log = _ok(results['test'])
    assert ('CustomImageList at my_images: 3 images of 3 classes from '
            'val.txt') in log
    assert 'Epoch(val) [0][1/1]    accuracy/top1:' in log


def test_noise_cleaning_lists_the_folder_images(walkthrough):
    cwd, results = walkthrough
    _ok(results['clean'])
    with open(osp.join(cwd, 'work_dirs/mine/cleaned.json')) as f:
        cleaned = json.load(f)
    train = dict(line.rsplit(' ', 1) for line in lines_of(
        osp.join(cwd, 'my_images', 'train.txt')))
    assert set(cleaned) <= set(train)
    assert set(cleaned.values()) <= {0, 1, 2}
    with open(osp.join(cwd, 'work_dirs/cleaning',
                       'noise_cleaning_summary.json')) as f:
        summary = json.load(f)
    assert summary['total']['images'] == 21
    assert summary['total']['cleaned'] == len(cleaned)


def test_checkpoint_converts_for_detectron2(walkthrough):
    cwd, results = walkthrough
    out = _ok(results['d2'])
    assert 'wrote work_dirs/mine/mopro.pkl' in out
    with open(osp.join(cwd, 'work_dirs/mine/mopro.pkl'), 'rb') as f:
        model = pickle.load(f)['model']
    assert model['stem.conv1.weight'].shape == (64, 3, 7, 7)
    # ResNet-18: two basic blocks a stage
    assert sorted({k.split('.')[1] for k in model
                   if k.startswith('res5.')}) == ['0', '1']
    assert not any(k.startswith(('momentum', 'classifier', 'queue'))
                   for k in model)


def test_work_dirs_are_where_the_user_said(walkthrough):
    cwd, _ = walkthrough
    assert sorted(os.listdir(osp.join(cwd, 'work_dirs'))) == [
        'cleaning', 'mine', 'test']
