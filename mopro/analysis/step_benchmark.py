"""MoPro's training step against the supervised bounds, on one device, at
each training batch size and in each compile mode.

On synthetic batches already on the device, :func:`benchmark_step` times,
for each batch size (``batch_sizes``: 256, the paper's whole batch on one
GPU; 32, the per-GPU batch of the 8-GPU configs) and each mode
(``modes``: ``eager``, ``compiled``, ``reduce-overhead``: CUDA graphs,
CUDA only), a model built afresh and timed alike: ``mopro`` (the config's
``train_step``, noise correction on, with the host syncs of one step on
CUDA), ``supervised`` (a cross-entropy step of the same encoder),
``supervised_plus_forward`` (that plus one no-grad forward: the least a
MoPro step can cost), ``mopro_runner`` (the step in ``MoProRunner``'s
loop with the config's hooks, fed from pinned host memory), and, at the
first batch size only, the ``noise_cleaning`` and ``feature_extraction``
batches. Each entry is a :func:`~mopro.analysis.timing.timing_entry` with
the graphs dynamo built for it (:class:`GraphLog`). The JSON's layout and
its goals (``runner_vs_step``, ``small_vs_large_batch``) are described in
``benchmarks/README.md`` ("Keys of the step benchmark").
"""
import ast
import copy
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from torch._dynamo.utils import counters, get_compilation_metrics
from torch.utils.data import DataLoader, Dataset

from ..engine import MoProRunner
from ..engine.launch import adapt_to_device
from ..evaluation.features import encode_batch, prepare_for_inference
from ..evaluation.noise_cleaning import correct_inputs
from ..models import check_queue_fits
from ..models.utils.compile import compile_options
from ..utils.device import default_device
from ..utils.errors import ConfigError
from .timing import (RunnerTimer, compiled_graphs, count_host_syncs,
                     device_name, measure, shown_path, timing_entry)

# eager; the config's model.compile; the same with CUDA graphs
MODES = ('eager', 'compiled', 'reduce-overhead')
NOT_APPLICABLE = dict(not_applicable="CUDA graphs (torch.compile mode "
                      "'reduce-overhead') run on CUDA devices only")


@dataclass
class StepBenchmarkSettings:
    """What :func:`benchmark_step` times (the tool's flags)."""
    iters: int = 50
    warmup: int = 10
    batch_sizes: Sequence[int] = (256, 32)  # training batches (one device)
    eval_batch_size: int = 512  # noise-cleaning and feature batch
    image_size: int = 224
    device: Optional[str] = None  # default: cuda when available, else cpu
    modes: Optional[Sequence[str]] = None  # default: MODES on CUDA, eager
    compile_backend: Optional[str] = None  # default: the config's
    inference: bool = True  # time the noise-cleaning and feature batches


class GraphLog:
    """The graphs dynamo builds from its creation on, read from dynamo's
    compilation records (the last 64 of the process).

    :meth:`report` gives ``graphs`` (per graph: the code it was built for,
    e.g. ``compiled_MoPro_backbone_3``, whether a size in it is symbolic,
    and why it recompiled, None for a code's first graph), the counts
    ``dynamic_graphs`` and ``recompiles``, and ``cudagraph_skips`` with
    ``cudagraph_skip_reasons``: the graphs inductor ran without CUDA graphs
    (mode ``reduce-overhead``) and why.
    """

    def __init__(self) -> None:
        self.before = get_compilation_metrics()  # kept: their ids stay unique
        self.skips = counters['inductor']['cudagraph_skips']

    def report(self) -> Dict:
        known = {id(record) for record in self.before}
        new = [r for r in get_compilation_metrics() if id(r) not in known]
        graphs = [
            dict(code=r.co_name, dynamic=_has_symbolic_size(r),
                 recompile_reason=r.recompile_reason) for r in new
            if r.is_forward and r.graph_op_count is not None
        ]
        reasons = sorted(
            {r.cudagraph_skip_reason
             for r in new if r.cudagraph_skip_reason})
        return dict(
            graphs=graphs, dynamic_graphs=sum(g['dynamic'] for g in graphs),
            recompiles=sum(g['recompile_reason'] is not None for g in graphs),
            cudagraph_skips=counters['inductor']['cudagraph_skips'] -
            self.skips, cudagraph_skip_reasons=reasons)


