"""The two-view training data paths: per CPU core, through the Runner, and
the Runner loop's own host time.

:func:`benchmark_data` runs one of three modes on the same JPEGs (crops
of scikit-learn's sample photos at WebVision's size, or a folder of
JPEGs), for the CPU data path (``cfg``) and the GPU data path
(``gpu_cfg``):

- per core (:func:`per_core_benchmark`): the pipelines in one thread
  (the project's, the released code's, the GPU path's workers) and each
  worker stage (:mod:`.stage_timing`), what crosses from the workers per
  batch, the operators per batch of each preprocessor, and the GPU path's
  preprocessor on the settings' device as the training process runs it
  (decoding one batch ahead in its thread, torch's default intra-op
  threads), with its threads' CPU time (:mod:`.thread_usage`);
- ``runner``: both paths end to end through mmengine's Runner with the
  config's loop type (:func:`runner_benchmark`);
- ``loop``: the Runner loop's host time per iteration and per hook, with a
  trivial model (:mod:`.loop_overhead`);
- ``shards``: reading the images from tar shards against one file each,
  per worker, and the files opened per image (:mod:`.shard_benchmark`).

A two-view sample counts as one image.
"""
import copy
import glob
import io
import math
import os
import os.path as osp
import pickle
import tempfile
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401 (the workers' tensor reductions)
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import FUNCTIONS, init_default_scope
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image
from torch.utils.data._utils.pin_memory import pin_memory
from torchvision import transforms as T

from ..datasets.seeding import seed_rngs
from ..engine import MoProRunner
from ..engine.launch import adapt_to_device
from ..gpu_data.decode_ahead import SLOT_KEY, DecodeAheadIterator, DecodeSlot
from ..gpu_data.decoding import decode_packed
from ..utils.device import default_device
from ..utils.errors import ConfigError, DataError
from .loop_overhead import benchmark_loop
from .stage_timing import StageClock, StagedPipeline, stage_report
from .thread_usage import sample_threads, thread_report
from .timing import (RunnerTimer, count_operators, cpu_model, device_name,
                     loader_batches, model_device, shown_path, synchronize,
                     train_loop, versions)

GPU_IMG_PER_S = 2600  # the training step's goal on one H100 (ResNet-50)
# what the data path must feed: the MoPro step with compiled backbones ran
# at ~4,700 img/s on one H200 (batch 256, one run; not a figure of record:
# benchmarks/README.md lists the step as not measured by the step benchmark)
TARGET_IMG_PER_S = 4700
SHORT_SIDE = 256  # WebVision's resized images
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
JPEG_SUFFIXES = ('.jpg', '.jpeg')
OPS_BATCH_SIZES = (32, 256)  # *_ops_per_batch
# a pipeline called as a dataset calls it, with an index and a path
Run = Callable[[int, str], object]
SAMPLE_PHOTOS = ('crops of scikit-learn sample photos (china.jpg, '
                 'flower.jpg), 256 px short side, JPEG q90')


@dataclass
class DataBenchmarkSettings:
    """What :func:`benchmark_data` times (the tool's flags)."""
    images: Optional[str] = None  # a folder of JPEGs instead of the photos
    num_images: int = 64  # images to make (with images: the most to use)
    iters: int = 200  # timed images per pipeline
    warmup: int = 10
    block: int = 100  # images per turn (the pipelines alternate)
    seed: int = 0
    # of the GPU path's preprocessor timing (default: cuda if any); with
    # runner, both paths train where mmengine's Runner puts the model
    device: Optional[str] = None
    batch_size: Optional[int] = None  # runner, loop: the config's; else 256
    gpu_img_per_s: int = TARGET_IMG_PER_S  # the rate cores_per_gpu is for
    runner: bool = False  # both paths end to end through the Runner
    runner_iters: int = 20  # timed Runner iterations per path
    loop: bool = False  # the Runner loop's host time (the config's path)
    loop_iters: int = 200  # timed iterations of the loop
    profile_iters: int = 50  # profiled iterations of the loop after them
    loop_history: int = 0  # values in each logged history when timed
    workers: Optional[int] = None  # CPU path workers (default: config's)
    gpu_workers: Optional[int] = None  # GPU path workers (likewise)
    handover_batch: int = 256  # images per batch of the hand-over
    handover_repeats: int = 5  # timed batches of the hand-over
    shards: bool = False  # reading shards against files, per worker
    shard_records: int = 256  # records per shard of the shards mode


def make_photos(directory: str, num: int, seed: int) -> List[str]:
    """``num`` distinct JPEGs cut from scikit-learn's two sample photos.

    Each is a random crop (a third to all of the photo's area, aspect ratio
    3:5 to 5:3) resized to a 256-pixel short side and saved at quality 90,
    as WebVision's resized images are.
    """
    from sklearn.datasets import load_sample_images
    photos = load_sample_images().images  # china.jpg, flower.jpg: 427x640
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(num):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        area = rng.uniform(1 / 3, 1) * height * width
        ratio = math.exp(rng.uniform(math.log(3 / 5), math.log(5 / 3)))
        w = min(width, round(math.sqrt(area * ratio)))
        h = min(height, round(math.sqrt(area / ratio)))
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        crop = Image.fromarray(photo[top:top + h, left:left + w])
        scale = SHORT_SIDE / min(h, w)
        crop = crop.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
        paths.append(osp.join(directory, f'{i:04d}.jpg'))
        crop.save(paths[-1], quality=90)
    return paths


def list_jpegs(directory: str, num: int) -> List[str]:
    """The first ``num`` JPEGs in ``directory`` (by name)."""
    if not osp.isdir(directory):
        raise DataError(f'{directory}: image folder not found')
    paths = sorted(
        p for p in glob.glob(osp.join(directory, '*'))
        if p.lower().endswith(JPEG_SUFFIXES) and osp.isfile(p))
    if not paths:
        raise DataError(f'{directory}: no JPEG files (*.jpg, *.jpeg) in '
                        'this folder')
    return paths[:num]


def describe_images(paths: List[str], source: str) -> Dict:
    """How many images, and their mean size in pixels and kilobytes."""
    sizes = []
    for path in paths:
        with Image.open(path) as img:
            sizes.append(img.size)
    widths, heights = zip(*sizes)
    return dict(
        source=source, count=len(paths), mean_height=float(np.mean(heights)),
        mean_width=float(np.mean(widths)),
        mean_file_kb=float(np.mean([osp.getsize(p) for p in paths])) / 1024)


def train_pipeline(cfg: Config) -> Compose:
    """The config's training pipeline, built as the dataset builds it."""
    return Compose(
        [TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline])


def as_dataset_calls(pipeline: Callable[[dict], object]) -> Run:
    """``pipeline`` called with the dict ``ImageListDataset.get_data_info``
    makes of an index and a path."""

    def run(idx: int, path: str) -> dict:
        return pipeline(dict(img_path=path, gt_label=0, sample_idx=idx))

    return run


def project_pipeline(cfg: Config) -> Run:
    """The config's training pipeline, called as the dataset calls it."""
    return as_dataset_calls(train_pipeline(cfg))


def released_pipeline() -> Run:
    """The released MoPro code's WebVision training transforms (torchvision
    on PIL images): the weak view for the encoder, the strong view for the
    momentum encoder, both applied to each image."""
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    weak = T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        normalize,
    ])
    strong = T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.)),
        T.RandomGrayscale(p=0.2),
        T.ColorJitter(0.4, 0.4, 0.4, 0.4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        normalize,
    ])

    def run(idx: int, path: str) -> tuple:
        image = Image.open(path).convert('RGB')
        return weak(image), strong(image)

    return run


