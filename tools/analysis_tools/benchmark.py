#!/usr/bin/env python
"""Time MoPro's training step against the supervised bounds, on one device.

    python tools/analysis_tools/benchmark.py configs/mopro_r50_webvision_v1.py --iters 50 \
        --out benchmarks/mopro_step_h200.json

In one run, on synthetic batches already on the device, it times, once with
the eager model and once with ``model.compile`` (``--compile``: both on
CUDA, eager only elsewhere), each section built and timed alike:
- ``mopro``: the config's MoPro ``train_step`` (noise correction on, the
  most expensive phase) through the config's optimizer wrapper; on CUDA
  also the number of synchronizing calls in one step (torch's sync debug
  mode), which should be 0;
- ``supervised``: a plain cross-entropy step of the same encoder and
  classifier (the same optimizer wrapper settings);
- ``supervised_plus_forward``: that step plus one no-grad forward of the
  encoder, the least any MoPro step can cost;
- ``mopro_runner``: the same MoPro step inside mmengine's Runner loop with
  the config's hooks (``DeferredRuntimeInfoHook``: logged values reach the
  host at the logger's interval), fed one collated batch from (pinned) host
  memory (two uint8 views and one label tensor, as ``multiview_collate``
  hands them over), so that the copy to the device is counted too;
- ``noise_cleaning``: the noise-cleaning pass's batch (encoder, classifier,
  prototypes and the correction rule), as ``tools/noise_cleaning.py`` runs
  it: bf16 and channels-last on a GPU, ``--eval-batch-size`` images;
- ``feature_extraction``: the SVM benchmark's feature batch, likewise.
Every entry has images/s, ms per call, peak device memory, ``first_iters_s``
(wall time of the ``--warmup`` first calls), ``overhead_s`` (that minus as
many steady calls: torch.compile's build time in the compiled section,
cuDNN's autotuning in both) and ``new_graphs`` (graphs dynamo compiled for
it: 0 where the compiled encoder is reused). ``summary`` holds the ratios
the goals are stated in. It prints JSON (``--out`` also writes it). Speed is
reported here, never asserted in tests. Variants are one ``--cfg-options``
away, e.g. ``optim_wrapper.optimizer.fused=True``.
Data loading is timed separately, per CPU core: ``tools/analysis_tools/benchmark_data.py``.
"""
import argparse
import json
import tempfile
import time
import warnings
from typing import Callable, Dict, Optional

import mopro  # noqa: F401  (first: mopro.utils.mmpretrain_compat)
import torch
import torch.nn.functional as F
from mmengine.config import DictAction
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader, Dataset

from mopro.evaluation.features import encode_batch, prepare_for_inference
from mopro.evaluation.noise_cleaning import correct_inputs
from mopro.models.utils.compile import compile_options
from mopro.utils import write_json
from mopro.utils.cli import ConfigError, run_tool
from mopro.utils.runner import adapt_to_device, load_config


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--batch-size', type=int, default=256,
                        help='training batch (one device)')
    parser.add_argument('--eval-batch-size', type=int, default=512,
                        help='noise-cleaning and feature-extraction batch')
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--device', default=None,
                        help='default: cuda when available, else cpu')
    parser.add_argument('--compile', choices=['on', 'off', 'both'],
                        default=None,
                        help='time the compiled model, the eager one or '
                        'both (default: both on CUDA, off elsewhere)')
    parser.add_argument('--compile-backend', default=None,
                        help="torch.compile backend (default: the config's, "
                        "inductor); 'aot_eager' builds in seconds on a CPU")
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        action=DictAction)
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def _now(device: torch.device) -> float:
    """Wall time, once the device's queued work is done."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter()


def _graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return counters['stats']['unique_graphs']


def _entry(batch: int, sec: float, first_iters_s: float, warmup: int,
           graphs: int, device: torch.device) -> Dict:
    """One timing: img/s, ms per call, peak device memory (MiB; None on
    CPU), the first calls' seconds and their overhead, new graphs."""
    peak = (torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == 'cuda' else None)
    return dict(img_per_s=batch / sec, ms_per_iter=1e3 * sec,
                peak_memory_mb=peak, first_iters_s=first_iters_s,
                overhead_s=first_iters_s - warmup * sec, new_graphs=graphs)


