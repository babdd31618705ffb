"""tools/analysis_tools/benchmark_views.py (mopro.analysis.views_benchmark)
times the views per batch by each resampling and reports them consistently
(no timing assertion: speed is measured, not tested)."""
import json
import os.path as osp

import pytest

from helpers import ROOT
from helpers.commands import run_tools

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
GPU_CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1_gpu_data.py')


@pytest.mark.slow
def test_views_benchmark_on_the_cpu(tmp_path):
    """Both batch sizes timed by the matrix products; the kernel reported
    as not timed off CUDA; the JSON printed and written; a config without
    the GPU path's preprocessor is one error line."""
    out = str(tmp_path / 'views.json')
    small = [
        '--device', 'cpu', '--batch-sizes', '2,4', '--iters', '2', '--warmup',
        '1', '--num-images', '3'
    ]
    run, wrong = run_tools([[
        'analysis_tools/benchmark_views', GPU_CONFIG, *small, '--out', out,
        '--cfg-options', 'model.data_preprocessor.crop_size=32',
        'model.data_preprocessor.compile_views=False'
    ], ['analysis_tools/benchmark_views', CONFIG, *small]])
    assert run.code == 0, run.stderr[-3000:]
    results = json.loads(run.value[run.value.index('{\n'):])
    assert json.load(open(out)) == results
    assert results['device'] == 'cpu' and results['iters'] == 2
    matmul = results['views']['matmul']
    assert set(matmul) == {'2', '4'}
    for size, entry in matmul.items():
        assert entry['ms_per_batch'] > 0 and entry['host_cpu_ms_per_batch'] > 0
        assert entry['img_per_s'] * entry['ms_per_batch'] == \
            pytest.approx(1e3 * int(size))
        assert entry['step_dtype'] == 'float32'
    assert 'CUDA' in results['views']['triton']['not_timed']
    assert 'triton_vs_matmul' not in results
    assert wrong.error == (
        "error: configs/mopro_r50_webvision_v1.py: model.data_preprocessor "
        "is 'MoProDataPreprocessor', not MoProGPUViewsPreprocessor (a config "
        'of the GPU data path)')