def time_pipelines(runs: Dict[str, Run], paths: List[str],
                   settings: DataBenchmarkSettings,
                   clocks: Sequence[StageClock]) -> Dict:
    """Images per second (one thread), wall ms and thread CPU ms per image
    of each pipeline, cycling over ``paths`` after ``settings.warmup``
    images each (``clocks``, those of the staged pipelines among ``runs``,
    are zeroed after them).

    The pipelines take turns in blocks of ``settings.block`` images, in
    alternating order (ABBA...), so that a drift in the machine's speed
    weighs on both alike. Before each pipeline's block the RNGs are seeded
    alike (:func:`~mopro.datasets.seeding.seed_rngs`, untimed), so
    pipelines of the same transforms draw the same crops, flips and
    jitters on the same images.
    """
    warmup, iters = settings.warmup, settings.iters
    for run in runs.values():
        for i in range(warmup):
            run(i, paths[i % len(paths)])
    for clock in clocks:
        clock.reset()
    seconds = dict.fromkeys(runs, 0.0)
    cpu_seconds = dict.fromkeys(runs, 0.0)
    order = list(runs)
    for first in range(warmup, warmup + iters, settings.block):
        last = min(first + settings.block, warmup + iters)
        for name in order:
            seed_rngs((settings.seed, first, 0))
            start, cpu = time.perf_counter(), time.thread_time()
            for i in range(first, last):
                runs[name](i, paths[i % len(paths)])
            seconds[name] += time.perf_counter() - start
            cpu_seconds[name] += time.thread_time() - cpu
        order.reverse()
    return {
        name:
        dict(img_per_s_per_core=iters / sec, ms_per_image=1e3 * sec / iters,
             cpu_ms_per_image=1e3 * cpu_seconds[name] / iters)
        for name, sec in seconds.items()
    }