def _measure(step: Callable[[], object], batch: int,
             args: argparse.Namespace, device: torch.device) -> Dict:
    """Time ``step``: ``--warmup`` calls, then ``--iters`` steady calls."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    graphs = _graphs()
    start = _now(device)
    for _ in range(args.warmup):
        step()
    steady = _now(device)
    for _ in range(args.iters):
        step()
    sec = (_now(device) - steady) / args.iters
    return _entry(batch, sec, steady - start, args.warmup,
                  _graphs() - graphs, device)


def _count_host_syncs(step: Callable[[], object],
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


def _supervised_step(model: torch.nn.Module, optim_wrapper, data: dict,
                     labels: torch.Tensor,
                     extra_forward: bool) -> Callable[[], None]:
    """A cross-entropy step of MoPro's encoder and classifier, optionally
    with one no-grad momentum-encoder forward of the second view."""

    def step() -> None:
        with optim_wrapper.optim_context(model):
            inputs = model.data_preprocessor(data, True)['inputs']
            logits = model.classifier(model.extract_feat(inputs[0])[-1])
            loss = F.cross_entropy(logits.float(), labels)
            if extra_forward:
                with torch.no_grad():
                    model.momentum_encode(inputs[1])
        optim_wrapper.update_params(loss)

    return step


def _time_training(model: torch.nn.Module, cfg, args: argparse.Namespace,
                   device: torch.device, gen: torch.Generator) -> Dict:
    batch, size = args.batch_size, args.image_size
    images = [torch.randint(0, 256, (batch, 3, size, size), generator=gen,
                            dtype=torch.uint8).to(device) for _ in range(2)]
    labels = torch.randint(0, cfg.model.num_classes, (batch, ),
                           generator=gen)
    data = dict(inputs=images, data_samples=labels.to(device))
    model.train()
    model.use_proto_loss = model.correct_noise = True
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    results = dict(mopro=_measure(
        lambda: model.train_step(data, optim_wrapper), batch, args, device))
    results['mopro']['host_syncs_per_step'] = _count_host_syncs(
        lambda: model.train_step(data, optim_wrapper), device)
    sup_data = dict(inputs=images, data_samples=None)
    for name, extra in (('supervised', False),
                        ('supervised_plus_forward', True)):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        results[name] = _measure(
            _supervised_step(model, optim_wrapper, sup_data,
                             labels.to(device), extra), batch, args, device)
    return results


class _SameBatch(Dataset):
    """``length`` times the same collated batch (``DataLoader`` with
    ``batch_size=None`` hands it on as is)."""

    def __init__(self, batch: dict, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


class _Stopwatch(Hook):
    """Wall times, device work included, at the first iteration, at
    iteration ``warmup`` and at the end of training."""

    priority = 'VERY_HIGH'

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.first = self.start = self.stop = None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if runner.iter == 0:
            self.first = _now(self.device)
        if runner.iter == self.warmup:
            self.start = _now(self.device)

    def after_train(self, runner) -> None:
        self.stop = _now(self.device)


def _time_runner(cfg, args: argparse.Namespace, device: torch.device,
                 gen: torch.Generator) -> Dict:
    """The MoPro step in mmengine's Runner loop, noise correction on."""
    batch, size = args.batch_size, args.image_size
    pin = device.type == 'cuda'
    views = [torch.randint(0, 256, (batch, 3, size, size), generator=gen,
                           dtype=torch.uint8) for _ in range(2)]
    labels = torch.randint(0, cfg.model.num_classes, (batch, ),
                           generator=gen)
    data = dict(inputs=[v.pin_memory() if pin else v for v in views],
                data_samples=labels.pin_memory() if pin else labels)
    iters = args.warmup + args.iters
    stopwatch = _Stopwatch(args.warmup, device)
    hooks = [dict(h) for h in cfg.get('custom_hooks', [])
             if h.get('type') != 'MoProHook']
    hooks += [dict(type='MoProHook', start_proto_epoch=0,
                   start_clean_epoch=0), stopwatch]
    graphs = _graphs()
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner(
            model=cfg.model,
            work_dir=work_dir,
            train_dataloader=DataLoader(_SameBatch(data, iters),
                                        batch_size=None),
            train_cfg=dict(by_epoch=False, max_iters=iters),
            optim_wrapper=cfg.optim_wrapper,
            # no checkpoints; no sampler to seed (one fixed batch)
            default_hooks={
                name: (None if name in ('checkpoint', 'sampler_seed')
                       else hook)
                for name, hook in cfg.default_hooks.items()
                if name != 'visualization'
            },
            custom_hooks=hooks,
            env_cfg=dict(cfg.env_cfg, dist_cfg=None),
            log_processor=cfg.get('log_processor'),
            log_level='WARNING',
            default_scope=cfg.get('default_scope', 'mmpretrain'),
            randomness=dict(seed=0))
        runner.model.to(device)
        runner.train()
    sec = (stopwatch.stop - stopwatch.start) / args.iters
    return dict(mopro_runner=_entry(
        batch, sec, stopwatch.start - stopwatch.first, args.warmup,
        _graphs() - graphs, device))


