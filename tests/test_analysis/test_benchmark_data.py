"""tools/analysis_tools/benchmark_data.py (mopro.analysis.data_benchmark)
times both data paths per core, stage by stage, through the Runner, and
the Runner loop with its hooks, and reports them consistently (no timing
assertion: speed is measured, not tested)."""
import json
import math
import os
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import FUNCTIONS

import mopro.analysis.loop_overhead as loop_overhead
import mopro.datasets.transforms.loading as loading
from mopro.analysis.data_benchmark import (DataBenchmarkSettings,
                                           benchmark_data, handover,
                                           load_samples, train_pipeline)
from mopro.analysis.loop_overhead import LOGGED, age_histories
from mopro.analysis.stage_timing import StagedPipeline
from mopro.analysis.timing import publish
from mopro.datasets.seeding import seed_rngs
from mopro.engine.message_hub import GrowingHistoryBuffer, grow_histories
from mopro.utils.device import default_device
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.commands import run_tools
from helpers.data import write_image

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
GPU_CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1_gpu_data.py')
# the GPU path on the CPU (the same code), small: the device is explicit so
# that the tests read the same on a machine with a GPU
GPU_PATH = [
    '--device', 'cpu', '--batch-size', '4', '--handover-batch', '4',
    '--handover-repeats', '1', '--gpu-cfg-options',
    'model.data_preprocessor.crop_size=32',
    'model.data_preprocessor.compile_views=False'
]
SMALL_GPU_PATH = dict(device='cpu', batch_size=4, handover_batch=4,
                      handover_repeats=1)
# views eager: torch.compile's CPU build of them takes seconds
# (tests/test_gpu_data/test_preprocessor.py tests them)
GPU_CROPS = {
    'model.data_preprocessor.crop_size': 32,
    'model.data_preprocessor.compile_views': False
}
TINY_MODEL = {
    'model.backbone.depth': 18,
    'model.feat_dim': 512,
    'model.proj_hidden_dim': 64,
    'model.embed_dim': 16,
    'model.queue_len': 32,
    'model.num_classes': 4,
    'model.channels_last': False,
    'train_dataloader.dataset.num_classes': 4
}
SMALL_CROPS = {
    'train_dataloader.dataset.pipeline.1.transforms.0.0.scale': 32,
    'train_dataloader.dataset.pipeline.1.transforms.1.0.scale': 32
}
# the config's transforms, as the stages name them (view0: the weak view's
# pipeline, view1: the strong view's)
CPU_STAGES = [
    'LoadWebImage.read', 'LoadWebImage.decode', 'view0.RandomResizedCrop',
    'view0.RandomFlip', 'view1.RandomResizedCrop', 'view1.NumpyToPIL',
    'view1.RandomGrayscale', 'view1.ColorJitter', 'view1.PILToNumpy',
    'view1.RandomFlip', 'MultiView.copy', 'PackInputs', 'collate'
]
GPU_STAGES = [
    'LoadWebImageBytes.read', 'LoadWebImageBytes.header_check',
    'LoadWebImageBytes.fallback_decode', 'LoadWebImageBytes.to_tensor',
    'PackInputs', 'collate'
]


def _config(path: str, *options: dict) -> Config:
    cfg = Config.fromfile(path)
    for changes in options:
        cfg.merge_from_dict(changes)
    return cfg


def _folder(tmp_path, num: int):
    folder = tmp_path / 'jpegs'
    for i in range(num):
        write_image(str(folder / f'{i}.jpg'), i, size=48)
    return folder


def _int_keys(mapping: dict) -> dict:
    """JSON writes the batch sizes of the operator counts as strings."""
    return {int(k) if k.isdigit() else k: v for k, v in mapping.items()}


def _check_threads(report: dict, torch_threads: int) -> None:
    """A thread report of this process: the main thread by its Python
    name, the busiest first."""
    assert report['main_thread']['name'] == 'MainThread'
    assert report['torch_num_threads'] == torch_threads
    assert report['torch_num_interop_threads'] >= 1
    top = report['top']
    assert 1 <= len(top) <= min(8, report['threads'])
    used = [thread['cpu_ms_per_image'] for thread in top]
    assert used == sorted(used, reverse=True) and used[-1] >= 0
    assert 0 <= report['busy_threads'] <= report['threads']
    assert all(t['cores'] == pytest.approx(0) for t in top
               if t['cpu_ms_per_image'] == 0)


