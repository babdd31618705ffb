"""tools/benchmark.py runs on CPU and reports every timing, consistently (no
timing assertion: speed is measured, not tested)."""
import json
import os.path as osp

import pytest

from conftest import ROOT, load_tool

benchmark = load_tool('benchmark')


def test_benchmark_reports_all_steps(tmp_path):
    out = str(tmp_path / 'bench.json')
    results = benchmark.main([
        osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'), '--iters',
        '1', '--warmup', '1', '--batch-size', '4', '--eval-batch-size', '6',
        '--image-size', '32',
        '--out', out, '--cfg-options', 'model.backbone.depth=18',
        'model.feat_dim=512', 'model.num_classes=10', 'model.queue_len=64'
    ])
    assert json.load(open(out)) == json.loads(json.dumps(results))
    assert results['device'] == 'cpu' and results['batch_size'] == 4
    assert results['eval_batch_size'] == 6
    assert results['optimizer']['type'] == 'SGD'
    for step, batch in (('mopro', 4), ('supervised', 4),
                        ('supervised_plus_forward', 4), ('mopro_runner', 4),
                        ('noise_cleaning', 6), ('feature_extraction', 6)):
        assert results[step]['img_per_s'] > 0
        assert results[step]['img_per_s'] * results[step]['ms_per_iter'] \
            == pytest.approx(1e3 * batch)
        assert results[step]['peak_memory_mb'] is None  # CPU
    assert results['mopro']['host_syncs_per_step'] is None  # CUDA only
    assert results['runner_vs_step'] == (
        results['mopro_runner']['img_per_s'] / results['mopro']['img_per_s'])
    assert results['mopro_vs_bound'] == (
        results['mopro']['img_per_s'] /
        results['supervised_plus_forward']['img_per_s'])