def _has_symbolic_size(record) -> bool:
    """Whether a compilation record's graph has a symbolic size (dynamo
    writes its nodes' sizes, a symbol as its name, e.g. ``'s0'``)."""
    sizes = ast.literal_eval(record.graph_node_shapes or '{}')
    return any(
        isinstance(size, str) for shape in sizes.values() for size in shape)


def _measure(step: Callable[[], object], batch: int,
             settings: StepBenchmarkSettings, device: torch.device) -> Dict:
    """:func:`~mopro.analysis.timing.measure` of ``step``, with
    :class:`GraphLog`'s report of the graphs built meanwhile."""
    log = GraphLog()
    entry = measure(step, batch, settings.iters, settings.warmup, device)
    entry.update(log.report())
    return entry


def _images(num: int, size: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, (num, 3, size, size), generator=gen,
                         dtype=torch.uint8)


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


def _time_training(model: torch.nn.Module, cfg: Config, batch: int,
                   settings: StepBenchmarkSettings, device: torch.device,
                   gen: torch.Generator) -> Dict:
    images = [
        _images(batch, settings.image_size, gen).to(device) for _ in range(2)
    ]
    labels = torch.randint(0, cfg.model.num_classes, (batch, ),
                           generator=gen).to(device)
    data = dict(inputs=images, data_samples=labels)
    model.train()
    model.use_proto_loss = model.correct_noise = True
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    def mopro_step() -> None:
        model.train_step(data, optim_wrapper)

    timings = dict(mopro=_measure(mopro_step, batch, settings, device))
    timings['mopro']['host_syncs_per_step'] = count_host_syncs(
        mopro_step, device)
    unlabelled = dict(inputs=images, data_samples=None)
    for name, extra in (('supervised', False), ('supervised_plus_forward',
                                                True)):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        step = _supervised_step(model, optim_wrapper, unlabelled, labels,
                                extra)
        timings[name] = _measure(step, batch, settings, device)
    return timings


class _SameBatch(Dataset):
    """``length`` times the same collated batch (``DataLoader`` with
    ``batch_size=None`` hands it on as is)."""

    def __init__(self, batch: dict, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


def _runner_hooks(cfg: Config, timer: RunnerTimer) -> dict:
    """The config's hooks without checkpoints, sampler seeding (one fixed
    batch) and visualisation; MoPro's phase with noise correction on."""
    default_hooks = {
        name: None if name in ('checkpoint', 'sampler_seed') else hook
        for name, hook in cfg.default_hooks.items() if name != 'visualization'
    }
    custom_hooks = [
        dict(h) for h in cfg.get('custom_hooks', [])
        if h.get('type') != 'MoProHook'
    ]
    custom_hooks += [
        dict(type='MoProHook', start_proto_epoch=0, start_clean_epoch=0), timer
    ]
    return dict(default_hooks=default_hooks, custom_hooks=custom_hooks)


def _time_runner(cfg: Config, batch: int, settings: StepBenchmarkSettings,
                 device: torch.device, gen: torch.Generator) -> Dict:
    """The MoPro step in the Runner loop, noise correction on: one
    epoch of ``warmup + iters`` iterations of the configs' loop."""
    pin = device.type == 'cuda'
    views = [_images(batch, settings.image_size, gen) for _ in range(2)]
    labels = torch.randint(0, cfg.model.num_classes, (batch, ), generator=gen)
    data = dict(inputs=[v.pin_memory() if pin else v for v in views],
                data_samples=labels.pin_memory() if pin else labels)
    iters = settings.warmup + settings.iters
    timer = RunnerTimer(settings.warmup)
    graphs, log = compiled_graphs(), GraphLog()
    with tempfile.TemporaryDirectory() as work_dir:
        runner = MoProRunner(
            model=cfg.model, work_dir=work_dir, train_dataloader=DataLoader(
                _SameBatch(data, iters),
                batch_size=None), train_cfg=dict(by_epoch=True, max_epochs=1),
            optim_wrapper=cfg.optim_wrapper,
            env_cfg=dict(cfg.env_cfg, dist_cfg=None),
            log_processor=cfg.get('log_processor'), log_level='WARNING',
            default_scope=cfg.get('default_scope',
                                  'mmpretrain'), randomness=dict(seed=0),
            **_runner_hooks(cfg, timer))
        runner.model.to(device)
        runner.train()
    entry = timing_entry(batch, timer.seconds_per_iter(),
                         timer.start[0] - timer.first[0], settings.warmup,
                         compiled_graphs() - graphs, device)
    entry.update(log.report())
    return dict(mopro_runner=entry)


def _time_inference(model: torch.nn.Module, cfg: Config,
                    settings: StepBenchmarkSettings, device: torch.device,
                    gen: torch.Generator) -> Dict:
    batch, size = settings.eval_batch_size, settings.image_size
    inputs = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, cfg.model.num_classes, (batch, ),
                           generator=gen).to(device)
    model = prepare_for_inference(model, device)
    model.channels_last = device.type == 'cuda'  # as clean_dataset sets it
    timed = dict(noise_cleaning=lambda: correct_inputs(model, inputs, labels),
                 feature_extraction=lambda: encode_batch(model, inputs))
    return {
        name: _measure(step, batch, settings, device)
        for name, step in timed.items()
    }


