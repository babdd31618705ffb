"""tools/analysis_tools/benchmark.py (mopro.analysis.step_benchmark) runs
on CPU and reports every timing, at each batch size in each mode,
consistently, with the graphs torch.compile built for each (no timing
assertion: speed is measured, not tested)."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mopro.analysis.step_benchmark import (NOT_APPLICABLE,
                                           StepBenchmarkSettings,
                                           _compile_options, benchmark_step)
from mopro.models import MoPro
from mopro.utils.cli import settings_from_args
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.commands import run_tools, tool_module

benchmark_tool = tool_module('analysis_tools/benchmark')

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
TINY = {
    'model.backbone.depth': 18,
    'model.feat_dim': 512,
    'model.num_classes': 10,
    'model.queue_len': 64
}
TRAINING = ('mopro', 'supervised', 'supervised_plus_forward', 'mopro_runner')
INFERENCE = ('noise_cleaning', 'feature_extraction')
BATCHES, EVAL_BATCH = (4, 2), 6


def _tiny_cfg() -> Config:
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(TINY)
    return cfg


def _codes(entry: dict) -> list:
    return [graph['code'] for graph in entry['graphs']]


@pytest.mark.slow
def test_benchmark_reports_all_steps(tmp_path):
    """Two batch sizes, eager and compiled (aot_eager: a CPU build in
    seconds) side by side, CUDA graphs reported as not applicable, on the
    CPU because the command asks for it. The Runner's model builds the
    training graphs of the step again, static as they are: the step's
    model, evaluated at another batch size meanwhile, does not make them
    dynamic (its backbone's graph was, when all compiled models shared
    one automatic-dynamic state)."""
    out = str(tmp_path / 'bench.json')
    run, = run_tools([[
        'analysis_tools/benchmark', CONFIG, '--iters', '1', '--warmup', '1',
        '--batch-sizes', *BATCHES, '--eval-batch-size', EVAL_BATCH,
        '--image-size', '32', '--device', 'cpu', '--modes', 'eager',
        'compiled', 'reduce-overhead', '--compile-backend', 'aot_eager',
        '--out', out, '--cfg-options', *[f'{k}={v}' for k, v in TINY.items()]
    ]])
    assert run.code == 0, run.stderr[-3000:]
    results = json.load(open(out))
    # what it prints is what it writes
    assert json.loads(run.value[run.value.index('{\n'):]) == results
    assert results['device'] == 'cpu'
    assert results['batch_sizes'] == list(BATCHES)
    assert results['modes'] == ['eager', 'compiled', 'reduce-overhead']
    assert results['eval_batch_size'] == EVAL_BATCH
    assert results['optimizer']['type'] == 'SGD'
    assert results['optim_wrapper'] == 'OptimWrapper'  # no bf16 on CPU
    assert results['compile'] == dict(
        compiled=dict(backend='aot_eager', mode=None, dynamic=None))
    assert list(results['by_batch_size']) == ['4', '2']
    for batch, sections in results['by_batch_size'].items():
        assert list(sections) == results['modes']
        assert sections['reduce-overhead'] == NOT_APPLICABLE  # not timed
        for mode in ('eager', 'compiled'):
            section = sections[mode]
            # the inference batches with the first batch size's model only
            steps = TRAINING + (INFERENCE if batch == '4' else ())
            assert set(section) == set(steps) | {
                'mopro_vs_bound', 'mopro_vs_supervised', 'runner_vs_step'
            }
            for step in steps:
                entry = section[step]
                images = EVAL_BATCH if step in INFERENCE else int(batch)
                assert entry['img_per_s'] > 0
                assert entry['img_per_s'] * entry['ms_per_iter'] == \
                    pytest.approx(1e3 * images)
                assert entry['peak_memory_mb'] is None  # CPU
                assert entry['first_iters_s'] > 0
                assert entry['overhead_s'] == pytest.approx(
                    entry['first_iters_s'] - entry['ms_per_iter'] / 1e3)
                assert entry['new_graphs'] == len(entry['graphs'])
                assert entry['cudagraph_skips'] == 0
                assert entry['cudagraph_skip_reasons'] == []
                if mode == 'eager':
                    assert entry['graphs'] == []
            assert section['mopro']['host_syncs_per_step'] is None  # CUDA
            assert section['runner_vs_step'] == (
                section['mopro_runner']['img_per_s'] /
                section['mopro']['img_per_s'])
            assert section['mopro_vs_bound'] == (
                section['mopro']['img_per_s'] /
                section['supervised_plus_forward']['img_per_s'])
        compiled = sections['compiled']
        # the training step built its graphs (encoder, momentum encoder),
        # static; the supervised steps reuse them
        step, runner = compiled['mopro'], compiled['mopro_runner']
        assert [
            code.startswith(f'compiled_MoPro_{name}') for code, name in zip(
                _codes(step), ('backbone', 'momentum_backbone'))
        ] == [True, True]
        assert step['dynamic_graphs'] == step['recompiles'] == 0
        for name in ('supervised', 'supervised_plus_forward'):
            assert compiled[name]['graphs'] == []
        # the Runner's model: the same static graphs, its own entries
        assert len(_codes(runner)) == 2
        assert runner['dynamic_graphs'] == runner['recompiles'] == 0
        assert not set(_codes(runner)) & set(_codes(step))
        if batch == '4':
            # eval mode: one graph each (no-grad, then inference mode),
            # recompiled from the training graph, its batch dynamic
            for name in INFERENCE:
                entry = compiled[name]
                assert _codes(entry) == _codes(step)[:1]
                assert entry['recompiles'] == entry['dynamic_graphs'] == 1
    summary = results['summary']
    for batch, sections in results['by_batch_size'].items():
        ours = summary['by_batch_size'][batch]
        assert set(ours) == {'eager', 'compiled', 'compiled_vs_eager'}
        for mode in ('eager', 'compiled'):
            assert ours[mode] == dict(
                mopro_img_per_s=sections[mode]['mopro']['img_per_s'],
                mopro_vs_bound=sections[mode]['mopro_vs_bound'],
                runner_vs_step=sections[mode]['runner_vs_step'],
                mopro_first_iters_s=sections[mode]['mopro']['first_iters_s'])
        rate = {
            mode: ours[mode]['mopro_img_per_s']
            for mode in sections if mode != 'reduce-overhead'
        }
        assert ours['compiled_vs_eager'] == rate['compiled'] / rate['eager']
    rates = {
        (batch, mode): summary['by_batch_size'][batch][mode]['mopro_img_per_s']
        for batch in ('2', '4')
        for mode in ('eager', 'compiled')
    }
    across = summary['small_vs_large_batch']
    assert across['batch_sizes'] == [2, 4]
    for mode in ('eager', 'compiled'):
        assert across[mode] == rates['2', mode] / rates['4', mode]
    best = across['best_modes']
    assert across['best'] == rates['2', best[0]] / rates['4', best[1]]
    for batch, mode in zip(('2', '4'), best):
        assert rates[batch, mode] == max(rates[batch, m]
                                         for m in ('eager', 'compiled'))


@pytest.mark.slow
def test_runner_section_trains_in_the_configs_loop(monkeypatch):
    """The Runner section runs the configs' EpochBasedTrainLoop, which
    puts the model in training mode once per epoch, not once per
    iteration as IterBasedTrainLoop does: ``MoPro.train(True)`` is called
    once for the step sections' model and once for the Runner's."""
    calls = []
    train = MoPro.train

    def spy(self, mode=True):
        calls.append(mode)
        return train(self, mode)

    monkeypatch.setattr(MoPro, 'train', spy)
    results = benchmark_step(
        _tiny_cfg(),
        StepBenchmarkSettings(iters=3, warmup=2, batch_sizes=(4, ),
                              eval_batch_size=EVAL_BATCH, image_size=32,
                              device='cpu', modes=('eager', )))
    assert results['by_batch_size']['4']['eager']['mopro_runner'][
        'img_per_s'] > 0
    assert calls.count(True) == 2, calls


@pytest.mark.slow
def test_no_inference_leaves_the_eval_batches_out():
    """``--no-inference`` (the GPU checks' setting) times the training
    sections alone."""
    args = benchmark_tool.parse_args([CONFIG, '--no-inference'])
    settings = settings_from_args(StepBenchmarkSettings, args)
    assert settings.inference is False
    results = benchmark_step(
        _tiny_cfg(),
        StepBenchmarkSettings(iters=1, warmup=1, batch_sizes=(4, ),
                              eval_batch_size=EVAL_BATCH, image_size=32,
                              device='cpu', modes=('eager', ),
                              inference=False))
    section = results['by_batch_size']['4']['eager']
    assert set(TRAINING) <= set(section)
    assert not set(INFERENCE) & set(section)


@pytest.mark.slow
def test_bad_batch_sizes_and_modes_are_usage_errors(tmp_path):
    """A batch size below 1, a mode that does not exist, a value given
    twice: argparse's usage error, its last line (exit status 2) naming the
    flag, before any model is built or output written."""
    out = tmp_path / 'bench.json'
    cases = {
        ('--batch-sizes', '256', '0'):
        "argument --batch-sizes: 0: must be "
        'at least 1',
        ('--batch-sizes', '32', '256', '32'):
        'argument --batch-sizes: 32 '
        'given twice',
        # the choices follow, quoted or not as the Python version does
        ('--modes', 'eager', 'fast'):
        "argument --modes: invalid choice: "
        "'fast' (choose from ",
        ('--modes', 'eager', 'compiled', 'eager'):
        'argument --modes: eager '
        'given twice',
    }
    runs = run_tools([[
        'analysis_tools/benchmark', CONFIG, *args, '--out', out, '--device',
        'cpu'
    ] for args in cases])
    for run, message in zip(runs, cases.values()):
        assert run.code == 2, run
        assert 'Traceback' not in run.stderr
        assert run.stderr.splitlines()[-1].startswith(
            f'benchmark.py: error: {message}')
        assert run.value == ''
    assert not out.exists()


def test_reduce_overhead_options():
    """On CUDA, ``reduce-overhead`` is the config's torch.compile arguments
    with torch's mode of that name, or inductor's ``triton.cudagraphs``
    where the config passes inductor options (torch takes a mode or
    options, not both); with another backend it is a one-line error before
    anything is built. Off CUDA it is not timed."""
    cfg = _tiny_cfg()
    modes = ('compiled', 'reduce-overhead')
    cuda, cpu = torch.device('cuda'), torch.device('cpu')
    settings = StepBenchmarkSettings()
    options = _compile_options(cfg, settings, modes, cuda)
    assert options == {
        'compiled':
        dict(backend='inductor', mode=None, dynamic=None),
        'reduce-overhead':
        dict(backend='inductor', mode='reduce-overhead', dynamic=None)
    }
    assert list(_compile_options(cfg, settings, modes, cpu)) == ['compiled']
    cfg.model.compile = dict(options={'max_autotune': False})
    options = _compile_options(cfg, settings, modes, cuda)
    assert options['reduce-overhead'] == dict(options={
        'max_autotune': False,
        'triton.cudagraphs': True
    })
    assert options['compiled'] == dict(options={'max_autotune': False})
    with pytest.raises(ConfigError) as err:
        _compile_options(cfg,
                         StepBenchmarkSettings(compile_backend='aot_eager'),
                         modes, cuda)
    assert str(err.value) == (
        "--modes reduce-overhead: CUDA graphs are inductor's, the "
        "torch.compile backend is 'aot_eager'")


@pytest.mark.slow
def test_unwritable_out_or_small_queue_is_refused_before_timing(tmp_path):
    # a folder, or a path below a file: one line before any model is
    # built (it was an errno message after the whole benchmark); a queue
    # smaller than a batch: one line before building (it was at the
    # first step)
    folder, afile = tmp_path / 'folder', tmp_path / 'afile'
    folder.mkdir()
    afile.write_text('')
    small = [
        '--iters', '1', '--warmup', '0', '--batch-sizes', '2', '--image-size',
        '32', '--device', 'cpu', '--modes', 'eager'
    ]
    tiny = [f'{k}={v}' for k, v in TINY.items()]
    runs = run_tools([[
        'analysis_tools/benchmark', CONFIG, '--out', out, *small,
        '--cfg-options', *tiny
    ] for out in (folder, afile / 'bench.json')] + [[
        'analysis_tools/benchmark', CONFIG, *small, '--batch-sizes', '1', '2',
        '--cfg-options', *tiny, 'model.queue_len=1'
    ]])
    assert runs[0].error == (f'error: {folder}: the --out file is a folder, '
                             'expected a file path')
    assert runs[1].error == (f'error: {afile / "bench.json"}: cannot write '
                             f'the --out file: {afile} is a file, not a '
                             'folder')
    assert runs[2].error == (
        'error: model.queue_len=1 is smaller than the global batch 2 (the '
        'benchmark batch size 2): MoPro enqueues every batch')
    for run in runs:
        assert '{' not in run.value  # no benchmark ran
    assert os.listdir(folder) == [] and afile.read_text() == ''


@pytest.mark.gpu
def test_benchmark_step_on_cuda_makes_no_host_sync():
    # torch's sync debug mode around one bf16 step of the v1 config (eager:
    # the compiled step is checked in test_compile_gpu.py)
    results = benchmark_step(
        _tiny_cfg(),
        StepBenchmarkSettings(iters=2, warmup=2, batch_sizes=(8, ),
                              eval_batch_size=8, image_size=64, device='cuda',
                              modes=('eager', )))
    assert results['optim_wrapper'] == 'AmpOptimWrapper'
    eager = results['by_batch_size']['8']['eager']
    assert eager['mopro']['host_syncs_per_step'] == 0
    assert eager['mopro']['peak_memory_mb'] > 0


@pytest.mark.gpu
def test_reduce_overhead_runs_every_section_in_cuda_graphs():
    """With inductor's CUDA graphs, no graph of the step, the Runner or the
    inference batches is run without them (BatchNorm statistics are
    mutated in place: inductor skips graphs that mutate inputs other than
    parameters and buffers), and the step makes no host sync."""
    results = benchmark_step(
        _tiny_cfg(),
        StepBenchmarkSettings(iters=3, warmup=3, batch_sizes=(8, ),
                              eval_batch_size=16, image_size=64, device='cuda',
                              modes=('reduce-overhead', )))
    section = results['by_batch_size']['8']['reduce-overhead']
    for step in TRAINING + INFERENCE:
        assert section[step]['cudagraph_skips'] == 0, section[step]
    assert len(section['mopro']['graphs']) == 2
    assert len(section['mopro_runner']['graphs']) == 2
    assert section['mopro_runner']['dynamic_graphs'] == 0
    assert section['mopro']['host_syncs_per_step'] == 0
