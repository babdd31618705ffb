"""The embedded noisy-digits dataset (mopro.datasets.demo): its layout and
exact noise, a deterministic and idempotent build, its errors (the
command line's as users meet them), and the demo configs naming the
digits."""
import os
import os.path as osp

import numpy as np
import pytest

from mopro.datasets import WebVision
from mopro.datasets.demo import (build_demo_dataset, class_names,
                                 load_ground_truth)
from mopro.demo.job import demo_config
from helpers import ROOT
from helpers.commands import run_tools

# 20 images of each digit, 4 of each of 0-7 held out: 8 x 16 = 128
# in-distribution training images, round(0.3 * 128) = 38 flipped, and the
# 2 x 20 images of digits 8 and 9 as OOD.
LIMIT, TEST_PER_CLASS = 20, 4


def _read_list(path):
    with open(path) as f:
        return [(line.split()[0], int(line.split()[1])) for line in f
                if line.strip()]


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo') / 'demo_webvision')
    summary = build_demo_dataset(root, seed=0, limit=LIMIT,
                                 test_per_class=TEST_PER_CLASS)
    assert summary['built'] is True
    return root


def test_builder_layout_and_exact_noise(demo_root):
    truth = load_ground_truth(demo_root)
    assert truth['summary'] == dict(num_train=168, num_val=32, clean=90,
                                    flipped=38, ood=40)
    train = _read_list(
        osp.join(demo_root, 'info', 'train_filelist_google.txt'))
    assert _read_list(
        osp.join(demo_root, 'info', 'train_filelist_flickr.txt')) == []
    records = truth['train']
    assert [(r['path'], r['label']) for r in records] == train
    for r in records:
        assert osp.isfile(osp.join(demo_root, r['path']))
        assert r['path'].startswith(f'google/q{r["label"]:04d}/')
        assert 0 <= r['label'] < 8
        if r['kind'] == 'clean':
            assert r['label'] == r['true_digit'] < 8
        elif r['kind'] == 'flipped':
            assert r['label'] != r['true_digit'] and r['true_digit'] < 8
        else:
            assert r['kind'] == 'ood' and r['true_digit'] in (8, 9)
    # symmetric flips reach several classes; per true digit 16 training
    # images, 20 of each OOD digit
    flipped = [r for r in records if r['kind'] == 'flipped']
    assert len({r['label'] for r in flipped}) > 4
    digits = np.bincount([r['true_digit'] for r in records], minlength=10)
    assert digits.tolist() == [16] * 8 + [20, 20]
    val = _read_list(osp.join(demo_root, 'info', 'val_filelist.txt'))
    assert np.bincount([d for _, d in val]).tolist() == [TEST_PER_CLASS] * 8
    for name, _ in val:
        assert osp.isfile(osp.join(demo_root, 'val_images_256', name))
    # no test image is a training image
    train_ids = {osp.basename(p)[:-4] for p, _ in train}
    assert not train_ids & {n[3:-4] for n, _ in val}
    # the project's WebVision dataset reads it
    ds = WebVision(demo_root, split='train', num_classes=8)
    assert len(ds) == 168 and ds.get_data_info(0)['gt_label'] == train[0][1]
    assert len(WebVision(demo_root, split='val', num_classes=8)) == 32


def test_builder_deterministic_idempotent(demo_root, tmp_path):
    mtime = os.path.getmtime(osp.join(demo_root, 'info', 'ground_truth.json'))
    again = build_demo_dataset(demo_root, seed=0, limit=LIMIT,
                               test_per_class=TEST_PER_CLASS)
    assert again['built'] is False
    assert os.path.getmtime(osp.join(demo_root, 'info',
                                     'ground_truth.json')) == mtime
    other = str(tmp_path / 'copy')
    build_demo_dataset(other, seed=0, limit=LIMIT,
                       test_per_class=TEST_PER_CLASS)
    assert load_ground_truth(other) == load_ground_truth(demo_root)
    # other parameters over an existing dataset: a clear error
    with pytest.raises(ValueError, match='other parameters'):
        build_demo_dataset(demo_root, seed=1, limit=LIMIT,
                           test_per_class=TEST_PER_CLASS)
    # no temporary folder left beside the datasets
    assert sorted(os.listdir(tmp_path)) == ['copy']


@pytest.mark.slow
def test_builder_incomplete_and_bad_args(tmp_path):
    root = str(tmp_path / 'd')
    build_demo_dataset(root, limit=6, test_per_class=2)
    first = load_ground_truth(root)['train'][0]['path']
    os.remove(osp.join(root, first))
    with pytest.raises(ValueError, match='incomplete'):
        build_demo_dataset(root, limit=6, test_per_class=2)
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    tool = 'dataset_converters/make_demo_dataset'
    small = ['--limit', '6', '--test-per-class', '2']
    result, is_file, below_file = run_tools([
        [tool, '--out', tmp_path / 'e', '--flip-rate', '1.5'],
        # --out a file: "ground truth not found" and [Errno 17] before
        [tool, '--out', afile, *small],
        [tool, '--out', afile / 'sub', *small],
    ])
    assert result.error == 'error: flip_rate must be in [0, 1], got 1.5'
    assert not osp.exists(tmp_path / 'e')
    assert is_file.error == (f'error: {afile}: the dataset folder is a '
                             'file, not a folder')
    assert below_file.error == (f'error: {afile / "sub"}: cannot write the '
                                f'dataset folder: {afile} is a file, not a '
                                'folder')
    assert afile.read_text() == 'mine'
    assert sorted(os.listdir(tmp_path)) == ['afile', 'd']


def test_demo_configs_name_the_digits(demo_root, tmp_path):
    for config in ('mopro_r18_demo.py', 'ce_r18_demo.py'):
        cfg = demo_config(
            osp.join(ROOT, 'configs', config), demo_root, str(tmp_path),
            seed=0)
        for loader in ('train_dataloader', 'val_dataloader'):
            dataset = dict(cfg[loader].dataset)
            dataset.pop('type')
            names = WebVision(**dataset).metainfo['classes']
            assert list(names) == [
                'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven'
            ]
    assert class_names(3) == ['zero', 'one', 'two']
