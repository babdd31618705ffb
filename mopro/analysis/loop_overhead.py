"""Host time of mmengine's Runner loop per iteration, and of each hook.

:func:`benchmark_loop` trains :class:`TrivialModel` (one parameter, so the
step costs almost nothing) through the Runner ``tools/train.py`` builds
(:class:`~mopro.engine.MoProRunner`) with the config's train loop type,
``default_hooks``, ``custom_hooks``, optimizer wrapper, parameter
schedulers, log processor and visualizer, on one batch made by
the config's pipeline and collate function and handed over again every
iteration (no worker, no decoding in the loader). After ``warmup``
iterations (and, with ``history``, every logged scalar's history filled
with that many values, as that many iterations into a run) it times
``iters`` iterations: the loop in all (from the end of
one iteration's ``after_train_iter`` hooks to the end of the next's), each
hook's stages, the data preprocessor, and the rest of the model's
``train_step`` (the step). Then ``profile_iters`` more iterations run under
cProfile, for the functions with the most own time.
"""
import copy
import cProfile
import os.path as osp
import pstats
import tempfile
import time
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from torch.utils.data import DataLoader

from ..engine import MoProRunner
from ..engine.launch import adapt_to_device
from ..models.nonfinite import NonFiniteGuard
from .thread_usage import ThreadSample, sample_threads, thread_report
from .timing import (loader_batches, model_device, shown_path, synchronize,
                     train_loop, unique_name)

# the scalars MoPro's training step logs with both phases on (MoProHead's
# losses and accuracies, the noise correction's rates): the runtime-info
# and logger hooks handle as many values per iteration
LOGGED = ('loss_cls', 'loss_ins', 'loss_pro', 'acc_cls', 'acc_ins', 'acc_pro',
          'frac_ood', 'frac_relabelled')
ITERATION_STAGES = ('before_train_iter', 'after_train_iter')
PROFILE_TOP = 20  # functions listed in the profile


class TrivialModel(BaseModel):
    """One parameter and a loss of it alone (:data:`LOGGED` values, as
    MoPro logs), with a given data preprocessor and what the project's
    hooks read from a MoPro model: the phase flags ``use_proto_loss`` and
    ``correct_noise`` (``MoProHook``) and ``finite_guard``
    (``NonFiniteCheckHook``)."""

    def __init__(self, data_preprocessor: nn.Module,
                 nonfinite: str = 'raise') -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.weight = nn.Parameter(torch.ones(1))
        self.use_proto_loss = self.correct_noise = False
        self.finite_guard = NonFiniteGuard(nonfinite, name='TrivialModel')

    def forward(self, inputs, data_samples=None,
                mode: str = 'tensor') -> Dict[str, torch.Tensor]:
        loss = self.weight.square().sum()
        return {
            key: loss if key.startswith('loss') else loss.detach()
            for key in LOGGED
        }


def _shallow_copy(items: List[dict]) -> dict:
    """The one batch of a data loader over collated batches (``batch_size``
    1), as a dict of its own (``DecodeAheadHook`` attaches to it)."""
    return dict(items[0])