def _check_stages(entry: dict, stages: list, handover: dict,
                  batch: int) -> None:
    """Worker stages: the config's transforms by name, their CPU times
    adding up to the whole pipeline's."""
    times = entry['cpu_ms_per_image']
    assert list(times) == stages
    assert all(ms >= 0 for ms in times.values())
    # the photos are baseline JPEGs: nothing for the CPU to decode
    assert times.get('LoadWebImageBytes.fallback_decode', 0) == 0
    total = entry['stages_sum_cpu_ms_per_image']
    assert total == pytest.approx(
        sum(ms for name, ms in times.items() if name != 'collate'))
    assert total > 0
    # the same run with its clocks: only the pipeline's own loop and the
    # clocks' switching (some µs) are left out of the stages; a stage left
    # out would be a tenth or more of a CPU path's time
    whole = entry['instrumented_pipeline_cpu_ms_per_image']
    assert total <= whole < 1.05 * total + 0.05
    # without clocks, on the same images and random draws: the clocks' cost
    # is a measurement (three images here), not asserted
    assert entry['pipeline_cpu_ms_per_image'] > 0
    assert entry['collate_batch_size'] == batch
    assert times['collate'] == pytest.approx(handover['collate_cpu_ms'] /
                                             batch)
    assert entry['worker_cpu_ms_per_image'] == pytest.approx(total +
                                                             times['collate'])


def _check(results: dict, out: str, count: int, cuda: bool) -> None:
    """``cuda``: whether the process that measured saw a GPU."""
    assert json.load(open(out)) == json.loads(json.dumps(results))
    results = json.loads(json.dumps(results), object_hook=_int_keys)
    assert results['threads'] == 1 and results['iters'] == 3
    assert results['block'] == 2
    assert results['images']['count'] == count
    for name in ('project', 'released', 'gpu_path_workers'):
        rate = results[name]['img_per_s_per_core']
        assert rate > 0
        assert rate * results[name]['ms_per_image'] == pytest.approx(1e3)
        assert results[name]['cpu_ms_per_image'] > 0
    # where normalisation happens, each pipeline as shipped
    assert 'on the GPU' in results['project']['output']
    assert 'on the CPU' in results['released']['output']
    rate = results['project']['img_per_s_per_core']
    assert results['project_vs_released'] == (
        rate / results['released']['img_per_s_per_core'])
    assert results['gpu_img_per_s'] == 2600
    assert results['cores_per_gpu_for_2600_img_s'] == math.ceil(2600 / rate)
    # the GPU path: worker side per core, preprocessor on the given device
    # as the training process runs it, its threads named
    device = results['gpu_path_device']
    assert device['device'] == 'cpu' and device['batch_size'] == 4
    assert device['img_per_s'] > 0
    assert device['main_process_cpu_ms_per_image'] > 0
    _check_threads(device['threads'], torch.get_num_threads())
    # operators per batch: each preprocessor, and the GPU path's decoding
    # (in the background thread), as many for 32 as for 256 images
    gpu, cpu = results['gpu_path'], results['cpu_path']
    for ops in (gpu['preprocessor_ops_per_batch'],
                cpu['preprocessor_ops_per_batch'],
                gpu['decode_ops_per_batch']):
        assert set(ops) == {32, 256}
        assert ops[32] == ops[256] > 0
    # what crosses from the workers: the config's collate functions hand
    # over a few tensors per batch, mmengine's one per image or DataSample
    packed = gpu['handover']['packed_images_collate']
    assert gpu['handover']['batch_size'] == 4
    assert packed['tensors'] == 3
    # (mmpretrain's reducer sends a DataSample's label as a numpy array)
    assert gpu['handover']['pseudo_collate']['tensors'] == 4
    assert cpu['handover']['multiview_collate']['tensors'] == 3
    assert cpu['handover']['default_collate']['tensors'] == 2
    for entry in (packed, cpu['handover']['multiview_collate']):
        assert entry['tensor_bytes'] > 0 and entry['pickle_bytes'] > 0
        assert entry['collate_cpu_ms'] >= 0 and entry['transfer_cpu_ms'] > 0
        # pinning is measured where CUDA is
        if cuda:
            assert entry['pin_cpu_ms'] > 0
        else:
            assert entry['pin_cpu_ms'] is None
    _check_stages(cpu['worker_stages'], CPU_STAGES,
                  cpu['handover']['multiview_collate'], 4)
    _check_stages(gpu['worker_stages'], GPU_STAGES, packed, 4)
    cores = results['cores_per_gpu']
    assert cores['img_per_s'] == 4700
    assert cores['cpu_path'] == 4700 / rate
    assert cores['gpu_path'] is None  # only meaningful on a GPU
    assert results['cpu']
    assert set(results['versions']) == {
        'python', 'torch', 'torchvision', 'pillow', 'numpy'
    }