def single_thread() -> None:
    """One CPU core: no intra-op threads in torch or OpenCV."""
    torch.set_num_threads(1)
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


def collate_fn(cfg: Config) -> Callable[[list], dict]:
    """The config's ``train_dataloader.collate_fn``."""
    return FUNCTIONS.get(cfg.train_dataloader.collate_fn.type)


def load_samples(cfg: Config, paths: List[str], num: int) -> list:
    """``num`` samples of the config's training pipeline, cycling over
    ``paths``."""
    load = project_pipeline(cfg)
    return [load(i, paths[i % len(paths)]) for i in range(num)]


def collated(cfg: Config, samples: list, num: int) -> dict:
    """A batch of ``num`` of ``samples`` (cycled through), collated by the
    config's collate function."""
    return collate_fn(cfg)([samples[i % len(samples)] for i in range(num)])


@contextmanager
def torch_threads(num: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``num`` inside the block."""
    saved = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def time_gpu_path_device(cfg: Config, samples: list,
                         settings: DataBenchmarkSettings,
                         threads: int) -> Dict:
    """The GPU path's data preprocessor on the settings' device as the
    training process runs it: with ``threads`` intra-op threads, each batch
    decoded one ahead in the decoding thread (``DecodeAheadIterator``, as
    ``DecodeAheadHook`` sets it up) while the views of the one before are
    made. Batches of ``batch_size`` worker outputs (bytes, or CPU-decoded
    pixels). Reports img/s on the device, the process's CPU time per image
    (all its threads: decode calls, kernel launches, fallbacks, views made
    on the CPU) and its busiest threads (:func:`thread_report`)."""
    device = default_device(settings.device)
    preprocessor = MODELS.build(cfg.model.data_preprocessor).to(device)
    batch_size = settings.batch_size or 256
    batch = collated(cfg, samples, batch_size)
    batches = max(1, math.ceil(settings.iters / batch_size))
    warmup = max(1, settings.warmup // batch_size + 1)
    # one more batch, whose decoding the last timed one starts
    loader = [dict(batch) for _ in range(warmup + batches + 1)]
    ahead = DecodeAheadIterator(loader)
    with torch_threads(threads):
        for _ in range(warmup):
            preprocessor(next(ahead), True)
        synchronize(device)
        start = (time.perf_counter(), time.process_time(), sample_threads())
        for _ in range(batches):
            preprocessor(next(ahead), True)
        loader[-1][SLOT_KEY].future.result()
        synchronize(device)
        stop = (time.perf_counter(), time.process_time(), sample_threads())
    wall, cpu = stop[0] - start[0], stop[1] - start[1]
    images = batches * batch_size
    return dict(
        device=str(device), device_name=device_name(device),
        batch_size=batch_size, batches=batches, img_per_s=images / wall,
        main_process_cpu_ms_per_image=1e3 * cpu / images,
        threads=thread_report(start[2], stop[2], wall, images))


class _TensorCount(ForkingPickler):
    """Pickles a batch as a dataloader worker sends it (``ForkingPickler``,
    with the reducers libraries register there), counting the storages of
    the tensors it meets (which cross as shared memory) apart from the rest
    (which crosses as pickle bytes). mmpretrain's reducer of a DataSample
    sends its tensors as numpy arrays, in the pickle bytes."""

    def __init__(self, file) -> None:
        super().__init__(file)
        self.storages: Dict[int, int] = {}

    def persistent_id(self, obj) -> Optional[int]:
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            self.storages[storage.data_ptr()] = storage.nbytes()
            return len(self.storages)
        return None


def handover(collate: Callable[[list], dict], samples: list,
             repeats: int) -> Dict:
    """What crosses from a worker per batch of ``samples`` collated by
    ``collate``, and the CPU ms of the collating and of the transfer (the
    worker's ``ForkingPickler`` pickling, which moves each tensor to shared
    memory, and the training process's unpickling; pinning, as the
    dataloader's pin-memory thread does, where CUDA is available), the mean
    of ``repeats`` batches after one untimed.

    Each batch is collated from a fresh copy of ``samples``, as a worker
    collates new samples: mmpretrain's reducer of a DataSample turns its
    tensors into numpy arrays in place, so a second round would send other
    objects."""
    stream = io.BytesIO()
    counter = _TensorCount(stream)
    counter.dump(collate(copy.deepcopy(samples)))
    pin = torch.cuda.is_available()
    collate_s = transfer_s = pin_s = 0.0
    for repeat in range(repeats + 1):
        fresh = copy.deepcopy(samples)
        start = time.process_time()
        batch = collate(fresh)
        collated = time.process_time()
        received = pickle.loads(ForkingPickler.dumps(batch))
        transferred = time.process_time()
        if pin:
            pin_memory(received)
        if repeat:  # the first one warms up
            collate_s += collated - start
            transfer_s += transferred - collated
            pin_s += time.process_time() - transferred
    return dict(
        tensors=len(counter.storages),
        tensor_bytes=sum(counter.storages.values()),
        pickle_bytes=len(stream.getvalue()),
        collate_cpu_ms=1e3 * collate_s / repeats,
        transfer_cpu_ms=1e3 * transfer_s / repeats,
        pin_cpu_ms=1e3 * pin_s / repeats if pin else None)


def preprocessor_ops(cfg: Config, samples: list, device: torch.device) -> Dict:
    """Operators the GPU path's preprocessor dispatches per batch on the
    training thread, the batch decoded ahead (as ``DecodeAheadHook`` has
    it), and those of the decoding (the background thread's), at each of
    ``OPS_BATCH_SIZES`` images. The views eager (``compile_views`` fuses
    their colour operators into a few kernels, the same for any batch)."""
    ops, decode_ops = {}, {}
    for num in OPS_BATCH_SIZES:
        preprocessor = MODELS.build(
            dict(cfg.model.data_preprocessor, compile_views=False)).to(device)
        batch = collated(cfg, samples, num)
        done = Future()
        decode_ops[num] = count_operators(
            lambda: done.set_result(decode_packed(batch['inputs'], device)))
        slot = batch[SLOT_KEY] = DecodeSlot()
        slot.future = done
        ops[num] = count_operators(lambda: preprocessor(batch, True))
    return dict(
        preprocessor_ops_per_batch=ops, decode_ops_per_batch=decode_ops,
        ops_note='aten operators (TorchDispatchMode) per batch; '
        'the preprocessor on the training thread with the batch '
        'decoded ahead, views eager; the decoding in the background '
        'thread, the batched decoder counted as one operator (nvjpeg\'s '
        'one call on CUDA; on the CPU libjpeg image by image inside one '
        'registered operator, mopro::decode_jpegs_cpu)')


def cpu_path_preprocessor_ops(cfg: Config, samples: list,
                              device: torch.device) -> Dict[int, int]:
    """Operators the CPU path's preprocessor (the config's,
    ``MoProDataPreprocessor``) dispatches on the training thread per
    collated batch, at each of ``OPS_BATCH_SIZES`` images."""
    preprocessor = MODELS.build(cfg.model.data_preprocessor).to(device)
    ops = {}
    for num in OPS_BATCH_SIZES:
        batch = collated(cfg, samples, num)
        ops[num] = count_operators(lambda: preprocessor(batch, True))
    return ops


def cores_per_gpu(results: Dict, rate: int) -> Dict:
    """CPU cores one GPU needs to be fed ``rate`` img/s by each path: the
    workers at their per-core rate, plus, for the GPU path, the main
    process's share (decode calls and kernel launches)."""
    device = results['gpu_path_device']
    gpu = None  # on a CPU "device" the main process does all the work
    if device['device'].startswith('cuda'):
        gpu = rate / results['gpu_path_workers']['img_per_s_per_core'] + \
            rate * device['main_process_cpu_ms_per_image'] / 1e3
    return dict(img_per_s=rate,
                cpu_path=rate / results['project']['img_per_s_per_core'],
                gpu_path=gpu)


# each path's whole pipeline, timed beside its stages
WHOLE_PIPELINES = dict(cpu_path='project', gpu_path='gpu_path_workers')
# where each pipeline's output leaves the work (results[...]['output'])
OUTPUTS = dict(
    project='two uint8 CHW tensors; float conversion and normalisation are '
    'left to the data preprocessor on the GPU (as shipped)',
    released='two normalised float32 CHW tensors, computed on the CPU (as '
    'shipped)',
    gpu_path_workers='the JPEG bytes (or the RGB pixels of a file the GPU '
    'decoder would not take); decoding and both views are left to the data '
    'preprocessor on the GPU')


def _handovers(configs: Dict[str, Config], samples: Dict[str, list],
               settings: DataBenchmarkSettings) -> Dict:
    """:func:`handover` of each path's collate function and mmengine's."""
    baselines = dict(cpu_path='default_collate', gpu_path='pseudo_collate')
    results = {}
    for name, config in configs.items():
        batch = [
            samples[name][i % len(samples[name])]
            for i in range(settings.handover_batch)
        ]
        functions = (config.train_dataloader.collate_fn.type, baselines[name])
        results[name] = dict(
            batch_size=settings.handover_batch, **{
                fn:
                handover(FUNCTIONS.get(fn), batch, settings.handover_repeats)
                for fn in functions
            })
    return results


def per_core_benchmark(cfg: Config, gpu_cfg: Config, paths: List[str],
                       source: str, settings: DataBenchmarkSettings) -> Dict:
    """The per-core figures of the module docstring."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    training_threads = torch.get_num_threads()  # as a training process's
    single_thread()
    configs = dict(cpu_path=cfg, gpu_path=gpu_cfg)
    staged = {
        name: StagedPipeline(train_pipeline(config))
        for name, config in configs.items()
    }
    runs = dict(
        project=project_pipeline(cfg), released=released_pipeline(),
        gpu_path_workers=project_pipeline(gpu_cfg), **{
            f'{name}_stages': as_dataset_calls(pipeline)
            for name, pipeline in staged.items()
        })
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    results = dict(
        config=shown_path(cfg.filename),
        gpu_config=shown_path(gpu_cfg.filename), cpu=cpu_model(), threads=1,
        images=describe_images(paths, source), iters=settings.iters,
        warmup=settings.warmup, block=settings.block)
    results.update(
        time_pipelines(runs, paths, settings,
                       [pipeline.clock for pipeline in staged.values()]))
    instrumented = {
        name: results.pop(f'{name}_stages')['cpu_ms_per_image']
        for name in staged
    }
    for name, output in OUTPUTS.items():
        results[name]['output'] = output
    num = max(max(OPS_BATCH_SIZES), settings.handover_batch)
    samples = {
        name: load_samples(config, paths, num)
        for name, config in configs.items()
    }
    device = default_device(settings.device)
    results['cpu_path'] = dict(
        preprocessor_ops_per_batch=(
            cpu_path_preprocessor_ops(cfg, samples['cpu_path'], device)))
    results['gpu_path'] = preprocessor_ops(gpu_cfg, samples['gpu_path'],
                                           device)
    for name, entry in _handovers(configs, samples, settings).items():
        collate = configs[name].train_dataloader.collate_fn.type
        results[name]['handover'] = entry
        results[name]['worker_stages'] = stage_report(
            staged[name], settings.iters, instrumented[name],
            results[WHOLE_PIPELINES[name]]['cpu_ms_per_image'],
            entry[collate]['collate_cpu_ms'], settings.handover_batch)
    results['gpu_path_device'] = time_gpu_path_device(gpu_cfg,
                                                      samples['gpu_path'],
                                                      settings,
                                                      training_threads)
    rate = results['project']['img_per_s_per_core']
    results['project_vs_released'] = (
        rate / results['released']['img_per_s_per_core'])
    results['gpu_img_per_s'] = GPU_IMG_PER_S
    results['cores_per_gpu_for_2600_img_s'] = math.ceil(GPU_IMG_PER_S / rate)
    results['cores_per_gpu'] = cores_per_gpu(results, settings.gpu_img_per_s)
    results['versions'] = versions()
    return results


# ------------------------------------------------------------- runner mode
def webvision_root(root: str, paths: List[str], num: int) -> str:
    """A WebVision layout listing ``num`` images, all label 0: ``paths``
    cycled through, each round under another link to their folder (so
    that no two lines name the same file)."""
    os.makedirs(osp.join(root, 'info'))
    with open(osp.join(root, 'info', 'train_filelist_google.txt'), 'w') as f:
        for copy_idx in range(math.ceil(num / len(paths))):
            os.symlink(
                osp.dirname(osp.abspath(paths[0])),
                osp.join(root, f'copy{copy_idx}'))
            for path in paths[:num - copy_idx * len(paths)]:
                f.write(f'copy{copy_idx}/{osp.basename(path)} 0\n')
    return root


def _training_only(cfg: Config, loop: dict, work_dir: str, seed: int) -> None:
    """``cfg`` trimmed to the training ``loop`` (:func:`train_loop`): no
    validation, test, schedule, checkpoints or logging in between."""
    cfg.train_cfg = loop
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir)
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=seed)


def run_runner(cfg: Config, paths: List[str], workers: Optional[int],
               settings: DataBenchmarkSettings, work_dir: str) -> Dict:
    """Train ``cfg`` on ``paths`` through the Runner, in one epoch of the
    config's loop type, and time it after ``warmup`` iterations."""
    cfg = copy.deepcopy(cfg)
    loader = cfg.train_dataloader
    if workers is not None:
        loader.num_workers = workers
        loader.persistent_workers = workers > 0
    if settings.batch_size:
        loader.batch_size = settings.batch_size
    warmup = max(1, settings.warmup)
    iters = warmup + settings.runner_iters
    loop = train_loop(cfg, iters)
    root = webvision_root(
        osp.join(work_dir, 'webvision'), paths,
        loader_batches(loop, iters) * loader.batch_size)
    loader.dataset.update(data_root=root, sources=('google', ))
    _training_only(cfg, loop, work_dir, settings.seed)
    runner = MoProRunner.from_cfg(adapt_to_device(cfg))
    timer = RunnerTimer(warmup)
    runner.register_hook(timer)
    runner.train()
    start, stop = timer.start, timer.stop
    timed = settings.runner_iters * loader.batch_size
    return dict(
        config=shown_path(cfg.filename), train_loop=loop['type'],
        workers=loader.num_workers, batch_size=loader.batch_size,
        iters=settings.runner_iters, warmup_iters=warmup,
        device=str(model_device(runner)),
        img_per_s=loader.batch_size / timer.seconds_per_iter(),
        iter_time_s=float(np.mean(timer.iter_times)),
        data_time_s=float(np.mean(timer.data_times)),
        main_process_cpu_ms_per_image=1e3 * (stop.cpu - start.cpu) / timed,
        worker_cpu_ms_per_image=(None if None in (start.workers,
                                                  stop.workers) else 1e3 *
                                 (stop.workers - start.workers) / timed),
        threads=thread_report(start.threads, stop.threads,
                              stop.wall - start.wall, timed))


def runner_benchmark(cfg: Config, gpu_cfg: Config, paths: List[str],
                     source: str, settings: DataBenchmarkSettings) -> Dict:
    """Both data paths end to end through the Runner, in one run."""
    results = dict(mode='runner', cpu=cpu_model(),
                   images=describe_images(paths, source), seed=settings.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, workers in (('cpu_path', cfg, settings.workers),
                                      ('gpu_path', gpu_cfg,
                                       settings.gpu_workers)):
            init_default_scope(config.get('default_scope', 'mmpretrain'))
            results[name] = run_runner(config, paths, workers, settings,
                                       osp.join(tmp, name))
    results['gpu_vs_cpu_path'] = (
        results['gpu_path']['img_per_s'] / results['cpu_path']['img_per_s'])
    results['versions'] = versions()
    return results


def loop_benchmark(cfg: Config, paths: List[str], source: str,
                   settings: DataBenchmarkSettings) -> Dict:
    """:func:`~mopro.analysis.loop_overhead.benchmark_loop` of ``cfg`` on
    one batch of its pipeline and collate function."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    batch_size = settings.batch_size or cfg.train_dataloader.batch_size
    batch = collated(cfg, load_samples(cfg, paths, batch_size), batch_size)
    results = benchmark_loop(cfg, batch, batch_size, max(1, settings.warmup),
                             settings.loop_iters, settings.profile_iters,
                             settings.seed, settings.loop_history)
    results.update(cpu=cpu_model(), images=describe_images(paths, source),
                   versions=versions())
    return results


def check_modes(settings: DataBenchmarkSettings) -> None:
    """One mode at a time, and with ``runner`` or ``loop`` no ``device``
    the Runner will not train on (mmengine's Runner takes CUDA whenever
    torch sees it): one-line errors, before any work."""
    modes = [
        f'--{mode}' for mode in ('runner', 'loop', 'shards')
        if getattr(settings, mode)
    ]
    if len(modes) > 1:
        raise ConfigError(f'{" and ".join(modes)}: choose one mode')
    mode = '--runner' if settings.runner else '--loop' if settings.loop \
        else None
    if mode is None or settings.device is None:
        return
    wanted, runner = default_device(settings.device), default_device()
    if wanted.type != runner.type:
        hint = ('; to time the CPU on a GPU machine, hide the GPUs with '
                'CUDA_VISIBLE_DEVICES=' if wanted.type == 'cpu' else '')
        raise ConfigError(
            f'--device {settings.device}: {mode} trains where mmengine\'s '
            f'Runner does, {runner.type} here{hint}')


def benchmark_data(cfg: Config, gpu_cfg: Config,
                   settings: DataBenchmarkSettings) -> Dict:
    """The per-core figures, with ``settings.runner`` the Runner's, with
    ``settings.loop`` the Runner loop's (of ``cfg`` only), of the CPU data
    path (``cfg``) and the GPU data path (``gpu_cfg``), on the settings'
    images (by default, crops of scikit-learn's sample photos)."""
    check_modes(settings)

    def run(paths: List[str], source: str) -> Dict:
        if settings.shards:
            from .shard_benchmark import shard_benchmark  # imports this
            return shard_benchmark(cfg, paths, source, settings,
                                   settings.shard_records)
        if settings.loop:
            return loop_benchmark(cfg, paths, source, settings)
        mode = runner_benchmark if settings.runner else per_core_benchmark
        return mode(cfg, gpu_cfg, paths, source, settings)

    if settings.images:
        paths = list_jpegs(settings.images, settings.num_images)
        return run(paths, osp.abspath(settings.images))
    with tempfile.TemporaryDirectory() as directory:
        return run(
            make_photos(directory, settings.num_images, settings.seed),
            SAMPLE_PHOTOS)