class LoopTimer:
    """Clocks put into a built Runner (:meth:`install`): around each hook
    stage, the data preprocessor and ``train_step``, and at the end of
    each iteration's ``after_train_iter`` hooks, where the timed window and
    then the profiled one open and close."""

    def __init__(self, warmup: int, iters: int, profile_iters: int,
                 history: int = 0) -> None:
        self.warmup, self.iters = warmup, iters
        self.history = history
        self.profile_iters = profile_iters
        self.done = 0  # iterations
        self.timing = False  # in the timed window
        self.edges: List[float] = []  # the window's start and stop
        self.thread_samples: List[ThreadSample] = []  # likewise
        self.profiler = cProfile.Profile()
        # hook -> stage -> seconds in the window / outside the iterations
        self.in_window: Dict[str, Dict[str, float]] = {}
        self.outside: Dict[str, Dict[str, float]] = {}
        self.seconds = dict(preprocessor=0.0, train_step=0.0)

    def install(self, runner: Runner) -> None:
        taken = set()
        for hook in runner.hooks:
            name = unique_name(type(hook).__name__, taken)
            self.in_window[name], self.outside[name] = {}, {}
            for stage in sorted(hook.get_triggered_stages()):
                setattr(hook, stage,
                        self._timed_stage(name, stage, getattr(hook, stage)))
        call_hook = runner.call_hook

        def timed_call_hook(fn_name: str, **kwargs) -> None:
            call_hook(fn_name, **kwargs)
            if fn_name == 'after_train_iter':
                self._iteration_done(runner)

        runner.call_hook = timed_call_hook
        model = runner.model
        model.train_step = self._timed(model.train_step, 'train_step')
        preprocessor = model.data_preprocessor
        preprocessor.forward = self._timed(preprocessor.forward,
                                           'preprocessor')

    def _timed(self, fn: Callable, part: str) -> Callable:

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.timing:
                    self.seconds[part] += time.perf_counter() - start

        return call

    def _timed_stage(self, name: str, stage: str, fn: Callable) -> Callable:

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.timing or stage not in ITERATION_STAGES:
                    seconds = (self.in_window
                               if self.timing else self.outside)[name]
                    seconds[stage] = seconds.get(stage, 0.0) + \
                        time.perf_counter() - start

        return call

    def _iteration_done(self, runner: Runner) -> None:
        self.done += 1
        if self.done == self.warmup and self.history:
            age_histories(runner.message_hub, self.history,
                          [f'train/{key}' for key in LOGGED])
        if self.done in (self.warmup, self.warmup + self.iters):
            synchronize(model_device(runner))
            self.edges.append(time.perf_counter())
            self.thread_samples.append(sample_threads())
            self.timing = self.done == self.warmup
            if not self.timing and self.profile_iters:
                self.profiler.enable()
        elif self.done == self.warmup + self.iters + self.profile_iters:
            self.profiler.disable()

    def report(self, batch_size: int) -> Dict:
        """ms per iteration of the loop and its parts, per hook; the
        threads; the profile."""
        per_iter = 1e3 / self.iters
        wall = self.edges[1] - self.edges[0]
        hooks = {
            name:
            dict(
                ms_per_iter=sum(stages.values()) * per_iter,
                stages_ms_per_iter={
                    stage: seconds * per_iter
                    for stage, seconds in stages.items()
                }, once_ms={
                    stage: 1e3 * seconds
                    for stage, seconds in self.outside[name].items()
                })
            for name, stages in self.in_window.items()
        }
        hooks_ms = sum(entry['ms_per_iter'] for entry in hooks.values())
        preprocessor = self.seconds['preprocessor'] * per_iter
        train_step = self.seconds['train_step'] * per_iter
        rest = wall * per_iter - hooks_ms - train_step
        return dict(
            ms_per_iter=dict(loop=wall * per_iter, hooks=hooks_ms,
                             data_preprocessor=preprocessor,
                             step=train_step - preprocessor, rest=rest),
            host_overhead_ms_per_iter=hooks_ms + rest, hooks=hooks,
            threads=thread_report(*self.thread_samples, wall,
                                  self.iters * batch_size),
            profile=self._profile())

    def _profile(self) -> List[Dict]:
        if not self.profile_iters:
            return []
        stats = pstats.Stats(self.profiler).stats
        ranked = sorted(stats.items(), key=lambda item: -item[1][2])
        return [
            dict(
                function=_function_name(*key),
                own_ms_per_iter=1e3 * own / self.profile_iters,
                calls_per_iter=calls / self.profile_iters)
            for key, (_, calls, own, _, _) in ranked[:PROFILE_TOP]
        ]


def age_histories(hub: MessageHub, length: int,
                  keys: Sequence[str] = ()) -> None:
    """Give every scalar history of ``hub``, and those of ``keys`` (values
    still to come: ``DeferredRuntimeInfoHook`` hands the model's logged
    values to the hub only at the logger's interval), ``length`` values
    (the current one repeated; 1 for a new key), in the hub's own buffer
    class: the hub of a run ``length`` iterations in, whose appends copy
    what its buffers copy."""
    for key in keys:
        if key not in hub.log_scalars:
            hub.update_scalar(key, 1.0)
    scalars = hub.log_scalars
    for key, buffer in list(scalars.items()):
        scalars[key] = type(buffer)(np.full(length, buffer.current()),
                                    np.ones(length, dtype=np.int64),
                                    buffer.max_length)


def _function_name(path: str, line: int, name: str) -> str:
    """``file:line(function)``, the file below site-packages or the
    working directory."""
    if path == '~':  # a built-in
        return name
    path = path.split('site-packages/')[-1] if 'site-packages/' in path \
        else shown_path(path)
    return f'{path}:{line}({name})'


def benchmark_loop(cfg: Config, batch: dict, batch_size: int, warmup: int,
                   iters: int, profile_iters: int, seed: int,
                   history: int = 0) -> Dict:
    """The module docstring's figures, for ``cfg`` and its collated
    ``batch`` of ``batch_size`` images."""
    cfg = adapt_to_device(copy.deepcopy(cfg))
    total = warmup + iters + profile_iters
    loop = train_loop(cfg, total)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    model = TrivialModel(preprocessor, cfg.model.get('nonfinite', 'raise'))
    timer = LoopTimer(warmup, iters, profile_iters, history)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = MoProRunner(
            model=model, work_dir=work_dir,
            train_dataloader=DataLoader([batch] * loader_batches(loop, total),
                                        batch_size=1,
                                        collate_fn=_shallow_copy),
            train_cfg=loop, optim_wrapper=cfg.optim_wrapper,
            param_scheduler=cfg.get('param_scheduler'),
            default_hooks=cfg.get('default_hooks'),
            custom_hooks=cfg.get('custom_hooks'), env_cfg=cfg.get('env_cfg'),
            log_processor=cfg.get('log_processor'), log_level='WARNING',
            visualizer=cfg.get('visualizer'),
            default_scope=cfg.get('default_scope', 'mmpretrain'),
            randomness=dict(seed=seed), experiment_name=osp.basename(work_dir))
        timer.install(runner)
        runner.train()
        device = model_device(runner)
    return dict(mode='loop', config=shown_path(cfg.filename),
                device=str(device), train_loop=loop['type'],
                batch_size=batch_size, warmup_iters=warmup, iters=iters,
                profile_iters=profile_iters, history=history,
                **timer.report(batch_size))
