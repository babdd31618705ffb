"""tools/analysis_tools/benchmark_comm.py as users run it, on two gloo
processes: the bytes it reports per collective are the kernel's counts and
add up. Bytes are counted here, not seconds (no speed is asserted)."""
import json
import os.path as osp
import sys

import pytest

from mopro.analysis.collectives import ring_bytes
from helpers import ROOT
from helpers.commands import run_tools

pytestmark = pytest.mark.skipif(sys.platform != 'linux',
                                reason='gloo processes, /proc counters')

TOOL = 'analysis_tools/benchmark_comm'
V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
DEMO = osp.join(ROOT, 'configs', 'ce_r18_demo.py')
# the v1 model shrunk: ResNet-18, 100 classes
SMALL = [
    'model.backbone.depth=18', 'model.feat_dim=512', 'model.num_classes=100',
    'model.proj_hidden_dim=256'
]
ROLES = {
    'shuffle_images', 'shuffle_keys', 'queue_keys', 'prototype_update',
    'nonfinite_flag', 'ddp_gradients', 'step_total'
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('benchmark_comm')
    out = tmp / 'comm.json'
    results = run_tools([
        [
            TOOL, V1, '--world-sizes', '2', '--batch-size', '8',
            '--image-size', '64', '--step-image-size', '32', '--steps', '2',
            '--project-to', '8,64', '--out', out, '--cfg-options', *SMALL
        ],
        [TOOL, V1, '--world-sizes', '1,2'],
        [TOOL, DEMO, '--world-sizes', '2'],
    ])
    return out, results


@pytest.mark.slow
def test_bytes_per_collective_are_measured_and_add_up(runs):
    out, (result, _, _) = runs
    assert result.code == 0, result.stderr[-3000:]
    with open(out) as f:
        report = json.load(f)
    world = report['measured']['2']
    step = world['step']
    assert set(step) == ROLES  # every collective has its role
    sent = {role: entry['sent_bytes']['mean'] for role, entry in step.items()}
    # the whole step, measured around it, is the sum of its collectives
    parts = sum(v for role, v in sent.items() if role != 'step_total')
    assert parts == pytest.approx(sent['step_total'], rel=1e-3)
    # DDP's ring all-reduce of two ranks sends its payload once (gloo's
    # headers aside); the bf16 hook halves it
    gradients = step['ddp_gradients']['payload_bytes']
    assert sum(world['ddp_bucket_bytes']) == gradients
    assert sent['ddp_gradients'] == pytest.approx(
        ring_bytes('all_reduce', gradients, 2), rel=0.01)
    assert set(world['ddp_bf16']) == {'ddp_gradients'}
    bf16 = world['ddp_bf16']['ddp_gradients']['sent_bytes']['mean']
    assert bf16 == pytest.approx(gradients / 2, rel=0.01)
    # the shuffle of 8 float32 images of 3 x 64 x 64 and their keys: the
    # all-to-all sends and receives at most that, the gather version
    # receives the other rank's
    shuffle = world['shuffle']
    images = shuffle['all_to_all']['shuffle_images']['payload_bytes']
    batch = images + shuffle['all_to_all']['shuffle_keys']['payload_bytes']
    assert images == 8 * 3 * 64 * 64 * 4
    for key in ('sent_bytes', 'received_bytes'):
        assert sum(e[key]['max'] for e in shuffle['all_to_all'].values()) \
            <= batch * 1.01
        assert sum(e[key]['mean'] for e in shuffle['gather'].values()) \
            >= batch
    projection = report['projection']['world_sizes']
    assert projection['64']['shuffle_gather']['bytes'] > \
        7 * projection['8']['shuffle_gather']['bytes']
    assert projection['64']['shuffle_all_to_all']['bytes'] < \
        1.2 * projection['8']['shuffle_all_to_all']['bytes']


@pytest.mark.slow
def test_mistakes_end_the_tool_before_any_process_starts(runs):
    _, (_, one_process, not_mopro) = runs
    assert one_process.code == 2
    assert one_process.stderr.splitlines()[-1].endswith(
        '1,2: a collective needs at least 2 processes')
    assert not_mopro.error == (
        'error: benchmark_comm measures MoPro '
        'configs, got model.type=CompilableImageClassifier')
