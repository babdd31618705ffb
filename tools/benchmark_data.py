#!/usr/bin/env python
"""Time the two-view training pipeline per CPU core, against the original.

    python tools/benchmark_data.py configs/mopro_r50_webvision_v1.py \\
        --iters 6000 --out benchmarks/data_loading_cpu.json

In one process and one thread (so the figures are per CPU core), over the
same JPEG files, cycled through, taking turns in blocks of images, it
times:
- ``project``: the config's ``train_dataloader.dataset.pipeline`` as the
  dataset runs it (``LoadWebImage``, the weak/strong ``MultiView``,
  ``PackInputs``), fed the dicts ``get_data_info`` returns;
- ``released``: the released MoPro code's torchvision transforms on PIL
  images, both views of each image.
A two-view sample counts as one image. By default the images are real
photos at WebVision's size: random crops of the two JPEG photos
scikit-learn ships, resized to a 256-pixel short side and saved as JPEG
(quality 90) in a temporary folder; ``--images DIR`` uses the JPEGs in a
folder instead (e.g. WebVision's own files). It prints images/s per core,
the ratio of the two, and the CPU cores one GPU needs at 2600 images/s as
JSON (``--out`` also writes it). Speed is reported, never asserted in tests.
"""
import argparse
import glob
import json
import math
import os.path as osp
import platform
import tempfile
import time
from typing import Callable, Dict, List, Optional

import mopro  # noqa: F401  (first: mopro.utils.mmpretrain_compat)
import numpy as np
import PIL
import torch
import torchvision
from mmengine.config import DictAction
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmpretrain.registry import TRANSFORMS
from PIL import Image
from torchvision import transforms as T

from mopro.utils import write_json
from mopro.utils.runner import load_config

GPU_IMG_PER_S = 2600  # the training step's goal on one H100 (ResNet-50)
SHORT_SIDE = 256  # WebVision's resized images
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
JPEG_SUFFIXES = ('.jpg', '.jpeg')


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
    args = parser.parse_args(argv)
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
        raise SystemExit(f'error: {directory}: image folder not found')
    paths = sorted(p for p in glob.glob(osp.join(directory, '*'))
                   if p.lower().endswith(JPEG_SUFFIXES) and osp.isfile(p))
    if not paths:
        raise SystemExit(f'error: {directory}: no JPEG files (*.jpg, '
                         '*.jpeg) in this folder')
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


def benchmark(args: argparse.Namespace, paths: List[str],
              source: str) -> Dict:
    cfg = load_config(args)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    single_thread()
    runs = dict(project=project_pipeline(cfg), released=released_pipeline())
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    results = dict(config=args.config, cpu=cpu_model(), threads=1,
                   images=describe_images(paths, source), iters=args.iters,
                   warmup=args.warmup, block=args.block)
    results.update(time_pipelines(runs, paths, args))
    results['project']['output'] = (
        'two uint8 CHW tensors; float conversion and normalisation are left '
        'to the data preprocessor on the GPU (as shipped)')
    results['released']['output'] = (
        'two normalised float32 CHW tensors, computed on the CPU (as '
        'shipped)')
    rate = results['project']['img_per_s_per_core']
    results['project_vs_released'] = (
        rate / results['released']['img_per_s_per_core'])
    results['gpu_img_per_s'] = GPU_IMG_PER_S
    results['cores_per_gpu_for_2600_img_s'] = math.ceil(GPU_IMG_PER_S / rate)
    results['versions'] = versions()
    return results


def main(argv=None) -> Optional[Dict]:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        raise SystemExit(f'error: {args.config}: config file not found')
    if args.images:
        paths = list_jpegs(args.images, args.num_images)
        results = benchmark(args, paths, osp.abspath(args.images))
    else:
        with tempfile.TemporaryDirectory() as directory:
            paths = make_photos(directory, args.num_images, args.seed)
            results = benchmark(
                args, paths, 'crops of scikit-learn sample photos '
                '(china.jpg, flower.jpg), 256 px short side, JPEG q90')
    print(json.dumps(results, indent=2))
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == '__main__':
    main()
