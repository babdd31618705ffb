"""Bytes per rank per step of every collective of MoPro's training step,
measured on CPU processes (gloo), and their extension to large jobs.

:func:`benchmark_comm` starts, for each world size, that many processes on
this machine (gloo over loopback TCP); each measures with
:class:`~mopro.analysis.collectives.CollectiveLog`:

- ``step``: the config's MoPro model in mmengine's DDP wrapper (as the
  Runner wraps it on a CPU: no device ids, no buffer broadcast) and the
  config's optimizer, noise correction on, ``steps`` steps after
  ``warmup`` (DDP rebuilds its buckets in the second step), on random views
  of ``step_image_size`` pixels: the bytes of each collective by role
  (:data:`~mopro.analysis.collectives.ROLES`), of the backward pass (DDP's
  gradient all-reduce, ``ddp_gradients``) and of the whole step
  (``step_total``), and DDP's bucket sizes;
- ``ddp_bf16``: the backward pass (``ddp_gradients``) of the same model
  with DDP's bf16 compression hook
  (:class:`~mopro.engine.DDPBF16CompressionHook`);
- ``shuffle``: the momentum encoder's shuffle alone, at ``image_size``
  pixels in float32 (the CPU data path's images) with keys of the model's
  ``embed_dim``: this project's all-to-all (``all_to_all``) and the gather
  version of the released code, as mmpretrain ships it (``gather``:
  ``batch_shuffle_ddp`` and ``batch_unshuffle_ddp``).

The image size matters to the shuffle only, so the step runs at a small one
(a ResNet-50 step of 32 images at 224 pixels takes several GB per process).
Each figure is a rank's bytes per step (the mean over the measured steps),
given as the mean and the maximum over the ranks. ``projection`` extends
them to larger jobs with NCCL's ring arithmetic
(:func:`~mopro.analysis.collectives.ring_bytes`) at a stated bandwidth.
These are bytes, not seconds: they do not depend on the machine.
"""
import copy
import datetime
import gc
import json
import os.path as osp
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from mmpretrain.registry import MODELS

from ..engine.hooks.ddp_compression_hook import compress_gradients_bf16
from ..engine.launch import adapt_to_device
from ..models import check_queue_fits
from ..models.utils.shuffle import step_shuffle
from ..utils.errors import ConfigError
from .collectives import (CollectiveLog, by_role, check_measurable,
                          ddp_bucket_bytes, ring_bytes, socket_bytes)
from .timing import cpu_model, shown_path, versions


@dataclass
class CommBenchmarkSettings:
    """What :func:`benchmark_comm` measures (the tool's flags)."""
    world_sizes: List[int] = field(default_factory=lambda: [2, 4, 8])
    batch_size: int = 32  # per rank
    image_size: int = 224  # of the shuffle's images
    step_image_size: int = 32  # of the training step's views
    steps: int = 3
    warmup: int = 2
    # projection: world sizes and bandwidth per GPU
    project_to: List[int] = field(default_factory=lambda: [8, 64, 512])
    bandwidth_gbit_s: float = 400.0


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _views(batch: int, size: int, num_classes: int, seed: int) -> dict:
    """A batch as ``multiview_collate`` hands it over: two uint8 views and
    one label tensor."""
    gen = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(0, 256, (batch, 3, size, size), generator=gen,
                      dtype=torch.uint8) for _ in range(2)
    ]
    labels = torch.randint(0, num_classes, (batch, ), generator=gen)
    return dict(inputs=views, data_samples=labels)


def _build(cfg: Config, bf16_gradients: bool):
    """The config's MoPro model (noise correction on) in DDP, and its
    optimizer wrapper; every rank starts from the same weights."""
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.train()
    model.use_proto_loss = model.correct_noise = True
    ddp = MMDistributedDataParallel(module=model, device_ids=None,
                                    broadcast_buffers=False)
    if bf16_gradients:
        compress_gradients_bf16(ddp)
    return ddp, build_optim_wrapper(ddp, copy.deepcopy(cfg.optim_wrapper))