def _benchmark_mode(cfg: Config, batch: int, settings: StepBenchmarkSettings,
                    device: torch.device, inference: bool) -> Dict:
    """Every timing of one model (eager or compiled, as ``cfg.model``) at
    one training batch size; the inference batches if ``inference``."""
    gen = torch.Generator().manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    # non-zero prototypes so that noise correction does real work
    model.prototypes.copy_(
        F.normalize(torch.randn(model.prototypes.shape, generator=gen), dim=1))
    results = _time_training(model, cfg, batch, settings, device, gen)
    if inference:
        results.update(_time_inference(model, cfg, settings, device, gen))
    del model
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    results.update(_time_runner(cfg, batch, settings, device, gen))
    rate = {
        name: results[name]['img_per_s']
        for name in ('mopro', 'supervised', 'supervised_plus_forward',
                     'mopro_runner')
    }
    results['mopro_vs_bound'] = rate['mopro'] / rate['supervised_plus_forward']
    results['mopro_vs_supervised'] = rate['mopro'] / rate['supervised']
    results['runner_vs_step'] = rate['mopro_runner'] / rate['mopro']
    return results


def _compile_options(cfg: Config, settings: StepBenchmarkSettings,
                     modes: Sequence[str],
                     device: torch.device) -> Dict[str, dict]:
    """The torch.compile arguments of each compiled mode, read before
    ``adapt_to_device`` turns compile off off CUDA: the config's
    (``compile_backend`` replacing its backend), and for
    ``reduce-overhead`` the same with inductor's CUDA graphs (torch's mode
    of that name; ``triton.cudagraphs`` where the config passes inductor
    options, which torch does not take together with a mode)."""
    try:
        options = compile_options(cfg.model.get('compile')) or {}
    except (TypeError, ValueError) as err:
        raise ConfigError(f'{cfg.filename}: {err}') from None
    if settings.compile_backend:
        options['backend'] = settings.compile_backend
    result = {}
    if 'compiled' in modes:
        result['compiled'] = options
    if 'reduce-overhead' in modes and device.type == 'cuda':
        backend = options.get('backend') or 'inductor'
        if backend != 'inductor':
            raise ConfigError(
                f"--modes reduce-overhead: CUDA graphs are inductor's, the "
                f'torch.compile backend is {backend!r}')
        graphed = copy.deepcopy(options)
        if graphed.get('options'):
            graphed['options']['triton.cudagraphs'] = True
        else:
            graphed['mode'] = 'reduce-overhead'
        result['reduce-overhead'] = graphed
    return result


