"""Clocks, counters and the Runner timing hook of the speed benchmarks, and
the training loop of a timed Runner run (:func:`train_loop`).

Wall times wait for the device's queued work (:func:`now`); a timed
section is ``warmup`` calls, then ``iters`` steady calls
(:func:`measure`). Speed is reported by the benchmark tools, never
asserted in tests.
"""
import json
import os
import platform
import time
import warnings
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional

import numpy as np
import PIL
import torch
import torchvision
from mmengine.config import Config
from mmengine.hooks import Hook
from torch._dynamo.utils import counters
from torch.utils._python_dispatch import TorchDispatchMode

from ..utils.errors import ConfigError
from ..utils.fileio import write_json
from ..utils.outputs import check_output_file
from .thread_usage import ThreadSample, proc_cpu_seconds, sample_threads

LOOP_TYPES = ('EpochBasedTrainLoop', 'IterBasedTrainLoop')


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """Wall time, once the device's queued work is done."""
    synchronize(device)
    return time.perf_counter()


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return counters['stats']['unique_graphs']


def timing_entry(batch: int, sec: float, first_iters_s: float, warmup: int,
                 graphs: int, device: torch.device) -> Dict:
    """One timing: img/s, ms per call, peak device memory (MiB; None on
    CPU), the first calls' seconds and their overhead over as many steady
    calls (compile and autotuning time), new graphs."""
    peak = (
        torch.cuda.max_memory_allocated(device) /
        2**20 if device.type == 'cuda' else None)
    return dict(img_per_s=batch / sec, ms_per_iter=1e3 * sec,
                peak_memory_mb=peak, first_iters_s=first_iters_s,
                overhead_s=first_iters_s - warmup * sec, new_graphs=graphs)


def measure(step: Callable[[], object], batch: int, iters: int, warmup: int,
            device: torch.device) -> Dict:
    """Time ``step``: ``warmup`` calls, then ``iters`` steady calls
    (:func:`timing_entry`)."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    graphs = compiled_graphs()
    start = now(device)
    for _ in range(warmup):
        step()
    steady = now(device)
    for _ in range(iters):
        step()
    sec = (now(device) - steady) / iters
    return timing_entry(batch, sec, steady - start, warmup,
                        compiled_graphs() - graphs, device)


def count_host_syncs(step: Callable[[], object],
                     device: torch.device) -> Optional[int]:
    """How many synchronizing CUDA calls one ``step`` makes (torch's sync
    debug mode); None off CUDA."""
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            step()
    finally:
        torch.cuda.set_sync_debug_mode('default')
    return sum('synchroniz' in str(w.message) for w in caught)


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


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else the platform's
    processor string."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model for a CPU device."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return cpu_model()


def versions() -> Dict:
    """The library versions a figure depends on."""
    return dict(python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, pillow=PIL.__version__,
                numpy=np.__version__)


def check_publish(out: Optional[str], inputs: Iterable = ()) -> None:
    """Before a benchmark runs: ``out`` (``--out``), if given, can be
    written and is none of ``inputs`` (the configs), so that a folder, a
    path below a file or a read-only place is one line now rather than
    after minutes of timing (:func:`mopro.utils.outputs.check_output_file`).
    """
    if out:
        check_output_file(out, inputs=inputs, what='--out file')


def publish(results: Dict, out: Optional[str] = None) -> Dict:
    """Print ``results`` as JSON and, with ``out``, also write them there
    (atomically)."""
    print(json.dumps(results, indent=2))
    if out:
        write_json(out, results)
    return results


def worker_cpu_seconds(runner) -> Optional[float]:
    """CPU seconds the train loop's live dataloader workers have used
    (Linux /proc; None elsewhere or without workers)."""
    iterator = getattr(runner.train_loop, 'dataloader_iterator', None)
    if iterator is None:  # EpochBasedTrainLoop: its loader's iterator
        iterator = getattr(runner.train_loop.dataloader, '_iterator', None)
    workers = getattr(getattr(iterator, '_iterator', iterator), '_workers', [])
    if not workers:
        return None
    total = 0.0
    for worker in workers:
        try:
            total += proc_cpu_seconds(f'/proc/{worker.pid}/stat')[1]
        except OSError:
            return None
    return total


def model_device(runner) -> torch.device:
    """The device of the runner's model."""
    return next(runner.model.parameters()).device