@pytest.mark.slow
def test_default_photos(tmp_path):
    out = str(tmp_path / 'data.json')
    run, = run_tools([[
        'analysis_tools/benchmark_data', CONFIG, '--num-images', '3',
        '--iters', '3', '--warmup', '1', '--block', '2', '--out', out,
        '--cfg-options', *[f'{k}={v}' for k, v in SMALL_CROPS.items()]
    ] + GPU_PATH])
    assert run.code == 0, run.stderr[-3000:]
    results = json.loads(run.value[run.value.index('{\n'):])
    _check(results, out, 3, cuda=False)  # user_env hides the GPUs
    # crops of scikit-learn's photos at WebVision's 256-pixel short side
    images = results['images']
    assert 'scikit-learn' in images['source']
    assert min(images['mean_height'], images['mean_width']) >= 256


def test_image_folder(tmp_path):
    folder = _folder(tmp_path, 4)
    write_image(str(folder / 'skipped.png'), 9, size=48)
    out = str(tmp_path / 'data.json')
    settings = DataBenchmarkSettings(
        images=str(folder), iters=3, warmup=1, block=2, **SMALL_GPU_PATH)
    results = publish(
        benchmark_data(
            _config(CONFIG, SMALL_CROPS), _config(GPU_CONFIG, GPU_CROPS),
            settings), out)
    _check(results, out, 4, cuda=torch.cuda.is_available())
    assert results['images']['source'] == str(folder)
    assert results['images']['mean_height'] == 48


def test_stages_run_the_config_transforms(tmp_path):
    """The staged pipeline is the config's own, with clocks: with the RNGs
    seeded alike it makes the views the pipeline makes without them, and
    it leaves the functions it times inside the loading unwrapped."""
    cfg = _config(CONFIG, SMALL_CROPS)
    staged = StagedPipeline(train_pipeline(cfg))
    plain = train_pipeline(cfg)
    read = loading.image_bytes
    for i, path in enumerate(sorted(_folder(tmp_path, 3).iterdir())):
        views = []
        for pipeline in (plain, staged):
            seed_rngs((0, i, 0))
            views.append(
                pipeline(dict(img_path=str(path), gt_label=0,
                              sample_idx=i))['inputs'])
        assert len(views[0]) == 2
        assert all(torch.equal(a, b) for a, b in zip(*views))
    assert loading.image_bytes is read
    seconds = staged.clock.own_seconds(staged.stages)
    assert list(seconds) == CPU_STAGES[:-1]
    assert all(s >= 0 for s in seconds.values()) and sum(seconds.values())


def test_handover_times_samples_as_a_worker_has_them(tmp_path):
    """mmpretrain's reducer of a DataSample (what a worker's queue pickles)
    turns its label tensor into a numpy array in place: the hand-over
    measurement used to leave its samples so, and time its later rounds,
    and any later measurement, on other objects than a worker sends."""
    paths = sorted(str(path) for path in _folder(tmp_path, 3).iterdir())
    samples = load_samples(_config(GPU_CONFIG), paths, 3)
    first = handover(FUNCTIONS.get('pseudo_collate'), samples, 1)
    assert all(
        isinstance(sample['data_samples'].gt_label, torch.Tensor)
        for sample in samples)
    again = handover(FUNCTIONS.get('pseudo_collate'), samples, 1)
    # the bytes of each file cross as shared memory, the labels (numpy) in
    # the pickle
    assert first['tensors'] == again['tensors'] == 3
    assert first['pickle_bytes'] == again['pickle_bytes']


def test_runner_mode_times_both_paths(tmp_path):
    """runner=True: both data paths through the Runner in one run, with
    the config's loop type, img/s, data_time, workers and CPU time per
    image for each, and the training process's threads."""
    settings = DataBenchmarkSettings(runner=True,
                                     images=str(_folder(tmp_path, 6)),
                                     runner_iters=2, warmup=1, workers=0,
                                     gpu_workers=1, batch_size=4)
    results = benchmark_data(
        _config(CONFIG, TINY_MODEL, SMALL_CROPS),
        _config(GPU_CONFIG, GPU_CROPS, TINY_MODEL), settings)
    assert results['mode'] == 'runner' and results['images']['count'] == 6
    for name, workers in (('cpu_path', 0), ('gpu_path', 1)):
        run = results[name]
        # the configs train by epoch: mmengine's epoch loop, not its
        # iteration loop (model.train() in every iteration)
        assert run['train_loop'] == 'EpochBasedTrainLoop'
        assert run['workers'] == workers and run['batch_size'] == 4
        # where mmengine's Runner trains: CUDA when torch sees it
        assert run['iters'] == 2
        assert torch.device(run['device']).type == default_device().type
        assert run['img_per_s'] > 0 and run['iter_time_s'] > 0
        assert 0 <= run['data_time_s'] <= run['iter_time_s']
        assert run['main_process_cpu_ms_per_image'] > 0
        _check_threads(run['threads'], torch.get_num_threads())
    assert results['cpu_path']['worker_cpu_ms_per_image'] is None
    assert results['gpu_path']['worker_cpu_ms_per_image'] >= 0
    assert results['gpu_path']['config'].endswith('_gpu_data.py')
    assert results['gpu_vs_cpu_path'] == (
        results['gpu_path']['img_per_s'] / results['cpu_path']['img_per_s'])


