#!/usr/bin/env python
"""Time the two-view training pipeline per CPU core, against the original.

    python tools/analysis_tools/benchmark_data.py configs/mopro_r50_webvision_v1.py \\
        --iters 6000 --out benchmarks/data_loading_cpu.json
    python tools/analysis_tools/benchmark_data.py configs/mopro_r50_webvision_v1.py \\
        --runner --num-images 8192 --runner-iters 60 --batch-size 256 \\
        --workers 15 --gpu-workers 4 --out benchmarks/data_loading_h200.json

In one process and one thread (so the figures are per CPU core), over the
same JPEG files, cycled through, taking turns in blocks of images, it
times:
- ``project``: the config's ``train_dataloader.dataset.pipeline`` as the
  dataset runs it (``LoadWebImage``, the weak/strong ``MultiView``,
  ``PackInputs``), fed the dicts ``get_data_info`` returns;
- ``released``: the released MoPro code's torchvision transforms on PIL
  images, both views of each image;
- ``gpu_path_workers``: the worker side of the GPU data path, the training
  pipeline of ``--gpu-config`` (read the file; decode on the CPU only what
  the GPU decoder would not take);
and then ``gpu_path_device``: that config's data preprocessor (decoding
and both views per batch, in one thread) on ``--device``, in img/s and the
main process's CPU time per image. Per batch, at ``--handover-batch``
images, it also reports what crosses from the workers to the training
process for each path, with the config's collate function against
mmengine's (``pseudo_collate``/``default_collate``, one tensor per image or
DataSample): ``tensors`` and ``tensor_bytes`` (shared memory),
``pickle_bytes`` (the rest), and the CPU ms of the collate function and of
the transfer (``ForkingPickler`` as a dataloader worker sends the batch,
and the unpickling as the training process receives it; pinning where
CUDA is available); and ``gpu_path.preprocessor_ops_per_batch``, the
operators (``TorchDispatchMode``) the GPU path's preprocessor dispatches on
the training thread for a batch decoded ahead, at 32 and 256 images
(``decode_ops_per_batch``: the decoding, in the background thread).
A two-view sample counts as one image. By default the images are real
photos at WebVision's size: random crops of the two JPEG photos
scikit-learn ships, resized to a 256-pixel short side and saved as JPEG
(quality 90) in a temporary folder; ``--images DIR`` uses the JPEGs in a
folder instead (e.g. WebVision's own files). It prints images/s per core,
the ratio of the two, and the CPU cores one GPU needs at 2600 images/s as
JSON (``--out`` also writes it), and the cores per GPU each path needs at
``--gpu-img-per-s``.

``--runner``: instead, train through mmengine's Runner on those images
(the config's model and schedule, ``--runner-iters`` timed iterations after
``--warmup`` ones), once with the CPU path (``config``) and once with the
GPU path (``--gpu-config``), and report for each img/s, mean ``data_time``
and iteration time, workers, and the CPU time per image of the main process
and of the dataloader workers. Speed is reported, never asserted in tests.
"""
import argparse
import copy
import glob
import io
import json
import math
import os
import os.path as osp
import pickle
import platform
import tempfile
import time
from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler
from typing import Callable, Dict, List, Optional

import mopro  # noqa: F401  (first: mopro.utils.mmpretrain_compat)
import numpy as np
import PIL
import torch
import torch.multiprocessing  # noqa: F401 (the workers' tensor reductions)
import torchvision
from mmengine.config import DictAction
from mmengine.dataset import Compose
from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS, init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data._utils.pin_memory import pin_memory
from torchvision import transforms as T

from mopro.models.utils.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.models.utils.jpeg_decoding import decode_packed
from mopro.utils import write_json
from mopro.utils.cli import ConfigError, DataError, run_tool
from mopro.utils.runner import adapt_to_device, load_config