def _measure_step(cfg: Config, settings: CommBenchmarkSettings,
                  bf16_gradients: bool = False) -> Dict:
    """Every collective of ``steps`` training steps, by role, per step."""
    ddp, optim_wrapper = _build(cfg, bf16_gradients)
    data = _views(settings.batch_size, settings.step_image_size,
                  cfg.model.num_classes, seed=dist.get_rank())
    for _ in range(settings.warmup):
        ddp.train_step(data, optim_wrapper)
    gradients = sum(p.numel() * p.element_size() for p in ddp.parameters()
                    if p.requires_grad)
    backward = optim_wrapper.backward
    log = CollectiveLog()

    def measured_backward(loss, **kwargs):
        with log.region('ddp_gradients', payload=gradients):
            backward(loss, **kwargs)

    optim_wrapper.backward = measured_backward
    totals = np.zeros(2)
    with log:
        for _ in range(settings.steps):
            before = socket_bytes()
            ddp.train_step(data, optim_wrapper)
            totals += socket_bytes().since(before)
    roles = by_role(log.take(), settings.steps)
    sent, received = totals / settings.steps
    roles['step_total'] = dict(ops=['step'], calls=1, payload_bytes=0,
                               sent_bytes=sent, received_bytes=received)
    return dict(roles=roles, ddp_bucket_bytes=ddp_bucket_bytes(ddp))


def _measure_shuffle(settings: CommBenchmarkSettings, embed_dim: int,
                     version: str) -> Dict:
    """The momentum encoder's shuffle of ``steps`` batches and the return
    of their keys, by role, per step."""
    gen = torch.Generator().manual_seed(dist.get_rank())
    size = settings.image_size
    images = torch.randn(settings.batch_size, 3, size, size, generator=gen)
    keys = torch.randn(settings.batch_size, embed_dim, generator=gen)
    with CollectiveLog() as log:
        for step in range(settings.steps):
            if version == 'all_to_all':
                shuffle = step_shuffle(images, step)
                shuffle.shuffle(images)
                shuffle.unshuffle(keys)
            else:
                _, restore = batch_shuffle_ddp(images)
                batch_unshuffle_ddp(keys, restore)
    return by_role(log.take(), settings.steps)


def _worker(rank: int, world_size: int, port: int, cfg: Config,
            settings: CommBenchmarkSettings, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=600))
    try:
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        # one seed on every rank, as the Runner sets it: the shuffle's
        # permutation is drawn from it
        torch.manual_seed(0)
        result = dict(
            shuffle={
                version: _measure_shuffle(settings, cfg.model.embed_dim,
                                          version)
                for version in ('all_to_all', 'gather')
            })
        result['step'] = _measure_step(cfg, settings)
        gc.collect()  # one model at a time: 8 processes share the memory
        bf16 = _measure_step(cfg, settings, bf16_gradients=True)['roles']
        result['ddp_bf16'] = dict(ddp_gradients=bf16['ddp_gradients'])
        with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _over_ranks(ranks: List[Dict]) -> Dict:
    """Per role: the operations, calls and payload of rank 0, the mean and
    the maximum over the ranks of the sent and received bytes."""
    merged = {}
    for role, entry in ranks[0].items():
        merged[role] = dict(ops=entry['ops'], calls=entry['calls'],
                            payload_bytes=entry['payload_bytes'])
        for key in ('sent_bytes', 'received_bytes'):
            values = [rank[role][key] for rank in ranks]
            merged[role][key] = dict(
                mean=float(np.mean(values)), max=float(np.max(values)))
    return merged


def _measure_world(cfg: Config, settings: CommBenchmarkSettings,
                   world_size: int) -> Dict:
    """The measurements of ``world_size`` processes (see the module)."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker,
                 args=(world_size, _free_port(), cfg, settings, out_dir),
                 nprocs=world_size, join=True)
        ranks = []
        for rank in range(world_size):
            with open(osp.join(out_dir, f'rank{rank}.json')) as f:
                ranks.append(json.load(f))
    return dict(
        step=_over_ranks([r['step']['roles'] for r in ranks]),
        ddp_bucket_bytes=ranks[0]['step']['ddp_bucket_bytes'],
        ddp_bf16=_over_ranks([r['ddp_bf16'] for r in ranks]), shuffle={
            version: _over_ranks([r['shuffle'][version] for r in ranks])
            for version in ('all_to_all', 'gather')
        })


def projection(measured: Dict, settings: CommBenchmarkSettings) -> Dict:
    """Bytes per rank per step of each collective at ``project_to`` world
    sizes, from the payloads measured at the largest world size and NCCL's
    ring arithmetic, and the milliseconds each takes at
    ``bandwidth_gbit_s`` per GPU (bytes / bandwidth: a GPU's network port
    carries its sends and its receives at once; latency is left out)."""
    largest = measured[str(max(map(int, measured)))]
    step, shuffle = largest['step'], largest['shuffle']['all_to_all']
    images = shuffle['shuffle_images']['payload_bytes']
    keys = shuffle['shuffle_keys']['payload_bytes']
    gradients = step['ddp_gradients']['payload_bytes']
    per_ms = settings.bandwidth_gbit_s * 1e9 / 8 / 1e3
    table = {}
    for size in settings.project_to:
        permutation = 8 * settings.batch_size * size  # int64 per image
        rows = dict(
            shuffle_all_to_all=ring_bytes('all_to_all_single', images + keys,
                                          size),
            shuffle_gather=ring_bytes('all_gather', images + keys, size) +
            ring_bytes('broadcast', permutation, size),
            queue_keys=ring_bytes('all_gather',
                                  step['queue_keys']['payload_bytes'], size),
            prototype_update=ring_bytes(
                'all_gather', step['prototype_update']['payload_bytes'],
                size), nonfinite_flag=ring_bytes(
                    'all_reduce', step['nonfinite_flag']['payload_bytes'],
                    size), ddp_gradients=ring_bytes('all_reduce', gradients,
                                                    size),
            ddp_gradients_bf16=ring_bytes('all_reduce', gradients / 2, size))
        table[str(size)] = {
            name: dict(bytes=value, ms=value / per_ms)
            for name, value in rows.items()
        }
    return dict(bandwidth_gbit_s=settings.bandwidth_gbit_s,
                batch_per_gpu=settings.batch_size, image_bytes_per_gpu=images,
                world_sizes=table)


def benchmark_comm(cfg: Config, settings: CommBenchmarkSettings) -> Dict:
    """Every measurement of the module docstring, for each world size, and
    the projection to ``project_to`` GPUs."""
    check_measurable()
    check_queue_fits(
        cfg.model.get('queue_len'),
        settings.batch_size * max(settings.world_sizes),
        f'the benchmark batch_size={settings.batch_size} x '
        f'{max(settings.world_sizes)} process(es)')
    if cfg.model.get('type') != 'MoPro':
        raise ConfigError('benchmark_comm measures MoPro configs, got '
                          f'model.type={cfg.model.get("type")}')
    cfg = adapt_to_device(copy.deepcopy(cfg), device='cpu')
    cfg.model.channels_last = False
    measured = {
        str(size): _measure_world(cfg, settings, size)
        for size in settings.world_sizes
    }
    return dict(
        what='bytes per rank per step of each collective, gloo on CPU '
        'processes over loopback TCP (kernel counters)',
        config=shown_path(cfg.filename), cpu=cpu_model(), versions=versions(),
        settings=asdict(settings), measured=measured,
        projection=projection(measured, settings))


def shuffle_summary(results: Dict) -> Dict[str, Dict[str, float]]:
    """Sent plus received bytes per rank per step (the mean over ranks) of
    each shuffle version, by world size."""
    return {
        version: {
            size:
            sum(entry[key]['mean']
                for entry in world['shuffle'][version].values()
                for key in ('sent_bytes', 'received_bytes'))
            for size, world in results['measured'].items()
        }
        for version in ('all_to_all', 'gather')
    }