@pytest.mark.parametrize('path,options,loop', [
    (CONFIG, SMALL_CROPS, 'EpochBasedTrainLoop'),
    (GPU_CONFIG, GPU_CROPS, 'EpochBasedTrainLoop'),
    (CONFIG, dict(SMALL_CROPS, train_cfg=dict(
        by_epoch=False, max_iters=10)), 'IterBasedTrainLoop'),
])
def test_loop_mode_times_every_hook(tmp_path, path, options, loop):
    """loop=True: the Runner loop of the config (its loop type, hooks and
    data preprocessor) with a trivial model, ms per iteration of the loop
    and of its parts, each hook of the config, and a profile."""
    cfg = _config(path, options)
    settings = DataBenchmarkSettings(loop=True,
                                     images=str(_folder(tmp_path,
                                                        4)), batch_size=4,
                                     warmup=2, loop_iters=3, profile_iters=2)
    results = benchmark_data(cfg, None, settings)
    assert results['mode'] == 'loop' and results['train_loop'] == loop
    assert results['iters'] == 3 and results['batch_size'] == 4
    assert results['warmup_iters'] == 2 and results['profile_iters'] == 2
    expected = [
        hook['type']
        for hook in [*cfg.default_hooks.values(), *cfg.custom_hooks] if hook
    ]
    hooks = results['hooks']
    assert sorted(hooks) == sorted(expected)
    for entry in hooks.values():
        assert set(entry['stages_ms_per_iter']) <= {
            'before_train_iter', 'after_train_iter'
        }
        assert entry['ms_per_iter'] == pytest.approx(
            sum(entry['stages_ms_per_iter'].values()))
        assert all(ms >= 0 for ms in entry['once_ms'].values())
    # per-iteration work of the project's hooks, and their once-per-run
    # or per-epoch work apart from it (a checkpoint after each epoch)
    assert hooks['DeferredRuntimeInfoHook']['stages_ms_per_iter'][
        'after_train_iter'] > 0
    assert hooks['MoProHook']['stages_ms_per_iter']['after_train_iter'] > 0
    assert 'before_train_epoch' in hooks['MoProHook']['once_ms']
    if loop == 'EpochBasedTrainLoop':
        assert 'after_train_epoch' in hooks['SafeCheckpointHook']['once_ms']
    # the loop's parts take no more than the whole, the step none of the
    # preprocessor's time
    ms = results['ms_per_iter']
    assert ms['loop'] > 0 and ms['data_preprocessor'] > 0 and ms['step'] > 0
    assert ms['hooks'] == pytest.approx(
        sum(entry['ms_per_iter'] for entry in hooks.values()))
    assert ms['rest'] >= 0
    assert ms['loop'] == pytest.approx(ms['hooks'] + ms['data_preprocessor'] +
                                       ms['step'] + ms['rest'])
    assert results['host_overhead_ms_per_iter'] == pytest.approx(ms['hooks'] +
                                                                 ms['rest'])
    _check_threads(results['threads'], torch.get_num_threads())
    profile = results['profile']
    assert 0 < len(profile) <= 20
    own = [entry['own_ms_per_iter'] for entry in profile]
    assert own == sorted(own, reverse=True)
    assert all(entry['calls_per_iter'] > 0 for entry in profile)


def test_loop_history_times_a_run_that_far_in(tmp_path, monkeypatch):
    """``loop_history``: before the timed iterations every logged scalar's
    history holds that many values, in the buffers of the Runner
    ``tools/train.py`` builds (MoProRunner's, which append in constant
    time)."""
    seen = []
    age = loop_overhead.age_histories

    def spy(hub, length, keys):
        age(hub, length, keys)
        seen.extend((type(buffer), len(buffer.data[0]))
                    for buffer in hub.log_scalars.values())

    monkeypatch.setattr(loop_overhead, 'age_histories', spy)
    settings = DataBenchmarkSettings(loop=True,
                                     images=str(_folder(tmp_path, 4)),
                                     batch_size=4, warmup=2, loop_iters=2,
                                     profile_iters=0, loop_history=1000)
    results = benchmark_data(_config(CONFIG, SMALL_CROPS), None, settings)
    assert results['history'] == 1000
    # the model's values too, which reach the hub at the logger's interval
    assert len(seen) > len(LOGGED)
    assert set(seen) == {(GrowingHistoryBuffer, 1000)}


