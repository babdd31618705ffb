"""Evaluation and noise cleaning on two processes as users launch them
(``tools/dist_test.sh``; ``torchrun ... tools/noise_cleaning.py``), on the
CPU (gloo): each rank takes its share of the images and rank 0 reports the
same as one process does."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from helpers import ROOT
from helpers.commands import finish, launcher_env, start
from helpers.configs import tiny_mopro_options, untrained_checkpoint
from helpers.data import make_webvision

pytestmark = pytest.mark.skipif(sys.platform != 'linux',
                                reason='torchrun on linux')

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _start_launched(command: list, env: dict) -> subprocess.Popen:
    """``command`` as a user runs it, in ``env``
    (:func:`helpers.commands.launcher_env`)."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """test.py and noise_cleaning.py on one process and on two, side by
    side, with an untrained checkpoint whose classifier weights are scaled
    up: its predictions differ from image to image."""
    tmp = tmp_path_factory.mktemp('distributed')
    root = make_webvision(str(tmp / 'webvision'), val_per_class=4)
    options = tiny_mopro_options(root, str(tmp / 'unused'))
    options['visualizer.vis_backends'] = None
    ckpt = untrained_checkpoint(CONFIG, options, str(tmp / 'mopro.pth'))
    state = torch.load(ckpt)
    state['state_dict']['classifier.weight'] *= 50
    torch.save(state, ckpt)
    del options['work_dir']
    items = ['--cfg-options', *[f'{k}={v}' for k, v in options.items()]]
    test_args = [CONFIG, ckpt, '--sets', 'val', *items]
    clean_args = [CONFIG, ckpt, '--num-workers', '0']
    tool = osp.join(ROOT, 'tools')
    test_env, clean_env = launcher_env(), launcher_env()
    procs = {
        'test_1':
        start('test', [*test_args, '--work-dir', tmp / 'test_1']),
        'test_2':
        _start_launched([
            'bash',
            osp.join(tool, 'dist_test.sh'), CONFIG, ckpt, '2', '--work-dir',
            tmp / 'test_2', '--sets', 'val', *items
        ], test_env),
        'clean_1':
        start('noise_cleaning', [
            *clean_args, '--out', tmp / 'clean_1.json', '--work-dir',
            tmp / 'clean_1', *items
        ]),
        'clean_2':
        _start_launched([
            sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
            '2', '--master_port', clean_env['PORT'],
            osp.join(tool,
                     'noise_cleaning.py'), *map(str, clean_args), '--out',
            str(tmp / 'clean_2.json'), '--work-dir',
            str(tmp / 'clean_2'), '--launcher', 'pytorch', *items
        ], clean_env),
    }
    return tmp, dict(zip(procs, finish(list(procs.values()), timeout=300)))


def _val_metrics(log: str) -> dict:
    """The metrics of the last ``Epoch(val)`` line of mmengine's log."""
    lines = [line for line in log.splitlines() if 'Epoch(val) [' in line]
    assert lines, log[-3000:]
    return dict(re.findall(r'(accuracy/top\d+): ([\d.]+)', lines[-1]))


@pytest.mark.slow
def test_dist_test_reports_what_one_process_does(runs):
    """tools/dist_test.sh CONFIG CKPT 2: the 16 validation images split
    over two ranks, rank 0 reports the accuracy of all of them."""
    _, results = runs
    for name in ('test_1', 'test_2'):
        assert results[name].returncode == 0, results[name].stderr[-3000:]
    one, two = (
        _val_metrics(results[n].stdout + results[n].stderr)
        for n in ('test_1', 'test_2'))
    assert one == two and list(one) == ['accuracy/top1']
    assert 'Distributed launcher: pytorch' in results['test_2'].stdout


@pytest.mark.slow
def test_torchrun_noise_cleaning_writes_what_one_process_does(runs):
    """torchrun --nproc_per_node 2 tools/noise_cleaning.py ... --launcher
    pytorch: each rank corrects its shard, rank 0 gathers and writes the
    same cleaned list and summary as one process."""
    tmp, results = runs
    for name in ('clean_1', 'clean_2'):
        assert results[name].returncode == 0, results[name].stderr[-3000:]
    with open(tmp / 'clean_1.json') as f1, open(tmp / 'clean_2.json') as f2:
        one, two = json.load(f1), json.load(f2)
    assert one == two
    summaries = [
        json.load(open(tmp / name / 'noise_cleaning_summary.json'))
        for name in ('clean_1', 'clean_2')
    ]
    for summary in summaries:
        summary.pop('out')
    assert summaries[0] == summaries[1]
    total = summaries[0]['total']
    # not a trivial pass: every image seen, and the rules split them
    assert total['images'] == 32 and total['unreadable'] == 0
    assert len(one) == total['cleaned'] and 0 < total['cleaned'] < 32