def benchmark_step(cfg: Config, settings: StepBenchmarkSettings) -> Dict:
    """Every timing of the module docstring, at each batch size in each
    mode, with the settings they were measured under."""
    for batch in settings.batch_sizes:
        check_queue_fits(
            cfg.model.get('queue_len'), batch,
            f'the benchmark batch size {batch}')
    cfg = copy.deepcopy(cfg)
    device = default_device(settings.device)
    modes = settings.modes or (MODES if device.type == 'cuda' else ('eager', ))
    options = _compile_options(cfg, settings, modes, device)
    cfg = adapt_to_device(cfg, device=str(device))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    results = dict(
        device=device_name(device) if device.type == 'cuda' else 'cpu',
        config=shown_path(cfg.filename),
        batch_sizes=list(settings.batch_sizes), modes=list(modes),
        eval_batch_size=settings.eval_batch_size,
        image_size=settings.image_size,
        optim_wrapper=cfg.optim_wrapper.get('type'),
        optimizer=dict(cfg.optim_wrapper.get('optimizer', {})),
        channels_last=bool(cfg.model.get('channels_last')), compile=options,
        torch=torch.__version__, by_batch_size={})
    for index, batch in enumerate(settings.batch_sizes):
        sections = results['by_batch_size'][str(batch)] = {}
        for mode in modes:
            if mode != 'eager' and mode not in options:
                sections[mode] = NOT_APPLICABLE
                continue
            cfg.model.compile = options.get(mode, False)
            if mode != 'eager':
                # compile seconds from a cold cache; CUDA graphs' memory
                # pools of the last mode freed
                torch._dynamo.reset()
            sections[mode] = _benchmark_mode(
                cfg, batch, settings, device, inference=index == 0
                and settings.inference)
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    results['summary'] = _summary(results['by_batch_size'])
    return results


def _rates(sections: Dict) -> Dict[str, float]:
    """The MoPro step's images/s in each mode timed (``sections``: one
    batch size's)."""
    return {
        mode: section['mopro']['img_per_s']
        for mode, section in sections.items() if 'mopro' in section
    }


def _batch_summary(sections: Dict) -> Dict:
    """Per timed mode the MoPro step's images/s, its ratio to the bound,
    the Runner loop's to the step alone and the first iterations' seconds;
    and the compiled modes' speed-ups."""
    rates = _rates(sections)
    summary = {
        mode:
        dict(mopro_img_per_s=rate,
             mopro_vs_bound=sections[mode]['mopro_vs_bound'],
             runner_vs_step=sections[mode]['runner_vs_step'],
             mopro_first_iters_s=sections[mode]['mopro']['first_iters_s'])
        for mode, rate in rates.items()
    }
    for faster, slower in (('compiled', 'eager'), ('reduce-overhead',
                                                   'compiled')):
        if faster in rates and slower in rates:
            key = f'{faster}_vs_{slower}'.replace('-', '_')
            summary[key] = rates[faster] / rates[slower]
    return summary


def _summary(by_batch_size: Dict) -> Dict:
    """The numbers the speed goals are stated in: per batch size
    (:func:`_batch_summary`) and, with two batch sizes or more, the MoPro
    step's images/s at the smallest over the largest, per mode timed at
    both and for the fastest mode of each (``best``)."""
    summary = dict(
        by_batch_size={
            batch: _batch_summary(sections)
            for batch, sections in by_batch_size.items()
        })
    sizes = sorted(by_batch_size, key=int)
    small, large = (_rates(by_batch_size[b]) for b in (sizes[0], sizes[-1]))
    if len(sizes) < 2 or not small:  # nothing timed: CUDA graphs on a CPU
        return summary
    best = [max(rates, key=rates.get) for rates in (small, large)]
    summary['small_vs_large_batch'] = dict(
        batch_sizes=[int(sizes[0]), int(sizes[-1])],
        **{mode: small[mode] / large[mode]
           for mode in small if mode in large},
        best=small[best[0]] / large[best[1]], best_modes=best)
    return summary