def test_aged_histories_keep_the_hub_s_buffer_class():
    for hub, kind in ((MessageHub('plain'), HistoryBuffer),
                      (grow_histories(MessageHub('grown')),
                       GrowingHistoryBuffer)):
        hub.update_scalar('train/lr', 0.1)
        hub.update_scalar('train/loss', 2.0)
        age_histories(hub, 300, ['train/loss', 'train/acc'])
        for key, value in (('train/lr', 0.1), ('train/loss', 2.0),
                           ('train/acc', 1.0)):
            buffer = hub.log_scalars[key]
            assert type(buffer) is kind
            logs, counts = buffer.data
            assert len(logs) == len(counts) == 300
            assert buffer.mean(300) == pytest.approx(value)
        hub.update_scalar('train/lr', 0.2)
        assert len(hub.log_scalars['train/lr'].data[0]) == 301
        assert hub.log_scalars['train/lr'].current() == 0.2


@pytest.mark.parametrize('mode', ['runner', 'loop'])
def test_runner_modes_refuse_a_device_the_runner_will_not_use(mode):
    other = 'cpu' if torch.cuda.is_available() else 'cuda'
    settings = DataBenchmarkSettings(device=other, **{mode: True})
    with pytest.raises(ConfigError, match=f'^--device {other}: --{mode} '):
        benchmark_data(
            Config.fromfile(CONFIG), Config.fromfile(GPU_CONFIG), settings)


def test_one_mode_at_a_time():
    """A user error (one line through the tool), before any work."""
    settings = DataBenchmarkSettings(runner=True, loop=True, images='none')
    with pytest.raises(ConfigError,
                       match='^--runner and --loop: choose one mode$'):
        benchmark_data(
            Config.fromfile(CONFIG), Config.fromfile(GPU_CONFIG), settings)


def test_shards_mode_reads_files_and_shards(tmp_path):
    """--shards: the four readers over the same images; a file per image
    against a shard per epoch of 4 images (1 shard of them)."""
    settings = DataBenchmarkSettings(
        images=str(_folder(tmp_path, 4)), iters=8, warmup=1, block=2,
        shards=True)
    results = benchmark_data(
        _config(CONFIG, SMALL_CROPS), Config.fromfile(GPU_CONFIG), settings)
    assert results['mode'] == 'shards' and results['images']['count'] == 4
    opened = {
        name: results[name]['files_opened_per_image']
        for name in ('files_bytes', 'shards_bytes', 'files_pipeline',
                     'shards_pipeline')
    }
    assert opened == dict(files_bytes=1.0, shards_bytes=0.25,
                          files_pipeline=1.0, shards_pipeline=0.25)
    assert all(results[name]['img_per_s_per_worker'] > 0 for name in opened)


@pytest.mark.slow
def test_bad_input_is_a_one_line_error(tmp_path):
    empty, missing = tmp_path / 'empty', tmp_path / 'missing.py'
    empty.mkdir()
    afile = tmp_path / 'afile'
    afile.write_text('')
    small = [
        '--num-images', '3', '--iters', '3', '--warmup', '1', '--block', '2',
        *GPU_PATH
    ]
    runs = run_tools([
        ['analysis_tools/benchmark_data', CONFIG, '--images', empty],
        ['analysis_tools/benchmark_data', missing],
        # --out was found unwritable after the benchmark, as an errno
        ['analysis_tools/benchmark_data', CONFIG, '--out', empty, *small],
        [
            'analysis_tools/benchmark_data', CONFIG, '--out',
            afile / 'data.json', *small
        ],
    ])
    assert str(empty) in runs[0].error
    assert re.match('error: .*missing.py', runs[1].error)
    assert runs[2].error == (f'error: {empty}: the --out file is a folder, '
                             'expected a file path')
    assert runs[3].error == (f'error: {afile / "data.json"}: cannot write '
                             f'the --out file: {afile} is a file, not a '
                             'folder')
    # refused before the benchmark: nothing timed, printed or written
    for run in runs[2:]:
        assert '{' not in run.value
    assert os.listdir(empty) == [] and afile.read_text() == ''