class Clocks(NamedTuple):
    """A timed window's edge: wall seconds, the process's CPU seconds, its
    dataloader workers' CPU seconds (None without workers) and its
    threads' (:func:`~mopro.analysis.thread_usage.sample_threads`)."""
    wall: float
    cpu: float
    workers: Optional[float]
    threads: ThreadSample


class RunnerTimer(Hook):
    """Times a Runner's training after its first ``warmup`` iterations.

    ``first``, ``start`` and ``stop`` hold the :data:`Clocks` at the start
    of the first iteration, after the ``warmup``-th and after the last one
    (the device's queued work done); ``iter_times`` and ``data_times`` the
    timed iterations' ``time`` and ``data_time`` as mmengine's
    ``IterTimerHook`` logs them.
    """

    priority = 'LOW'  # after IterTimerHook has logged the iteration

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.timed = 0
        self.iter_times: List[float] = []
        self.data_times: List[float] = []
        self.first = self.start = self.stop = None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if runner.iter == 0:
            self.first = self._clocks(runner)
            if self.warmup == 0:
                self.start = self.first

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        done = runner.iter + 1
        if done == self.warmup:
            self.start = self._clocks(runner)
        elif done > self.warmup:
            self.timed += 1
            hub = runner.message_hub
            if 'train/time' in hub.log_scalars:
                self.iter_times.append(hub.get_scalar('train/time').current())
                self.data_times.append(
                    hub.get_scalar('train/data_time').current())
        if done == runner.max_iters:
            self.stop = self._clocks(runner)

    def seconds_per_iter(self) -> float:
        """Mean wall seconds of a timed iteration."""
        return (self.stop[0] - self.start[0]) / self.timed

    @staticmethod
    def _clocks(runner) -> Clocks:
        synchronize(model_device(runner))
        return Clocks(time.perf_counter(), time.process_time(),
                      worker_cpu_seconds(runner), sample_threads())


def train_loop(cfg: Config, iters: int) -> dict:
    """A ``train_cfg`` of the config's loop type that trains ``iters``
    iterations, in one epoch, without validation.

    Raises:
        ConfigError: a loop type other than mmengine's two.
    """
    train_cfg = cfg.get('train_cfg') or {}
    kind = train_cfg.get(
        'type', 'EpochBasedTrainLoop'
        if train_cfg.get('by_epoch') else 'IterBasedTrainLoop')
    if kind not in LOOP_TYPES:
        raise ConfigError(f'train_cfg.type={kind}: the benchmark runs '
                          f'{" or ".join(LOOP_TYPES)}')
    if kind == 'EpochBasedTrainLoop':  # the data loader holds ``iters``
        return dict(type=kind, max_epochs=1, val_interval=10**9)
    return dict(type=kind, max_iters=iters, val_interval=10**9)


def loader_batches(loop: dict, iters: int) -> int:
    """Batches the data loader holds for ``iters`` iterations of ``loop``
    (:func:`train_loop`): one more for mmengine's iteration loop, whose
    iterator, asked past the end (by ``DecodeAheadHook``'s look-ahead),
    sleeps 2 s before it starts the next epoch."""
    return iters + (loop['type'] == 'IterBasedTrainLoop')


def unique_name(name: str, taken: set) -> str:
    """``name``, or ``name#2``, ``name#3``... if taken; added to
    ``taken``."""
    unique, count = name, 1
    while unique in taken:
        count += 1
        unique = f'{name}#{count}'
    taken.add(unique)
    return unique


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it
    (``configs/...`` from the repository root), else as it is: the JSON
    names no machine's folders."""
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative
