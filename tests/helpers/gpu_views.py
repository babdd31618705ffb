"""Images, dirty web files, batches and configs of the GPU data path
(``configs/mopro_r50_webvision_v1_gpu_data.py``), shared by its CPU and
CUDA tests."""
import io
import os.path as osp
import threading
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.runner import Runner
from mmpretrain.registry import TRANSFORMS
from PIL import Image
from sklearn.datasets import load_sample_images

import mopro.gpu_data.decoding as jpeg_decoding
from mopro.datasets import packed_images_collate
from mopro.engine.launch import adapt_to_device
from mopro.gpu_data.decode_ahead import SLOT_KEY
from mopro.gpu_data.views import (ViewParams, pack_images, resized_crops,
                                  sample_view_params)
from . import ROOT
from .configs import tiny_mopro_options
from .data import make_webvision

GPU_DATA = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1_gpu_data.py')
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
JITTER = (0.4, 0.4, 0.4, 0.4)
ADJUST = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation,
          TF.adjust_hue)


def photos(num: int, width: int = 64, height: int = 43) -> list:
    """Small RGB PIL crops of scikit-learn's two sample photos."""
    base = load_sample_images().images
    out = []
    for i in range(num):
        photo = base[i % 2][(i // 2) * 7:, (i // 2) * 11:]
        out.append(
            Image.fromarray(photo).resize((width, height), Image.BICUBIC))
    return out


def to_float(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def crops_of(images: list, boxes: torch.Tensor, size: int,
             scale: float = 1.0) -> torch.Tensor:
    """``resized_crops`` of a list of images (packed as the decoder packs
    them)."""
    flat, offsets, sizes = pack_images(images)
    return resized_crops(flat, offsets, sizes, boxes, size, scale)


def mixed_photos(num: int) -> list:
    """``photos`` of several sizes (a batch of web images differs)."""
    return [
        photos(1, 64 - 7 * (i % 3), 43 + 9 * (i % 4))[0] for i in range(num)
    ]


def sizes_of(images: list) -> torch.Tensor:
    return torch.tensor([(im.height, im.width) for im in images])


def strong_params(sizes, seed=0) -> ViewParams:
    return sample_view_params(sizes,
                              torch.Generator().manual_seed(seed),
                              gray_prob=0.2, jitter=JITTER)


def reference_view(image, params: ViewParams, i: int, size: int):
    """The released transforms, one image, with sample ``i``'s parameters
    (torchvision functionals: on PIL images or on float tensors)."""
    top, left, height, width = params.boxes[i].tolist()
    out = TF.resized_crop(image, top, left, height, width, [size, size],
                          interpolation=TF.InterpolationMode.BILINEAR,
                          antialias=True)
    if params.gray is not None and params.gray[i]:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    if params.order is not None:
        for op in params.order[i].tolist():
            out = ADJUST[op](out, float(params.factors[i, op]))
    return TF.hflip(out) if params.flip[i] else out


def encode_image(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(array)
    if fmt == 'CMYK':
        image, fmt = image.convert('CMYK'), 'JPEG'
    elif fmt == 'GIF':
        image = image.convert('P')
    elif fmt == 'GREY':
        image, fmt = image.convert('L'), 'JPEG'
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def dirty_files() -> dict:
    """One file of each kind found in WebVision (all named .jpg there)."""
    rgb = np.asarray(photos(1, 48, 40)[0])
    baseline = encode_image(rgb, 'JPEG', quality=90)
    return dict(
        baseline=baseline, progressive=encode_image(rgb, 'JPEG', quality=90,
                                                    progressive=True),
        cmyk=encode_image(rgb, 'CMYK'), grey=encode_image(rgb, 'GREY'),
        png=encode_image(rgb, 'PNG'), gif=encode_image(rgb, 'GIF'),
        truncated=baseline[:len(baseline) * 2 // 3],
        undecodable=b'<html>404 not found</html>', empty=b'')


def no_scan(jpeg: bytes) -> bytes:
    """A JPEG cut before its scan, EOI appended: a header without image
    data, which nvjpeg decodes without an error (seen on an H200)."""
    return jpeg[:jpeg.index(b'\xff\xda')] + b'\xff\xd9'


# bytes that reach the batch decoder only if injected past the workers'
# check (baseline_jpeg_size): no decoder, nvjpeg, libjpeg or PIL, takes them
REJECTED_BY_EVERY_DECODER = b'\xff\xd8' + bytes(64) + b'\xff\xd9'


def dirty_webvision(root: str) -> list:
    """A tiny WebVision whose training files are, in turn, each kind."""
    make_webvision(root, num_classes=2, per_class=10, size=40)
    lines = []
    for source in ('google', 'flickr'):
        with open(osp.join(root, 'info', f'train_filelist_{source}.txt')) as f:
            lines += [line.split()[0] for line in f]
    kinds = list(dirty_files().items())
    for i, rel in enumerate(lines):
        with open(osp.join(root, rel), 'wb') as f:
            f.write(kinds[i % len(kinds)][1])
    return [kinds[i % len(kinds)][0] for i in range(len(lines))]


def packed_batch(files: list, directory: str,
                 rejected: Sequence[int] = ()) -> dict:
    """The batch the GPU-data config's workers hand over for these file
    contents: each written to ``directory``, loaded by its pipeline
    (``LoadWebImageBytes``, ``PackInputs``) and collated by
    ``packed_images_collate``; the entries at ``rejected`` replaced by
    bytes no decoder takes (``REJECTED_BY_EVERY_DECODER``)."""
    pipeline = Config.fromfile(GPU_DATA).train_pipeline
    load = Compose([TRANSFORMS.build(t) for t in pipeline])
    samples = []
    for i, data in enumerate(files):
        path = osp.join(directory, f'{i:04d}.jpg')
        with open(path, 'wb') as f:
            f.write(data)
        samples.append(load(dict(img_path=path, gt_label=i % 3)))
    for i in rejected:
        samples[i]['inputs'] = torch.frombuffer(
            bytearray(REJECTED_BY_EVERY_DECODER), dtype=torch.uint8)
    return packed_images_collate(samples)


def gpu_data_cfg(data_root: str, work_dir: str, max_iters: int,
                 **preprocessor) -> Config:
    """The GPU-data config shrunk to a CPU run of ``max_iters``."""
    cfg = Config.fromfile(GPU_DATA)
    options = tiny_mopro_options(data_root, work_dir)
    for key in [
            k for k in options
            if '.pipeline.1.' in k and k.startswith('train_')
    ]:
        del options[key]
    options['model.data_preprocessor.crop_size'] = 32
    options.update({
        f'model.data_preprocessor.{k}': v
        for k, v in preprocessor.items()
    })
    cfg.merge_from_dict(options)
    cfg.experiment_name = osp.basename(work_dir)
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.launcher = 'none'
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        by_epoch=False)
    return adapt_to_device(cfg)


def train_recording(cfg: Config, monkeypatch) -> tuple:
    """Train; per training iteration its images' paths, whether its
    decoding had started before the preprocessor took it, and its views;
    per decoded batch, the thread that decoded it and its paths."""
    runner = Runner.from_cfg(cfg)
    preprocessor = runner.model.data_preprocessor
    forward, seen, decoded = preprocessor.forward, [], []
    decode_packed = jpeg_decoding.decode_packed

    def recording(data, training=False):
        slot = data.get(SLOT_KEY)
        started = slot is not None and slot.future is not None
        out = forward(data, training)
        if training:  # not the validation at the end
            seen.append((data['inputs'].paths, started,
                         [view.clone() for view in out['inputs']]))
        return out

    def decoding(packed, *args, **kwargs):
        decoded.append((threading.current_thread().name, packed.paths))
        return decode_packed(packed, *args, **kwargs)

    preprocessor.forward = recording
    monkeypatch.setattr('mopro.gpu_data.preprocessor.decode_packed', decoding)
    runner.train()
    monkeypatch.undo()
    return seen, decoded
