"""MoPro's training step against the supervised bounds, on one device.

On synthetic batches already on the device, :func:`benchmark_step` times,
once with the eager model and once with ``model.compile`` (both on CUDA,
eager only elsewhere), each section built and timed alike:

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
  it: bf16 and channels-last on a GPU, ``eval_batch_size`` images;
- ``feature_extraction``: the SVM benchmark's feature batch, likewise.

Every entry is a :func:`~mopro.analysis.timing.timing_entry`: images/s,
ms per call, peak device memory, ``first_iters_s`` (wall time of the
``warmup`` first calls), ``overhead_s`` (that minus as many steady calls:
torch.compile's build time in the compiled section, cuDNN's autotuning in
both) and ``new_graphs`` (graphs dynamo compiled for it: 0 where the
compiled encoder is reused). ``summary`` holds the ratios the goals are
stated in.
"""
import copy
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from torch.utils.data import DataLoader, Dataset

from ..evaluation.features import encode_batch, prepare_for_inference
from ..evaluation.noise_cleaning import correct_inputs
from ..models.utils.compile import compile_options
from ..utils.cli import ConfigError
from ..utils.device import default_device
from ..utils.run_checks import check_queue_fits
from ..utils.runner import adapt_to_device
from .timing import (RunnerTimer, compiled_graphs, count_host_syncs,
                     device_name, measure, shown_path, timing_entry)


@dataclass
class StepBenchmarkSettings:
    """What :func:`benchmark_step` times (the tool's flags)."""
    iters: int = 50
    warmup: int = 10
    batch_size: int = 256  # training batch (one device)
    eval_batch_size: int = 512  # noise-cleaning and feature batch
    image_size: int = 224
    device: Optional[str] = None  # default: cuda when available, else cpu
    compile: Optional[str] = None  # on, off, both (default: both on CUDA)
    compile_backend: Optional[str] = None  # default: the config's


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


def _time_training(model: torch.nn.Module, cfg: Config,
                   settings: StepBenchmarkSettings, device: torch.device,
                   gen: torch.Generator) -> Dict:
    batch = settings.batch_size
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

    timings = dict(
        mopro=measure(mopro_step, batch, settings.iters, settings.warmup,
                      device))
    timings['mopro']['host_syncs_per_step'] = count_host_syncs(
        mopro_step, device)
    unlabelled = dict(inputs=images, data_samples=None)
    for name, extra in (('supervised', False), ('supervised_plus_forward',
                                                True)):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        step = _supervised_step(model, optim_wrapper, unlabelled, labels,
                                extra)
        timings[name] = measure(step, batch, settings.iters, settings.warmup,
                                device)
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


def _time_runner(cfg: Config, settings: StepBenchmarkSettings,
                 device: torch.device, gen: torch.Generator) -> Dict:
    """The MoPro step in mmengine's Runner loop, noise correction on."""
    batch = settings.batch_size
    pin = device.type == 'cuda'
    views = [_images(batch, settings.image_size, gen) for _ in range(2)]
    labels = torch.randint(0, cfg.model.num_classes, (batch, ), generator=gen)
    data = dict(inputs=[v.pin_memory() if pin else v for v in views],
                data_samples=labels.pin_memory() if pin else labels)
    iters = settings.warmup + settings.iters
    timer = RunnerTimer(settings.warmup)
    graphs = compiled_graphs()
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner(
            model=cfg.model, work_dir=work_dir, train_dataloader=DataLoader(
                _SameBatch(data, iters), batch_size=None),
            train_cfg=dict(by_epoch=False,
                           max_iters=iters), optim_wrapper=cfg.optim_wrapper,
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
        name: measure(step, batch, settings.iters, settings.warmup, device)
        for name, step in timed.items()
    }


def _benchmark_mode(cfg: Config, settings: StepBenchmarkSettings,
                    device: torch.device) -> Dict:
    """Every timing of one model (eager or compiled, as ``cfg.model``)."""
    gen = torch.Generator().manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    # non-zero prototypes so that noise correction does real work
    model.prototypes.copy_(
        F.normalize(torch.randn(model.prototypes.shape, generator=gen), dim=1))
    results = _time_training(model, cfg, settings, device, gen)
    results.update(_time_inference(model, cfg, settings, device, gen))
    del model
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    results.update(_time_runner(cfg, settings, device, gen))
    rate = {
        name: results[name]['img_per_s']
        for name in ('mopro', 'supervised', 'supervised_plus_forward',
                     'mopro_runner')
    }
    results['mopro_vs_bound'] = rate['mopro'] / rate['supervised_plus_forward']
    results['mopro_vs_supervised'] = rate['mopro'] / rate['supervised']
    results['runner_vs_step'] = rate['mopro_runner'] / rate['mopro']
    return results


def _compile_options(cfg: Config, settings: StepBenchmarkSettings) -> dict:
    """The config's torch.compile arguments (``compile_backend`` replacing
    its backend), read before ``adapt_to_device`` turns compile off off
    CUDA."""
    try:
        options = compile_options(cfg.model.get('compile')) or {}
    except (TypeError, ValueError) as err:
        raise ConfigError(f'{cfg.filename}: {err}') from None
    if settings.compile_backend:
        options['backend'] = settings.compile_backend
    return options


def benchmark_step(cfg: Config, settings: StepBenchmarkSettings) -> Dict:
    """Every timing of the module docstring, eager and/or compiled, with
    the settings they were measured under."""
    check_queue_fits(
        cfg.model.get('queue_len'), settings.batch_size,
        f'the benchmark batch_size={settings.batch_size}')
    cfg = copy.deepcopy(cfg)
    device = default_device(settings.device)
    options = _compile_options(cfg, settings)
    cfg = adapt_to_device(cfg, device=str(device))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    modes = dict(on=['compiled'], off=['eager'],
                 both=['eager', 'compiled'
                       ])[settings.compile
                          or ('both' if device.type == 'cuda' else 'off')]
    results = dict(
        device=device_name(device) if device.type == 'cuda' else 'cpu',
        config=shown_path(cfg.filename), batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size,
        image_size=settings.image_size,
        optim_wrapper=cfg.optim_wrapper.get('type'),
        optimizer=dict(cfg.optim_wrapper.get('optimizer', {})),
        channels_last=bool(cfg.model.get('channels_last')),
        compile=options if 'compiled' in modes else None,
        torch=torch.__version__)
    for mode in modes:
        cfg.model.compile = options if mode == 'compiled' else False
        if mode == 'compiled':
            torch._dynamo.reset()  # compile seconds from a cold cache
        results[mode] = _benchmark_mode(cfg, settings, device)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    results['summary'] = _summary(results)
    return results


def _summary(results: Dict) -> Dict:
    """The numbers the speed goals are stated in, from the compiled section
    where there is one."""
    mode = 'compiled' if 'compiled' in results else 'eager'
    section = results[mode]
    summary = dict(mode=mode, mopro_img_per_s=section['mopro']['img_per_s'],
                   mopro_vs_bound=section['mopro_vs_bound'],
                   runner_vs_step=section['runner_vs_step'],
                   mopro_first_iters_s=section['mopro']['first_iters_s'])
    if 'compiled' in results and 'eager' in results:
        summary['compiled_vs_eager'] = (
            section['mopro']['img_per_s'] /
            results['eager']['mopro']['img_per_s'])
    return summary