GPU_IMG_PER_S = 2600  # the training step's goal on one H100 (ResNet-50)
# the compiled step's pace on one H200 (README, Speed): what the data path
# must feed
TARGET_IMG_PER_S = 4700
GPU_CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'mopro_r50_webvision_v1_gpu_data.py')
SHORT_SIDE = 256  # WebVision's resized images
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
JPEG_SUFFIXES = ('.jpg', '.jpeg')
OPS_BATCH_SIZES = (32, 256)  # preprocessor_ops_per_batch


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text}: must be at least 1')
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--images', help='a folder of JPEGs to use instead '
                        'of crops of scikit-learn\'s sample photos')
    parser.add_argument('--num-images', type=_positive, default=64,
                        help='images to make (with --images: the most to '
                        'use, in name order)')
    parser.add_argument('--iters', type=_positive, default=200,
                        help='timed images per pipeline')
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--block', type=_positive, default=100,
                        help='images per turn (the pipelines alternate)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        action=DictAction)
    parser.add_argument('--gpu-config', default=GPU_CONFIG,
                        help='the config of the GPU data path')
    parser.add_argument('--gpu-cfg-options', nargs='+', default=None,
                        action=DictAction)
    parser.add_argument('--device', default=None,
                        help='device of the GPU path (default: cuda if '
                        'available, else cpu)')
    parser.add_argument('--batch-size', type=_positive, default=None,
                        help='images per batch (default: the config\'s; '
                        'without --runner: 256)')
    parser.add_argument('--gpu-img-per-s', type=_positive,
                        default=TARGET_IMG_PER_S,
                        help='the step rate the cores per GPU are for')
    parser.add_argument('--runner', action='store_true',
                        help='time both paths end to end through the Runner')
    parser.add_argument('--runner-iters', type=_positive, default=20,
                        help='timed Runner iterations per path')
    parser.add_argument('--workers', type=int, default=None,
                        help='dataloader workers of the CPU path (default: '
                        'the config\'s)')
    parser.add_argument('--gpu-workers', type=int, default=None,
                        help='dataloader workers of the GPU path (default: '
                        'the config\'s)')
    parser.add_argument('--handover-batch', type=_positive, default=256,
                        help='images per batch of the worker hand-over '
                        'measurement')
    parser.add_argument('--handover-repeats', type=_positive, default=5,
                        help='timed batches of the hand-over measurement')
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


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
        crop = crop.resize((round(w * scale), round(h * scale)),
                           Image.BICUBIC)
        paths.append(osp.join(directory, f'{i:04d}.jpg'))
        crop.save(paths[-1], quality=90)
    return paths


