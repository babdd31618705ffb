"""Time the GPU data path's two views per batch, by each resampling.

What the training thread does per batch once the batch is decoded (as
``DecodeAheadHook`` hands it over): ``MoProGPUViewsPreprocessor``'s
forward, i.e. sampling the parameters, the crops and resize
(``resample``: ``'triton'``, the per-image kernel of
:mod:`mopro.gpu_data.resize_kernel`, or ``'matmul'``, the batched matrix
products over the crops padded to the largest box), grayscale, jitter,
flip, normalisation and the conversion to the step's dtype and layout,
with the config's settings (``compile_views``, ``channels_last``, crop
size) and under the config's autocast (``AmpOptimWrapper``'s dtype on
CUDA).

For each batch size and resampling: ``ms_per_batch`` (wall-clock over
``iters`` batches, the device synchronised before and after: the device's
time where it is the slower side), ``img_per_s``, and
``host_cpu_ms_per_batch`` (the training thread's CPU). ``triton_vs_matmul``
is the kernel's speed-up per batch size. The kernel runs on CUDA only: off
CUDA its entries say why they were not timed.

The images are WebVision-size photos
(:func:`mopro.analysis.data_benchmark.make_photos`), each batch decoded
once on the device.
"""
import tempfile
import time
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

from ..gpu_data.decode_ahead import SLOT_KEY, DecodeSlot
from ..gpu_data.decoding import DecodedBatch
from ..gpu_data.preprocessor import triton_resize
from ..utils.device import default_device
from ..utils.errors import ConfigError
from .data_benchmark import (SAMPLE_PHOTOS, collate_fn, load_samples,
                             make_photos)
from .timing import device_name, shown_path, synchronize, versions

RESAMPLERS = ('triton', 'matmul')


@dataclass
class ViewsBenchmarkSettings:
    """What :func:`benchmark_views` times (the tool's flags)."""
    batch_sizes: Sequence[int] = (32, 256)
    iters: int = 20  # timed batches per batch size and resampling
    warmup: int = 3  # untimed batches first (torch.compile builds there)
    num_images: int = 64  # distinct photos, cycled to fill a batch
    seed: int = 0
    device: Optional[str] = None  # default: cuda if any


def step_autocast(cfg: Config, device: torch.device):
    """The autocast the training step runs the preprocessor in: the
    config's ``AmpOptimWrapper`` dtype on CUDA, else none."""
    optim = cfg.get('optim_wrapper') or {}
    if device.type != 'cuda' or optim.get('type') != 'AmpOptimWrapper':
        return nullcontext(), 'float32'
    dtype = optim.get('dtype', 'float16')
    return torch.autocast('cuda', dtype=getattr(torch, dtype)), dtype


def decoded_ahead(batch: dict, decoded: DecodedBatch) -> dict:
    """``batch`` with its decoding done, as DecodeAheadHook leaves it."""
    batch = dict(batch)
    slot = batch[SLOT_KEY] = DecodeSlot()
    slot.future = Future()
    slot.future.set_result(decoded)
    return batch


def time_views(cfg: Config, paths: List[str], device: torch.device,
               batch_size: int, resample: str,
               settings: ViewsBenchmarkSettings) -> Dict:
    """One entry of the module docstring. torch.compile starts afresh
    (``torch._dynamo.reset``): its recompile limit counts the graphs of a
    function, and each batch size and view kind is a graph of its own."""
    torch._dynamo.reset()
    preprocessor = MODELS.build(
        dict(cfg.model.data_preprocessor, resample=resample)).to(device)
    batch = collate_fn(cfg)(load_samples(cfg, paths, batch_size))
    decoded = preprocessor.decode(batch['inputs'])
    autocast, dtype = step_autocast(cfg, device)
    with autocast:
        for _ in range(settings.warmup):
            preprocessor(decoded_ahead(batch, decoded), True)
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(settings.iters):
            preprocessor(decoded_ahead(batch, decoded), True)
        synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(ms_per_batch=1e3 * wall / settings.iters,
                img_per_s=batch_size * settings.iters / wall,
                host_cpu_ms_per_batch=1e3 * cpu / settings.iters,
                step_dtype=dtype)


def benchmark_views(cfg: Config, settings: ViewsBenchmarkSettings) -> Dict:
    """Every figure of the module docstring, for the GPU-data config
    ``cfg``."""
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if preprocessor.get('type') != 'MoProGPUViewsPreprocessor':
        raise ConfigError(
            f'{shown_path(cfg.filename)}: model.data_preprocessor is '
            f'{preprocessor.get("type")!r}, not MoProGPUViewsPreprocessor '
            '(a config of the GPU data path)')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = default_device(settings.device)
    torch.manual_seed(settings.seed)
    results = dict(
        config=shown_path(cfg.filename), device=str(device),
        device_name=device_name(device), images=SAMPLE_PHOTOS,
        iters=settings.iters, warmup=settings.warmup, versions=versions(),
        views={})
    with tempfile.TemporaryDirectory() as directory:
        paths = make_photos(directory, settings.num_images, settings.seed)
        for resample in RESAMPLERS:
            entry = results['views'][resample] = {}
            if resample == 'triton' and triton_resize(device) is None:
                entry['not_timed'] = ('the Triton kernel runs on CUDA '
                                      f'(with Triton), not on {device.type}')
                continue
            for size in settings.batch_sizes:
                entry[size] = time_views(cfg, paths, device, size, resample,
                                         settings)
    timed = results['views']
    if 'not_timed' not in timed['triton']:
        results['triton_vs_matmul'] = {
            size:
            timed['matmul'][size]['ms_per_batch'] /
            timed['triton'][size]['ms_per_batch']
            for size in settings.batch_sizes
        }
    return results
