"""tools/analysis_tools/benchmark.py (mopro.analysis.step_benchmark) runs
on CPU and reports every timing, eager and compiled, consistently (no
timing assertion: speed is measured, not tested)."""
import json
import os
import os.path as osp

import pytest
from mmengine.config import Config

from mopro.analysis.step_benchmark import StepBenchmarkSettings, benchmark_step
from helpers import ROOT
from helpers.commands import run_tools

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
TINY = {
    'model.backbone.depth': 18,
    'model.feat_dim': 512,
    'model.num_classes': 10,
    'model.queue_len': 64
}
STEPS = (('mopro', 4), ('supervised', 4), ('supervised_plus_forward', 4),
         ('mopro_runner', 4), ('noise_cleaning', 6), ('feature_extraction', 6))


def test_benchmark_reports_all_steps(tmp_path):
    """Eager and compiled (aot_eager: a CPU build in seconds) side by
    side, on the CPU because the command asks for it."""
    out = str(tmp_path / 'bench.json')
    run, = run_tools([[
        'analysis_tools/benchmark', CONFIG, '--iters', '1', '--warmup', '1',
        '--batch-size', '4', '--eval-batch-size', '6', '--image-size', '32',
        '--device', 'cpu', '--compile', 'both', '--compile-backend',
        'aot_eager', '--out', out, '--cfg-options',
        *[f'{k}={v}' for k, v in TINY.items()]
    ]])
    assert run.code == 0, run.stderr[-3000:]
    results = json.load(open(out))
    # what it prints is what it writes
    assert json.loads(run.value[run.value.index('{\n'):]) == results
    assert results['device'] == 'cpu' and results['batch_size'] == 4
    assert results['eval_batch_size'] == 6
    assert results['optimizer']['type'] == 'SGD'
    assert results['optim_wrapper'] == 'OptimWrapper'  # no bf16 on CPU
    assert results['compile'] == dict(backend='aot_eager', mode=None,
                                      dynamic=None)
    for mode in ('eager', 'compiled'):
        section = results[mode]
        for step, batch in STEPS:
            entry = section[step]
            assert entry['img_per_s'] > 0
            assert entry['img_per_s'] * entry['ms_per_iter'] == \
                pytest.approx(1e3 * batch)
            assert entry['peak_memory_mb'] is None  # CPU
            assert entry['first_iters_s'] > 0
            assert entry['overhead_s'] == pytest.approx(
                entry['first_iters_s'] - entry['ms_per_iter'] / 1e3)
            if mode == 'eager':
                assert entry['new_graphs'] == 0
        assert section['mopro']['host_syncs_per_step'] is None  # CUDA only
        assert section['runner_vs_step'] == (
            section['mopro_runner']['img_per_s'] /
            section['mopro']['img_per_s'])
        assert section['mopro_vs_bound'] == (
            section['mopro']['img_per_s'] /
            section['supervised_plus_forward']['img_per_s'])
    compiled = results['compiled']
    # the training step built its graphs (encoder, momentum encoder)
    assert compiled['mopro']['new_graphs'] == 2
    summary = results['summary']
    assert summary['mode'] == 'compiled'
    eager = results['eager']['mopro']['img_per_s']
    assert summary['compiled_vs_eager'] == \
        compiled['mopro']['img_per_s'] / eager
    assert summary['runner_vs_step'] == compiled['runner_vs_step']


def test_unwritable_out_or_small_queue_is_refused_before_timing(tmp_path):
    # a folder, or a path below a file: one line before any model is
    # built (it was an errno message after the whole benchmark); a queue
    # smaller than the batch: one line before building (it was at the
    # first step)
    folder, afile = tmp_path / 'folder', tmp_path / 'afile'
    folder.mkdir()
    afile.write_text('')
    small = [
        '--iters', '1', '--warmup', '0', '--batch-size', '2', '--image-size',
        '32', '--device', 'cpu', '--compile', 'off'
    ]
    tiny = [f'{k}={v}' for k, v in TINY.items()]
    runs = run_tools([[
        'analysis_tools/benchmark', CONFIG, '--out', out, *small,
        '--cfg-options', *tiny
    ] for out in (folder, afile / 'bench.json')] + [[
        'analysis_tools/benchmark', CONFIG, *small, '--cfg-options', *tiny,
        'model.queue_len=1'
    ]])
    assert runs[0].error == (f'error: {folder}: the --out file is a folder, '
                             'expected a file path')
    assert runs[1].error == (f'error: {afile / "bench.json"}: cannot write '
                             f'the --out file: {afile} is a file, not a '
                             'folder')
    assert runs[2].error == (
        'error: model.queue_len=1 is smaller than the global batch 2 (the '
        'benchmark batch_size=2): MoPro enqueues every batch')
    for run in runs:
        assert '{' not in run.value  # no benchmark ran
    assert os.listdir(folder) == [] and afile.read_text() == ''


@pytest.mark.gpu
def test_benchmark_step_on_cuda_makes_no_host_sync():
    # torch's sync debug mode around one bf16 step of the v1 config (eager:
    # the compiled step is checked in test_compile_gpu.py)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(TINY)
    results = benchmark_step(
        cfg,
        StepBenchmarkSettings(iters=2, warmup=2, batch_size=8,
                              eval_batch_size=8, image_size=64, device='cuda',
                              compile='off'))
    assert results['optim_wrapper'] == 'AmpOptimWrapper'
    eager = results['eager']
    assert eager['mopro']['host_syncs_per_step'] == 0
    assert eager['mopro']['peak_memory_mb'] > 0