def list_jpegs(directory: str, num: int) -> List[str]:
    """The first ``num`` JPEGs in ``directory`` (by name)."""
    if not osp.isdir(directory):
        raise DataError(f'{directory}: image folder not found')
    paths = sorted(p for p in glob.glob(osp.join(directory, '*'))
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
    return dict(source=source, count=len(paths),
                mean_height=float(np.mean(heights)),
                mean_width=float(np.mean(widths)),
                mean_file_kb=float(np.mean([osp.getsize(p)
                                            for p in paths])) / 1024)


def project_pipeline(cfg) -> Callable[[int, str], object]:
    """The config's training pipeline, called as the dataset calls it."""
    pipeline = Compose([
        TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline
    ])

    def run(idx: int, path: str) -> dict:
        # ImageListDataset.get_data_info's dict
        return pipeline(dict(img_path=path, gt_label=0, sample_idx=idx))

    return run


def released_pipeline() -> Callable[[int, str], object]:
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


def time_pipelines(runs: Dict[str, Callable[[int, str], object]],
                   paths: List[str], args: argparse.Namespace) -> Dict:
    """Images per second (one thread) and ms per image of each pipeline,
    cycling over ``paths`` after ``args.warmup`` images each.

    The pipelines take turns in blocks of ``args.block`` images, in
    alternating order (ABBA...), so that a drift in the machine's speed
    weighs on both alike.
    """
    for run in runs.values():
        for i in range(args.warmup):
            run(i, paths[i % len(paths)])
    seconds = dict.fromkeys(runs, 0.0)
    order = list(runs)
    for first in range(args.warmup, args.warmup + args.iters, args.block):
        last = min(first + args.block, args.warmup + args.iters)
        for name in order:
            start = time.perf_counter()
            for i in range(first, last):
                runs[name](i, paths[i % len(paths)])
            seconds[name] += time.perf_counter() - start
        order.reverse()
    return {
        name: dict(img_per_s_per_core=args.iters / sec,
                   ms_per_image=1e3 * sec / args.iters)
        for name, sec in seconds.items()
    }


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def versions() -> Dict:
    return dict(python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__,
                pillow=PIL.__version__, numpy=np.__version__)


def single_thread() -> None:
    """One CPU core: no intra-op threads in torch or OpenCV."""
    torch.set_num_threads(1)
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


def gpu_config(args: argparse.Namespace):
    """The GPU data path's config (``--gpu-config``, ``--gpu-cfg-options``)."""
    gpu_args = copy.copy(args)
    gpu_args.config, gpu_args.cfg_options = args.gpu_config, \
        args.gpu_cfg_options
    return load_config(gpu_args)


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_gpu_path_device(cfg, paths: List[str],
                         args: argparse.Namespace) -> Dict:
    """The GPU path's data preprocessor on ``args.device``: batches of
    ``args.batch_size`` worker outputs (bytes, or CPU-decoded pixels),
    decoded and made into both views per batch. Reports img/s on the device
    and the main process's CPU time per image (decode calls, kernel
    launches, fallbacks)."""
    device = torch.device(args.device)
    preprocessor = MODELS.build(cfg.model.data_preprocessor).to(device)
    batch_size = args.batch_size or 256
    batch = collate_fn(cfg)(load_samples(cfg, paths, batch_size))
    batches = max(1, math.ceil(args.iters / batch_size))
    for _ in range(max(1, args.warmup // batch_size + 1)):
        preprocessor(batch, True)
    _synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        preprocessor(batch, True)
    _synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = batches * batch_size
    return dict(device=str(device), device_name=device_name(device),
                batch_size=batch_size, batches=batches,
                img_per_s=images / wall,
                main_process_cpu_ms_per_image=1e3 * cpu / images)


def collate_fn(cfg) -> Callable[[list], dict]:
    """The config's ``train_dataloader.collate_fn``."""
    return FUNCTIONS.get(cfg.train_dataloader.collate_fn.type)


def load_samples(cfg, paths: List[str], num: int) -> list:
    """``num`` samples of the config's training pipeline, cycling over
    ``paths``."""
    load = project_pipeline(cfg)
    return [load(i, paths[i % len(paths)]) for i in range(num)]


def count_operators(fn: Callable[[], object]) -> int:
    """How many operators ``fn()`` dispatches in this thread (ATen calls
    below autograd, as a ``TorchDispatchMode`` sees them)."""
    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


class _TensorCount(pickle.Pickler):
    """Pickles a batch as a dataloader worker sends it, counting its
    tensors' storages (which cross as shared memory) apart from the rest
    (which crosses as pickle bytes)."""

    def __init__(self, file) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
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
    of ``repeats`` batches after one untimed."""
    stream = io.BytesIO()
    counter = _TensorCount(stream)
    counter.dump(collate(samples))
    collate_s = transfer_s = pin_s = 0.0
    for repeat in range(repeats + 1):
        start = time.process_time()
        batch = collate(samples)
        collated = time.process_time()
        received = pickle.loads(ForkingPickler.dumps(batch))
        transferred = time.process_time()
        if torch.cuda.is_available():
            pin_memory(received)
        if repeat:  # the first one warms up
            collate_s += collated - start
            transfer_s += transferred - collated
            pin_s += time.process_time() - transferred
    return dict(tensors=len(counter.storages),
                tensor_bytes=sum(counter.storages.values()),
                pickle_bytes=len(stream.getvalue()),
                collate_cpu_ms=1e3 * collate_s / repeats,
                transfer_cpu_ms=1e3 * transfer_s / repeats,
                pin_cpu_ms=(1e3 * pin_s / repeats
                            if torch.cuda.is_available() else None))


def preprocessor_ops(cfg, paths: List[str], device: torch.device) -> Dict:
    """Operators the GPU path's preprocessor dispatches per batch on the
    training thread, the batch decoded ahead (as ``DecodeAheadHook`` has
    it), and those of the decoding (the background thread's), at each of
    ``OPS_BATCH_SIZES`` images. The views eager (``compile_views`` fuses
    their colour operators into a few kernels, the same for any batch)."""
    ops, decode_ops = {}, {}
    for num in OPS_BATCH_SIZES:
        preprocessor = MODELS.build(
            dict(cfg.model.data_preprocessor, compile_views=False)).to(device)
        batch = collate_fn(cfg)(load_samples(cfg, paths, num))
        done = Future()
        decode_ops[num] = count_operators(lambda: done.set_result(
            decode_packed(batch['inputs'], device)))
        slot = batch[SLOT_KEY] = DecodeSlot()
        slot.future = done
        ops[num] = count_operators(lambda: preprocessor(batch, True))
    return dict(preprocessor_ops_per_batch=ops,
                decode_ops_per_batch=decode_ops,
                ops_note='aten operators (TorchDispatchMode) per batch; '
                'the preprocessor on the training thread with the batch '
                'decoded ahead, views eager; the decoding in the background '
                'thread (slicing the packed bytes: one view per image)')


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return cpu_model()


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


def benchmark(args: argparse.Namespace, paths: List[str],
              source: str) -> Dict:
    cfg = load_config(args)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    single_thread()
    gpu_cfg = gpu_config(args)
    runs = dict(project=project_pipeline(cfg), released=released_pipeline(),
                gpu_path_workers=project_pipeline(gpu_cfg))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    results = dict(config=args.config, gpu_config=args.gpu_config,
                   cpu=cpu_model(), threads=1,
                   images=describe_images(paths, source), iters=args.iters,
                   warmup=args.warmup, block=args.block)
    results.update(time_pipelines(runs, paths, args))
    results['project']['output'] = (
        'two uint8 CHW tensors; float conversion and normalisation are left '
        'to the data preprocessor on the GPU (as shipped)')
    results['released']['output'] = (
        'two normalised float32 CHW tensors, computed on the CPU (as '
        'shipped)')
    results['gpu_path_workers']['output'] = (
        'the JPEG bytes (or the RGB pixels of a file the GPU decoder would '
        'not take); decoding and both views are left to the data '
        'preprocessor on the GPU')
    results['gpu_path_device'] = time_gpu_path_device(gpu_cfg, paths, args)
    results['gpu_path'] = preprocessor_ops(gpu_cfg, paths,
                                           torch.device(args.device))
    for name, config, baseline in (('cpu_path', cfg, 'default_collate'),
                                   ('gpu_path', gpu_cfg, 'pseudo_collate')):
        samples = load_samples(config, paths, args.handover_batch)
        results.setdefault(name, {})['handover'] = dict(
            batch_size=args.handover_batch,
            **{fn: handover(FUNCTIONS.get(fn), samples,
                            args.handover_repeats)
               for fn in (config.train_dataloader.collate_fn.type,
                          baseline)})
    rate = results['project']['img_per_s_per_core']
    results['project_vs_released'] = (
        rate / results['released']['img_per_s_per_core'])
    results['gpu_img_per_s'] = GPU_IMG_PER_S
    results['cores_per_gpu_for_2600_img_s'] = math.ceil(GPU_IMG_PER_S / rate)
    results['cores_per_gpu'] = cores_per_gpu(results, args.gpu_img_per_s)
    results['versions'] = versions()
    return results


# ------------------------------------------------------------- --runner
class _RunTimer(Hook):
    """Wall time, ``data_time`` and CPU time (main process, dataloader
    workers) over the iterations after the first ``warmup``."""

    priority = 'LOW'  # after IterTimerHook has logged the iteration

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.data_times: List[float] = []
        self.iter_times: List[float] = []
        self.start = self.stop = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter + 1 < self.warmup:
            return
        hub = runner.message_hub
        if runner.iter + 1 == self.warmup:
            _synchronize(_model_device(runner))
            self.start = self._clocks(runner)
            return
        self.data_times.append(hub.get_scalar('train/data_time').current())
        self.iter_times.append(hub.get_scalar('train/time').current())
        if runner.iter + 1 == runner.max_iters:
            _synchronize(_model_device(runner))
            self.stop = self._clocks(runner)

    @staticmethod
    def _clocks(runner) -> tuple:
        return (time.perf_counter(), time.process_time(),
                _worker_cpu_seconds(runner))


def _model_device(runner) -> torch.device:
    return next(runner.model.parameters()).device


def _worker_cpu_seconds(runner) -> Optional[float]:
    """CPU seconds the live dataloader workers have used (Linux /proc;
    None elsewhere or without workers)."""
    iterator = getattr(runner.train_loop, 'dataloader_iterator', None)
    workers = getattr(getattr(iterator, '_iterator', None), '_workers', [])
    if not workers:
        return None
    total = 0.0
    for worker in workers:
        try:
            with open(f'/proc/{worker.pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf(
            'SC_CLK_TCK')
    return total


def webvision_root(root: str, paths: List[str], copies: int) -> str:
    """A WebVision layout listing ``paths`` ``copies`` times (under as many
    links to their folder), all label 0: one epoch must hold the whole
    timed run, since mmengine's iteration loop sleeps 2 s at each epoch
    end."""
    os.makedirs(osp.join(root, 'info'))
    with open(osp.join(root, 'info', 'train_filelist_google.txt'), 'w') as f:
        for copy_idx in range(copies):
            os.symlink(osp.dirname(osp.abspath(paths[0])),
                       osp.join(root, f'copy{copy_idx}'))
            for path in paths:
                f.write(f'copy{copy_idx}/{osp.basename(path)} 0\n')
    return root


def run_runner(cfg, paths: List[str], workers: Optional[int],
               args: argparse.Namespace, work_dir: str) -> Dict:
    """Train ``cfg`` on ``paths`` through the Runner."""
    loader = cfg.train_dataloader
    if workers is not None:
        loader.num_workers = workers
        loader.persistent_workers = workers > 0
    if args.batch_size:
        loader.batch_size = args.batch_size
    warmup = max(1, args.warmup)
    copies = math.ceil(
        (warmup + args.runner_iters + 1) * loader.batch_size / len(paths))
    root = webvision_root(osp.join(work_dir, 'webvision'), paths, copies)
    loader.dataset.update(data_root=root, sources=('google', ))
    cfg.train_cfg = dict(type='IterBasedTrainLoop',
                         max_iters=warmup + args.runner_iters,
                         val_interval=10**9)
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
    cfg.randomness = dict(seed=args.seed)
    runner = Runner.from_cfg(adapt_to_device(cfg))
    timer = _RunTimer(warmup)
    runner.register_hook(timer)
    runner.train()
    (wall0, cpu0, work0), (wall1, cpu1, work1) = timer.start, timer.stop
    timed = args.runner_iters * loader.batch_size
    return dict(
        config=cfg.filename, workers=loader.num_workers,
        batch_size=loader.batch_size, iters=args.runner_iters,
        warmup_iters=warmup, device=str(_model_device(runner)),
        img_per_s=timed / (wall1 - wall0),
        iter_time_s=float(np.mean(timer.iter_times)),
        data_time_s=float(np.mean(timer.data_times)),
        main_process_cpu_ms_per_image=1e3 * (cpu1 - cpu0) / timed,
        worker_cpu_ms_per_image=(None if work0 is None or work1 is None
                                 else 1e3 * (work1 - work0) / timed))


def runner_benchmark(args: argparse.Namespace, paths: List[str],
                     source: str) -> Dict:
    """Both data paths end to end through the Runner, in one run."""
    results = dict(mode='runner', cpu=cpu_model(),
                   images=describe_images(paths, source), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg, workers in (
                ('cpu_path', load_config(args), args.workers),
                ('gpu_path', gpu_config(args), args.gpu_workers)):
            init_default_scope(cfg.get('default_scope', 'mmpretrain'))
            results[name] = run_runner(cfg, paths, workers, args,
                                       osp.join(tmp, name))
    results['gpu_vs_cpu_path'] = (results['gpu_path']['img_per_s'] /
                                  results['cpu_path']['img_per_s'])
    results['versions'] = versions()
    return results


def main(argv=None) -> Optional[Dict]:
    args = parse_args(argv)
    for config in (args.config, args.gpu_config):
        if not osp.isfile(config):
            raise ConfigError(f'{config}: config file not found')
    run = runner_benchmark if args.runner else benchmark
    if args.images:
        paths = list_jpegs(args.images, args.num_images)
        results = run(args, paths, osp.abspath(args.images))
    else:
        with tempfile.TemporaryDirectory() as directory:
            paths = make_photos(directory, args.num_images, args.seed)
            results = run(
                args, paths, 'crops of scikit-learn sample photos '
                '(china.jpg, flower.jpg), 256 px short side, JPEG q90')
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == '__main__':
    run_tool(main)
