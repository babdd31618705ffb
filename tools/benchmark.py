#!/usr/bin/env python
"""Time MoPro's training step against the supervised bounds, on one device.

    python tools/benchmark.py configs/mopro_r50_webvision_v1.py --iters 50

In one run, on synthetic batches already on the device, it times:
- ``mopro``: the config's MoPro ``train_step`` (noise correction on, the
  most expensive phase) through the config's optimizer wrapper;
- ``supervised``: a plain cross-entropy step of the same encoder and
  classifier (the same optimizer wrapper settings);
- ``supervised_plus_forward``: that step plus one no-grad forward of the
  encoder, the least any MoPro step can cost.
It prints images/s, peak device memory and the ratios as JSON (``--out`` also
writes it). Speed is reported here, never asserted in tests.
"""
import argparse
import json
import os.path as osp
import sys
import time
from typing import Callable, Dict, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import mopro  # noqa: E402,F401
from mopro.utils import atomic_path  # noqa: E402
from mopro.utils.runner import adapt_to_device, load_config  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--device', default=None,
                        help='default: cuda when available, else cpu')
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        action=__import__('mmengine').config.DictAction)
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def _time(step: Callable[[], None], iters: int, warmup: int,
          device: torch.device) -> float:
    """Seconds per call of ``step``, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def _peak_memory_mb(device: torch.device) -> Optional[float]:
    if device.type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def benchmark(args: argparse.Namespace) -> Dict:
    cfg = adapt_to_device(load_config(args))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    batch, size = args.batch_size, args.image_size
    num_classes = cfg.model.num_classes
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (batch, 3, size, size), generator=gen,
                            dtype=torch.uint8).to(device) for _ in range(2)]
    labels = torch.randint(0, num_classes, (batch, ), generator=gen)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    results = dict(device=(torch.cuda.get_device_name(device)
                           if device.type == 'cuda' else 'cpu'),
                   config=args.config, batch_size=batch, image_size=size,
                   optim_wrapper=cfg.optim_wrapper.get('type'),
                   channels_last=bool(cfg.model.get('channels_last')),
                   torch=torch.__version__)

    model = MODELS.build(cfg.model).to(device)
    model.train()
    model.use_proto_loss = model.correct_noise = True
    # non-zero prototypes so that noise correction does real work
    model.prototypes.copy_(F.normalize(torch.randn_like(model.prototypes),
                                       dim=1))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    data = dict(inputs=images, data_samples=samples)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    sec = _time(lambda: model.train_step(data, optim), args.iters,
                args.warmup, device)
    results['mopro'] = dict(img_per_s=batch / sec, ms_per_iter=1e3 * sec,
                            peak_memory_mb=_peak_memory_mb(device))
    del optim

    def supervised_step(extra_forward: bool) -> Callable[[], None]:
        def step() -> None:
            with sup_optim.optim_context(model):
                inputs = model.data_preprocessor(
                    dict(inputs=images, data_samples=None), True)['inputs']
                logits = model.classifier(model.extract_feat(inputs[0])[-1])
                loss = F.cross_entropy(logits.float(), labels_dev)
                if extra_forward:
                    with torch.no_grad():
                        model.momentum_encode(inputs[1])
            sup_optim.update_params(loss)
        return step

    labels_dev = labels.to(device)
    for name, extra in (('supervised', False),
                        ('supervised_plus_forward', True)):
        sup_optim = build_optim_wrapper(model, cfg.optim_wrapper)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        sec = _time(supervised_step(extra), args.iters, args.warmup, device)
        results[name] = dict(img_per_s=batch / sec, ms_per_iter=1e3 * sec,
                             peak_memory_mb=_peak_memory_mb(device))
    bound = results['supervised_plus_forward']['img_per_s']
    results['mopro_vs_bound'] = results['mopro']['img_per_s'] / bound
    results['mopro_vs_supervised'] = (results['mopro']['img_per_s'] /
                                      results['supervised']['img_per_s'])
    return results


def main(argv=None) -> Dict:
    args = parse_args(argv)
    try:
        results = benchmark(args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, 'w') as f:
            f.write(text + '\n')
    return results


if __name__ == '__main__':
    main()
