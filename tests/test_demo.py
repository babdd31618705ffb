"""The embedded noisy-digits dataset, the noise-quality metrics, the demo's
progress line and its main job on a tiny subset, run as users run it."""
import glob
import io
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

from _tool_run import call_tool
from conftest import ROOT, load_tool
from mopro.datasets import WebVision
from mopro.datasets.demo import (build_demo_dataset, class_names,
                                 load_ground_truth)
from mopro.demo import progress as progress_module
from mopro.demo.job import demo_config
from mopro.demo.progress import JobProgress, Stage
from mopro.evaluation.noise_quality import noise_quality

make_demo_dataset = load_tool('dataset_converters/make_demo_dataset')

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


def test_builder_incomplete_and_bad_args(tmp_path, capsys, monkeypatch):
    root = str(tmp_path / 'd')
    build_demo_dataset(root, limit=6, test_per_class=2)
    first = load_ground_truth(root)['train'][0]['path']
    os.remove(osp.join(root, first))
    with pytest.raises(ValueError, match='incomplete'):
        build_demo_dataset(root, limit=6, test_per_class=2)
    assert call_tool(make_demo_dataset, ['--out', tmp_path / 'e',
                                         '--flip-rate', '1.5'], capsys,
                     monkeypatch).error == (
        'error: flip_rate must be in [0, 1], got 1.5')
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


def test_demo_configs_name_the_digits(demo_root, tmp_path):
    for config in ('mopro_r18_demo.py', 'ce_r18_demo.py'):
        cfg = demo_config(osp.join(ROOT, 'configs', config), demo_root,
                          str(tmp_path), seed=0)
        for loader in ('train_dataloader', 'val_dataloader'):
            dataset = dict(cfg[loader].dataset)
            dataset.pop('type')
            names = WebVision(**dataset).metainfo['classes']
            assert list(names) == ['zero', 'one', 'two', 'three', 'four',
                                   'five', 'six', 'seven']
    assert class_names(3) == ['zero', 'one', 'two']


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_plan_eta_and_log_pacing(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, 'monotonic', clock)
    out = io.StringIO()  # a log: new lines, not a rewritten one
    progress = JobProgress([Stage('train', 100.0), Stage('clean', 50.0)],
                           out, log_interval=15.0)
    progress.start_stage('building')
    clock.now += 10
    progress.step(20.0, 'epoch 1/5')  # 2 per second: (150 - 20) / 2 = 65
    clock.now += 5
    progress.step(10.0, 'epoch 2/5')  # within 15 s of the last line
    clock.now += 10
    progress.step(10.0, 'epoch 3/5')  # 40 in 25 s: 110 / 1.6 = 68.75 s
    progress.end_stage()  # the whole planned work counts as done
    clock.now += 5
    progress.start_stage('0/9 images')
    clock.now += 5  # no step yet: the speed so far, 100 in 35 s
    progress.step(5.0, '3/9 images')  # this stage: 5 in 5 s: 45 s left
    assert out.getvalue().splitlines() == [
        '[1/2 train] building | elapsed 0:00:00 | ETA --',
        '[1/2 train] epoch 1/5 | elapsed 0:00:10 | ETA 0:01:05',
        '[1/2 train] epoch 3/5 | elapsed 0:00:25 | ETA 0:01:09',
        '[1/2 train] epoch 3/5 | elapsed 0:00:25 | ETA 0:00:12',
        '[2/2 clean] 0/9 images | elapsed 0:00:30 | ETA 0:00:15',
        '[2/2 clean] 3/9 images | elapsed 0:00:35 | ETA 0:00:45',
    ]


def _float(text):
    return float(text.strip().rstrip('%'))


def test_run_demo_tiny_end_to_end(tmp_path):
    """``tools/run_demo.py`` on 12 images per digit, one epoch each, on
    CPU, as a user runs it: the console shows the plan first, then the
    progress line and each result once; the Runners' environment and
    config dumps and metric lines are in their log files only; the report
    and its pictures are in the output folder."""
    data = str(tmp_path / 'data')
    make_demo_dataset.main(['--out', data, '--limit', '12',
                            '--test-per-class', '2'])
    work, out = tmp_path / 'work', tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'run_demo.py'),
         '--data-root', data, '--work-dir', str(work), '--out-dir',
         str(out), '--epochs', '1', '--cfg-options',
         'train_dataloader.batch_size=16', 'val_dataloader.batch_size=32',
         'default_hooks.logger.interval=1'],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ''
    lines = result.stdout.splitlines()
    assert lines[0] == (
        'MoPro demo: 1/3 train MoPro (1 epoch), 2/3 noise cleaning (104 '
        'images), 3/3 train cross-entropy (1 epoch) | data: 104 noisy '
        f'digits (24 flipped, 24 OOD) | runs and logs: {work}/ | report: '
        f'{out}/')
    assert lines[1] == ('[1/3 train MoPro] building the Runner | elapsed '
                        '0:00:00 | ETA --')
    assert re.fullmatch(r'\[1/3 train MoPro\] epoch 1/1 iter 1/6 \| '
                        r'elapsed 0:00:\d\d \| ETA 0:\d\d:\d\d', lines[2])
    for stage in ('[2/3 noise cleaning] 104/104 images',
                  '[3/3 train cross-entropy] epoch 1/1 validation'):
        assert any(line.startswith(stage) for line in lines), stage
    for dump in ('System environment', 'Config:', 'Epoch(train)',
                 'accuracy/top1', 'WARNING'):
        assert dump not in result.stdout, dump
    with open(out / 'demo_results.json') as f:
        saved = json.load(f)
    assert saved['dataset'] == dict(num_train=104, num_val=16, clean=56,
                                    flipped=24, ood=24)
    q = saved['noise_cleaning']
    assert q['num_samples'] == 104 and q['num_flipped'] == 24
    for name, label in (('mopro', 'MoPro'), ('ce', 'cross-entropy')):
        run = saved[name]
        assert run['curve'] == dict(epochs=[1], top1=[run['top1']])
        # each result printed once, as mmengine logged it
        rows = [line for line in lines if line.startswith(f'| {label} |')]
        assert len(rows) == 1 and _float(rows[0].split('|')[2]) == \
            pytest.approx(run['top1'], abs=0.005)
        (log, ) = glob.glob(str(work / name / '*' / '*.log'))
        with open(log) as f:
            text = f.read()
        assert 'System environment' in text and 'Config:' in text
        (val, ) = re.findall(r'Epoch\(val\) \[1\]\S* +accuracy/top1: '
                             r'(\S+)', text)
        assert float(val) == pytest.approx(run['top1'], abs=1e-4)
    assert osp.isfile(work / 'mopro' / 'epoch_1.pth')
    pictures = {'accuracy_curves.png', 'relabelled_samples.png',
                'ood_samples.png', 'class_changes.png'}
    assert set(saved['pictures'].values()) == pictures
    with open(out / 'demo_results.md') as f:
        report = f.read()
    assert '| MoPro |' in report
    for picture in pictures:
        assert f']({picture})' in report
        with open(out / picture, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sorted(os.listdir(out)) == sorted(
        pictures | {'demo_results.json', 'demo_results.md'})