def _time_inference(model: torch.nn.Module, cfg, args: argparse.Namespace,
                    device: torch.device, gen: torch.Generator) -> Dict:
    batch, size = args.eval_batch_size, args.image_size
    inputs = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, cfg.model.num_classes, (batch, ),
                           generator=gen).to(device)
    model = prepare_for_inference(model, device)
    model.channels_last = device.type == 'cuda'  # as clean_dataset sets it
    return dict(
        noise_cleaning=_measure(lambda: correct_inputs(model, inputs, labels),
                                batch, args, device),
        feature_extraction=_measure(lambda: encode_batch(model, inputs),
                                    batch, args, device))


def _benchmark_mode(cfg, args: argparse.Namespace,
                    device: torch.device) -> Dict:
    """Every timing of one model (eager or compiled, as ``cfg.model``)."""
    gen = torch.Generator().manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    # non-zero prototypes so that noise correction does real work
    model.prototypes.copy_(
        F.normalize(torch.randn(model.prototypes.shape, generator=gen),
                    dim=1))
    results = _time_training(model, cfg, args, device, gen)
    results.update(_time_inference(model, cfg, args, device, gen))
    del model
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    results.update(_time_runner(cfg, args, device, gen))
    bound = results['supervised_plus_forward']['img_per_s']
    results['mopro_vs_bound'] = results['mopro']['img_per_s'] / bound
    results['mopro_vs_supervised'] = (results['mopro']['img_per_s'] /
                                      results['supervised']['img_per_s'])
    results['runner_vs_step'] = (results['mopro_runner']['img_per_s'] /
                                 results['mopro']['img_per_s'])
    return results


def benchmark(args: argparse.Namespace) -> Dict:
    cfg = load_config(args)
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    # the config's torch.compile arguments, before adapt_to_device turns
    # compile off off CUDA
    try:
        options = compile_options(cfg.model.get('compile')) or {}
    except (TypeError, ValueError) as err:
        raise ConfigError(f'{args.config}: {err}') from None
    if args.compile_backend:
        options['backend'] = args.compile_backend
    cfg = adapt_to_device(cfg, device=str(device))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    modes = dict(on=['compiled'], off=['eager'], both=['eager', 'compiled'])[
        args.compile or ('both' if device.type == 'cuda' else 'off')]
    optimizer = dict(cfg.optim_wrapper.get('optimizer', {}))
    results = dict(device=(torch.cuda.get_device_name(device)
                           if device.type == 'cuda' else 'cpu'),
                   config=args.config, batch_size=args.batch_size,
                   eval_batch_size=args.eval_batch_size,
                   image_size=args.image_size,
                   optim_wrapper=cfg.optim_wrapper.get('type'),
                   optimizer=optimizer,
                   channels_last=bool(cfg.model.get('channels_last')),
                   compile=options if 'compiled' in modes else None,
                   torch=torch.__version__)
    for mode in modes:
        cfg.model.compile = options if mode == 'compiled' else False
        if mode == 'compiled':
            torch._dynamo.reset()  # compile seconds from a cold cache
        results[mode] = _benchmark_mode(cfg, args, device)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    results['summary'] = _summary(results)
    return results


def _summary(results: Dict) -> Dict:
    """The numbers the speed goals are stated in, from the compiled section
    where there is one."""
    mode = 'compiled' if 'compiled' in results else 'eager'
    section = results[mode]
    summary = dict(
        mode=mode, mopro_img_per_s=section['mopro']['img_per_s'],
        mopro_vs_bound=section['mopro_vs_bound'],
        runner_vs_step=section['runner_vs_step'],
        mopro_first_iters_s=section['mopro']['first_iters_s'])
    if 'compiled' in results and 'eager' in results:
        summary['compiled_vs_eager'] = (
            section['mopro']['img_per_s'] /
            results['eager']['mopro']['img_per_s'])
    return summary


def main(argv=None) -> Optional[Dict]:
    args = parse_args(argv)
    results = benchmark(args)
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == '__main__':
    run_tool(main)
