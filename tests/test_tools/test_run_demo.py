"""The demo's commands as users run them: the dataset built by
tools/dataset_converters/make_demo_dataset.py, then tools/run_demo.py on
a tiny subset."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.commands import run_tools


def _float(text):
    return float(text.strip().rstrip('%'))


@pytest.mark.slow
def test_run_demo_tiny_end_to_end(tmp_path):
    """``tools/run_demo.py`` on 12 images per digit, one epoch each, on
    CPU, as a user runs it: the console shows the plan first, then the
    progress line and each result once; the Runners' environment and
    config dumps and metric lines are in their log files only; the report
    and its pictures are in the output folder."""
    data = str(tmp_path / 'data')
    (built, ) = run_tools([[
        'dataset_converters/make_demo_dataset', '--out', data, '--limit', '12',
        '--test-per-class', '2'
    ]])
    assert built.code == 0, built.stderr
    work, out = tmp_path / 'work', tmp_path / 'out'
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools',
                 'run_demo.py'), '--data-root', data, '--work-dir',
        str(work), '--out-dir',
        str(out), '--epochs', '1', '--cfg-options',
        'train_dataloader.batch_size=16', 'val_dataloader.batch_size=32',
        'default_hooks.logger.interval=1'
    ], cwd=str(tmp_path), capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, OMP_NUM_THREADS='1',
                                     CUDA_VISIBLE_DEVICES=''))
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
    assert re.fullmatch(
        r'\[1/3 train MoPro\] epoch 1/1 iter 1/6 \| '
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
        (val, ) = re.findall(
            r'Epoch\(val\) \[1\]\S* +accuracy/top1: '
            r'(\S+)', text)
        assert float(val) == pytest.approx(run['top1'], abs=1e-4)
    assert osp.isfile(work / 'mopro' / 'epoch_1.pth')
    pictures = {
        'accuracy_curves.png', 'relabelled_samples.png', 'ood_samples.png',
        'class_changes.png'
    }
    assert set(saved['pictures'].values()) == pictures
    with open(out / 'demo_results.md') as f:
        report = f.read()
    assert '| MoPro |' in report
    for picture in pictures:
        assert f']({picture})' in report
        with open(out / picture, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sorted(
        os.listdir(out)) == sorted(pictures
                                   | {'demo_results.json', 'demo_results.md'})
