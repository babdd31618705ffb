"""The embedded noisy-digits dataset, the noise-quality metrics and the
demo's main job on a tiny subset."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from conftest import load_tool
from mopro.datasets import WebVision
from mopro.datasets.demo import build_demo_dataset, load_ground_truth
from mopro.evaluation.noise_quality import noise_quality

make_demo_dataset = load_tool('dataset_converters/make_demo_dataset')
run_demo = load_tool('run_demo')

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
    train = _read_list(osp.join(demo_root, 'info',
                                'train_filelist_google.txt'))
    assert _read_list(osp.join(demo_root, 'info',
                               'train_filelist_flickr.txt')) == []
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
    assert os.path.getmtime(
        osp.join(demo_root, 'info', 'ground_truth.json')) == mtime
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


def test_builder_incomplete_and_bad_args(tmp_path):
    root = str(tmp_path / 'd')
    build_demo_dataset(root, limit=6, test_per_class=2)
    first = load_ground_truth(root)['train'][0]['path']
    os.remove(osp.join(root, first))
    with pytest.raises(ValueError, match='incomplete'):
        build_demo_dataset(root, limit=6, test_per_class=2)
    with pytest.raises(SystemExit, match='^error: flip_rate'):
        make_demo_dataset.main(['--out', str(tmp_path / 'e'),
                                '--flip-rate', '1.5'])
    assert not osp.exists(tmp_path / 'e')


def test_noise_quality_hand_example():
    # sample: kind, true, given, pseudo
    #  0 clean   1 1  1  kept                  -> not flagged
    #  1 clean   2 2  3  wrongly relabelled    -> flagged, wrong
    #  2 clean   0 0 -1  wrongly OOD           -> flagged
    #  3 flipped 4 5  4  fixed                 -> flagged, right
    #  4 flipped 6 2  3  relabelled, wrong     -> flagged, wrong
    #  5 flipped 7 1  1  missed                -> not flagged
    #  6 ood     8 3 -1  found                 -> flagged
    #  7 ood     9 0  0  missed                -> not flagged
    #  8 ood     9 6  2  relabelled (wrong)    -> flagged
    kinds = ['clean'] * 3 + ['flipped'] * 3 + ['ood'] * 3
    true = [1, 2, 0, 4, 6, 7, 8, 9, 9]
    given = [1, 2, 0, 5, 2, 1, 3, 0, 6]
    pseudo = [1, 3, -1, 4, 3, 1, -1, 0, 2]
    q = noise_quality(pseudo, given, true, kinds)
    assert q['num_relabelled'] == 4 and q['num_declared_ood'] == 2
    # flagged {1,2,3,4,6,8}; noisy {3..8}; both {3,4,6,8}
    assert q['noise_precision'] == pytest.approx(4 / 6)
    assert q['noise_recall'] == pytest.approx(4 / 6)
    assert q['ood_recall'] == pytest.approx(1 / 3)
    assert q['ood_precision'] == pytest.approx(1 / 2)
    assert q['flipped_relabelled'] == pytest.approx(2 / 3)
    assert q['flipped_correction_acc'] == pytest.approx(1 / 2)
    assert q['relabel_acc'] == pytest.approx(1 / 4)  # {1,3,4,8}: only 3
    assert q['flipped_fixed'] == pytest.approx(1 / 3)
    assert q['clean_kept'] == pytest.approx(1 / 3)
    # empty groups give None, not a division error
    q = noise_quality([0], [0], [0], ['clean'])
    assert q['noise_precision'] is None and q['ood_recall'] is None
    with pytest.raises(ValueError, match='unknown kinds'):
        noise_quality([0], [0], [0], ['dirty'])


def test_run_demo_tiny_end_to_end(tmp_path):
    """The main job on 12 images per digit, one epoch each, on CPU."""
    data = str(tmp_path / 'data')
    make_demo_dataset.main(['--out', data, '--limit', '12',
                            '--test-per-class', '2'])
    work = str(tmp_path / 'work')
    results = run_demo.main([
        '--data-root', data, '--work-dir', work, '--epochs', '1',
        '--cfg-options', 'train_dataloader.batch_size=16',
        'val_dataloader.batch_size=32', 'default_hooks.logger.interval=1'
    ])
    with open(osp.join(work, 'demo_results.json')) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    assert saved['dataset'] == dict(num_train=104, num_val=16, clean=56,
                                    flipped=24, ood=24)
    for name in ('mopro', 'ce'):
        assert 0.0 <= saved[name]['top1'] <= 100.0
    q = saved['noise_cleaning']
    assert q['num_samples'] == 104 and q['num_flipped'] == 24
    assert osp.isfile(osp.join(work, 'mopro', 'epoch_1.pth'))
    with open(osp.join(work, 'demo_results.md')) as f:
        assert '| MoPro |' in f.read()
