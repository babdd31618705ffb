"""The GPU data path's semantics, on the CPU (the same code): the released
torchvision transforms' parameter distributions, views equal to
torchvision's for fixed parameters (and to PIL's within a stated
tolerance), a fixed number of operators per batch, tolerant decoding of a
batch of dirty web images, seeding, and Runner trains through the GPU-data
config (decoding one batch ahead, resuming)."""
import copy
import io
import os.path as osp
import threading
from concurrent.futures import Future
from typing import Sequence

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import ROOT, make_webvision, tiny_mopro_options
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import MessageHub
from mmengine.runner import Runner
from mmpretrain.registry import TRANSFORMS
from PIL import Image
from scipy import stats
from sklearn.datasets import load_sample_images
from torchvision import transforms as T

import mopro.models.utils.jpeg_decoding as jpeg_decoding
from mopro.analysis.timing import count_operators
from mopro.datasets import WebVision, packed_images_collate
from mopro.datasets.transforms import (ViewParams, apply_view,
                                       baseline_jpeg_size, pack_images,
                                       resized_crops, sample_view_params)
from mopro.models.utils import MoProGPUViewsPreprocessor
from mopro.models.utils.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.models.utils.gpu_views_preprocessor import (compiled_make_view,
                                                       make_view)
from mopro.utils.runner import adapt_to_device

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
        out.append(Image.fromarray(photo).resize((width, height),
                                                 Image.BICUBIC))
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
    return [photos(1, 64 - 7 * (i % 3), 43 + 9 * (i % 4))[0]
            for i in range(num)]


def sizes_of(images: list) -> torch.Tensor:
    return torch.tensor([(im.height, im.width) for im in images])


def strong_params(sizes, seed=0) -> ViewParams:
    return sample_view_params(sizes, torch.Generator().manual_seed(seed),
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


# ---------------------------------------------------------------- sampling
def test_crop_boxes_follow_torchvision_distribution():
    """Area fraction, log aspect ratio and offsets against
    ``RandomResizedCrop.get_params`` (two-sample KS, p > 1e-3), for a
    common and an extreme image shape (where the centre-crop fallback
    happens as often as in torchvision)."""
    n = 4000
    torch.manual_seed(0)
    for height, width in ((43, 64), (12, 200)):
        ours = sample_view_params(torch.tensor([[height, width]] * n),
                                  torch.Generator().manual_seed(1)).boxes
        theirs = torch.tensor([
            T.RandomResizedCrop.get_params(
                torch.empty(1, height, width), (0.2, 1.0), (3 / 4, 4 / 3))
            for _ in range(n)
        ])
        for stat in (lambda b: b[:, 2] * b[:, 3],
                     lambda b: torch.log(b[:, 3] / b[:, 2]),
                     lambda b: b[:, 0], lambda b: b[:, 1]):
            p = stats.ks_2samp(stat(ours.double()).numpy(),
                               stat(theirs.double()).numpy()).pvalue
            assert p > 1e-3, (height, width, p)
        assert (ours[:, 0] + ours[:, 2] <= height).all()
        assert (ours[:, 1] + ours[:, 3] <= width).all()
        assert (ours[:, 2:] > 0).all()
    # 12 x 200: no draw fits, as in torchvision: the fallback is the
    # centre crop clamped to ratio 4/3 (12 x 16)
    fallback = (ours == torch.tensor([0, 92, 12, 16])).all(1).float().mean()
    theirs_fb = (theirs == torch.tensor([0, 92, 12, 16])).all(1).float()
    assert abs(fallback - theirs_fb.mean()) < 0.03


def test_flip_grayscale_and_jitter_parameters():
    """Rates within 4 standard errors of 0.5 and 0.2; factors uniform in
    [0.6, 1.4] (hue [-0.4, 0.4]) by KS; the order a uniformly random
    permutation per image (all 24 seen, each within 25% of 1/24)."""
    n = 20000
    params = strong_params(torch.tensor([[43, 64]] * n))
    for rate, p in ((params.flip.float().mean(), 0.5),
                    (params.gray.float().mean(), 0.2)):
        assert abs(rate - p) < 4 * (p * (1 - p) / n)**0.5
    for column, (low, high) in enumerate([(0.6, 1.4)] * 3 + [(-0.4, 0.4)]):
        values = params.factors[:, column].double().numpy()
        assert low <= values.min() and values.max() <= high
        assert stats.kstest(values, 'uniform', (low, high - low)).pvalue \
            > 1e-3
    assert (params.order.sort(dim=1).values == torch.arange(4)).all()
    _, counts = torch.unique(params.order, dim=0, return_counts=True)
    assert len(counts) == 24
    assert (counts.float() / n - 1 / 24).abs().max() < 0.25 / 24


def test_weak_view_has_no_colour_parameters():
    params = sample_view_params(torch.tensor([[43, 64]] * 4),
                                torch.Generator().manual_seed(0))
    assert params.gray is None and params.order is None


# ------------------------------------------------------ fixed parameters
def test_views_equal_torchvision_tensor_transforms():
    """With the same parameters, the batched views of images of several
    sizes (crops up- and downsampled) equal torchvision's functionals
    applied image by image on float tensors (to 1e-5)."""
    images = mixed_photos(24)
    params = strong_params(sizes_of(images))
    floats = [to_float(im) for im in images]
    views = apply_view(crops_of(floats, params.boxes, 32), params)
    for i, image in enumerate(floats):
        torch.testing.assert_close(
            views[i], reference_view(image, params, i, 32), atol=1e-5,
            rtol=0)


def test_jitter_order_is_per_sample():
    """One image, same factors, two orders: each output follows its own
    order (and they differ)."""
    image = to_float(photos(1)[0])
    params = ViewParams(
        boxes=torch.tensor([[0, 0, 43, 64]] * 2),
        flip=torch.tensor([False, False]),
        gray=torch.tensor([False, False]),
        order=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]),
        factors=torch.tensor([[1.4, 0.6, 1.4, 0.3]] * 2))
    views = apply_view(crops_of([image, image], params.boxes, 32), params)
    assert (views[0] - views[1]).abs().max() > 0.05
    for i in range(2):
        torch.testing.assert_close(
            views[i], reference_view(image, params, i, 32), atol=1e-5,
            rtol=0)


def test_views_match_pil_transforms_within_tolerance():
    """Against the released transforms on PIL images (8-bit), from the
    uint8 pixels as the preprocessor resamples them: the weak view (crop,
    resize, flip) within 1.5 grey levels everywhere (torchvision's
    antialiased bilinear vs PIL's); the strong view within 2 levels on
    average and 12 at the 99th percentile, PIL rounding to 8 bits after
    each adjustment and shifting hue in 8-bit HSV (up to ~10 levels on
    saturated colours)."""
    images = mixed_photos(32)
    sizes = sizes_of(images)
    pixels = [torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
              for im in images]
    weak = sample_view_params(sizes, torch.Generator().manual_seed(3))
    strong = strong_params(sizes, seed=4)
    diffs = {}
    for name, params in (('weak', weak), ('strong', strong)):
        views = apply_view(crops_of(pixels, params.boxes, 32, 1 / 255),
                           params)
        ours = (views * 255).permute(0, 2, 3, 1).numpy()
        ref = np.stack([
            np.asarray(reference_view(im, params, i, 32), dtype=np.float32)
            for i, im in enumerate(images)
        ])
        diffs[name] = np.abs(ours - ref)
    assert diffs['weak'].max() <= 1.5
    assert diffs['strong'].mean() <= 2.0
    assert np.percentile(diffs['strong'], 99) <= 12


def test_views_only_queue_device_work():
    """Resampling, grayscale, jitter, flip, normalisation and conversion
    read no value of the device's data: with the images on the meta device
    (tensors without values, where reading one raises) they run, and give
    the views' shape, dtype and memory format. The crop boxes and the
    parameters are host tensors by design (sampled on the CPU)."""
    images = [torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
              for im in mixed_photos(6)]
    flat, offsets, sizes = pack_images(images)
    params = strong_params(sizes)
    meta = torch.device('meta')
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD)
    crops = resized_crops(flat.to(meta), offsets, sizes, params.boxes, 32,
                          1 / 255)
    view = make_view(crops, params.to(meta), preprocessor.mean.to(meta),
                     preprocessor.std.to(meta), torch.bfloat16,
                     torch.channels_last)
    assert view.shape == (6, 3, 32, 32) and view.dtype == torch.bfloat16
    assert view.is_contiguous(memory_format=torch.channels_last)


def test_compiled_views_equal_eager_views():
    """``compile_views`` (the GPU config's setting) fuses the same
    computation: equal to eager within float rounding, for both views, in
    float32 and converted to bfloat16 channels-last."""
    images = [to_float(im) for im in mixed_photos(8)]
    sizes = torch.tensor([im.shape[1:] for im in images])
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD)
    mean, std = preprocessor.mean, preprocessor.std
    for params in (sample_view_params(sizes, torch.Generator()),
                   strong_params(sizes)):
        crops = crops_of(images, params.boxes, 32)
        for dtype, layout in ((torch.float32, torch.contiguous_format),
                              (torch.bfloat16, torch.channels_last)):
            eager = make_view(crops, params, mean, std, dtype, layout)
            compiled = compiled_make_view()(crops, params, mean, std,
                                            dtype, layout)
            assert compiled.dtype == dtype
            assert compiled.is_contiguous(memory_format=layout)
            torch.testing.assert_close(compiled.float(), eager.float(),
                                       atol=1e-4 if dtype == torch.float32
                                       else 0.02, rtol=0)
    assert compiled_make_view().compiled is not None  # no fallback


def test_a_copied_preprocessor_uses_its_own_parameters(tmp_path):
    """A deep copy (e.g. of the model) normalises with its own mean and
    std, compiled or not."""
    for compile_views in (False, True):
        original = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                             crop_size=16, seed=1,
                                             compile_views=compile_views)
        copied = copy.deepcopy(original)
        copied.mean.zero_()
        copied.std.fill_(1.0)
        data = packed_batch([dirty_files()['baseline']] * 2, str(tmp_path))
        ours = copied(dict(data), True)['inputs'][0]
        theirs = original(dict(data), True)['inputs'][0]
        # unnormalised views are in [0, 255]; the original's are not
        assert ours.min() >= 0 and ours.max() <= 255
        assert theirs.min() < 0
        torch.testing.assert_close(
            ours, theirs * original.std + original.mean, atol=1e-3, rtol=0)


def test_preprocessor_dispatches_as_many_operators_for_any_batch(tmp_path):
    """With the batch decoded ahead (as DecodeAheadHook has it), the
    preprocessor's work on the training thread is the same operators for
    32 and for 256 images: no operation per image."""
    files = dirty_files()
    counts = []
    for num in (32, 256):
        data = packed_batch([files['baseline'], files['png'],
                             files['baseline']] * (num // 4) +
                            [files['progressive']] * (num - 3 * (num // 4)),
                            str(tmp_path))
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=16)
        slot = data[SLOT_KEY] = DecodeSlot()  # decoded ahead
        slot.future = Future()
        slot.future.set_result(
            jpeg_decoding.decode_packed(data['inputs'], 'cpu'))
        ops = count_operators(lambda: preprocessor(data, True))
        assert preprocessor.num_images == num
        counts.append(ops)
    assert counts[0] == counts[1]


# --------------------------------------------------------- dirty web images
def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
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
    baseline = _encode(rgb, 'JPEG', quality=90)
    return dict(
        baseline=baseline,
        progressive=_encode(rgb, 'JPEG', quality=90, progressive=True),
        cmyk=_encode(rgb, 'CMYK'),
        grey=_encode(rgb, 'GREY'),
        png=_encode(rgb, 'PNG'),
        gif=_encode(rgb, 'GIF'),
        truncated=baseline[:len(baseline) * 2 // 3],
        undecodable=b'<html>404 not found</html>',
        empty=b'')


def no_scan(jpeg: bytes) -> bytes:
    """A JPEG cut before its scan, EOI appended: a header without image
    data, which nvjpeg decodes without an error (seen on an H200)."""
    return jpeg[:jpeg.index(b'\xff\xda')] + b'\xff\xd9'


# bytes that reach the batch decoder only if injected past the workers'
# check (baseline_jpeg_size): no decoder, nvjpeg, libjpeg or PIL, takes them
REJECTED_BY_EVERY_DECODER = b'\xff\xd8' + bytes(64) + b'\xff\xd9'


def test_only_complete_baseline_jpegs_go_to_the_gpu_decoder():
    files = dirty_files()
    baseline = files.pop('baseline')
    assert baseline_jpeg_size(baseline) == (40, 48)
    files.update(no_scan=no_scan(baseline),
                 rejected=REJECTED_BY_EVERY_DECODER)
    for name, data in files.items():
        assert baseline_jpeg_size(data) is None, name


def _dirty_webvision(root: str) -> list:
    """A tiny WebVision whose training files are, in turn, each kind."""
    make_webvision(root, num_classes=2, per_class=10, size=40)
    lines = []
    for source in ('google', 'flickr'):
        with open(osp.join(root, 'info',
                           f'train_filelist_{source}.txt')) as f:
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


def test_mixed_bad_image_batch_never_fails(tmp_path):
    """One batch of every kind through LoadWebImageBytes,
    packed_images_collate and the preprocessor: the undecodable and empty
    files are skipped and counted by the dataset (as with LoadWebImage),
    the rest decode (bytes or CPU-decoded pixels) and make both views; a
    JPEG that passes the sniff but that no decoder takes is isolated,
    replaced and counted."""
    kinds = _dirty_webvision(str(tmp_path / 'wv'))
    dataset = WebVision(
        data_root=str(tmp_path / 'wv'), split='train', num_classes=2,
        pipeline=Config.fromfile(GPU_DATA).train_pipeline)
    samples = [dataset.prepare_data(i) for i in range(len(dataset))]
    assert [s is None for s in samples] == [
        k in ('undecodable', 'empty') for k in kinds]
    assert dataset.num_bad == kinds.count('undecodable') + kinds.count(
        'empty')
    samples = [s for s in samples if s is not None]
    as_bytes = [s['inputs'].ndim == 1 for s in samples]
    assert sum(as_bytes) == kinds.count('baseline')
    # an entry no decoder takes, injected past the workers' check
    samples[3]['inputs'] = torch.frombuffer(
        bytearray(REJECTED_BY_EVERY_DECODER), dtype=torch.uint8)
    batch = packed_images_collate(samples)
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                             crop_size=32)
    out = preprocessor(batch, True)
    for view in out['inputs']:
        assert view.shape == (len(samples), 3, 32, 32)
        assert torch.isfinite(view).all()
    assert preprocessor.num_bad == 1
    assert preprocessor.num_images == len(samples)
    assert torch.equal(out['data_samples'], batch['data_samples'])
    # the replaced entry is a copy of the first image of the batch
    decoded = jpeg_decoding.decode_packed(batch['inputs'], 'cpu')
    assert decoded.bad == [3]
    assert torch.equal(decoded.sizes[3], decoded.sizes[0])


def test_max_bad_fraction_still_stops_a_broken_dataset(tmp_path):
    root = str(tmp_path / 'wv')
    make_webvision(root, num_classes=2, per_class=60, size=8)
    with open(osp.join(root, 'info', 'train_filelist_flickr.txt')) as f:
        for line in f:  # the second half of the files are HTML pages
            with open(osp.join(root, line.split()[0]), 'wb') as img:
                img.write(b'<html></html>')
    dataset = WebVision(
        data_root=root, split='train', num_classes=2, max_bad_fraction=0.1,
        pipeline=Config.fromfile(GPU_DATA).train_pipeline)
    with pytest.raises(RuntimeError, match='max_bad_fraction=0.1'):
        for i in range(len(dataset)):
            dataset.prepare_data(i)
    # and the preprocessor's own count of images no decoder takes
    good = dirty_files()['baseline']
    preprocessor = MoProGPUViewsPreprocessor(max_bad_fraction=0.1)
    batch = packed_batch([good] * 20, str(tmp_path), rejected=range(1, 20))
    with pytest.raises(RuntimeError, match='data_preprocessor.max_bad'):
        for _ in range(6):
            preprocessor.decode(batch['inputs'])


# ------------------------------------------------------------------ seeding
def test_views_depend_on_seed_rank_and_iteration_only(monkeypatch,
                                                      tmp_path):
    """Inside a training loop the views of iteration k are the same
    whatever ran before (so a resumed run repeats them); ranks differ."""
    data = packed_batch([dirty_files()['baseline']] * 4, str(tmp_path))
    hub = MessageHub.get_instance('test_gpu_views_seed')
    hub.update_info('loop_stage', 'train')

    def views_at(iteration, rank=0, warmup=0):
        monkeypatch.setattr(
            'mopro.models.utils.gpu_views_preprocessor.get_rank',
            lambda: rank)
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=16, seed=7)
        for step in range(warmup):
            hub.update_info('iter', step)
            preprocessor(data, True)
        hub.update_info('iter', iteration)
        return preprocessor(data, True)['inputs'][1]

    try:
        fresh = views_at(3)
        torch.testing.assert_close(views_at(3, warmup=3), fresh)
        assert not torch.equal(views_at(4), fresh)
        assert not torch.equal(views_at(3, rank=1), fresh)
    finally:
        hub.pop_info('loop_stage')


# ------------------------------------------------------------------ Runner
def gpu_data_cfg(data_root: str, work_dir: str, max_iters: int,
                 **preprocessor) -> Config:
    """The GPU-data config shrunk to a CPU run of ``max_iters``."""
    cfg = Config.fromfile(GPU_DATA)
    options = tiny_mopro_options(data_root, work_dir)
    for key in [k for k in options if '.pipeline.1.' in k and
                k.startswith('train_')]:
        del options[key]
    options['model.data_preprocessor.crop_size'] = 32
    options.update({f'model.data_preprocessor.{k}': v
                    for k, v in preprocessor.items()})
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


def test_gpu_data_config_trains_through_the_runner(tmp_path):
    """The GPU-data config as shipped (compiled views), shrunk, trains 2
    iterations on the CPU; its batches are bytes/pixels and the
    preprocessor makes the views."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    runner = Runner.from_cfg(gpu_data_cfg(root, str(tmp_path / 'work'), 2))
    assert type(runner.model.data_preprocessor).__name__ == \
        'MoProGPUViewsPreprocessor'
    runner.train()
    assert int(runner.model.queue_ptr) == 8
    assert runner.model.data_preprocessor._calls == 2


def _train_recording(cfg: Config, monkeypatch) -> tuple:
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
    monkeypatch.setattr(
        'mopro.models.utils.gpu_views_preprocessor.decode_packed', decoding)
    runner.train()
    monkeypatch.undo()
    return seen, decoded


def test_batches_are_decoded_one_ahead_in_the_background(tmp_path,
                                                         monkeypatch):
    """Through the Runner (DecodeAheadHook), each batch after the first is
    being decoded, in the background thread, before the preprocessor takes
    it; the views equal those of the same run decoding each batch when it
    is used (no hook)."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    ahead, decoded = _train_recording(
        gpu_data_cfg(root, str(tmp_path / 'ahead'), 3), monkeypatch)
    assert [started for _, started, _ in ahead] == [False, True, True]
    # the three batches, then the one after the last (fetched ahead)
    assert [paths for _, paths in decoded[:3]] == \
        [paths for paths, _, _ in ahead]
    assert len(decoded) == 4
    assert all(name.startswith('decode_ahead') for name, _ in decoded)
    cfg = gpu_data_cfg(root, str(tmp_path / 'inline'), 3)
    del cfg.default_hooks.decode_ahead
    inline, decoded = _train_recording(cfg, monkeypatch)
    assert [started for _, started, _ in inline] == [False] * 3
    assert all(name == threading.current_thread().name
               for name, _ in decoded)
    for (paths, _, ours), (their_paths, _, theirs) in zip(ahead, inline):
        assert paths == their_paths
        for view, other in zip(ours, theirs):
            torch.testing.assert_close(view, other, atol=0, rtol=0)


def test_resumed_run_makes_the_same_views(tmp_path, monkeypatch):
    """Resumed from iteration 2's checkpoint, iteration 3 sees the batch and
    the views of the uninterrupted run (the sampler repeats the order; the
    views are seeded by iteration); the batches the resumed loop skips are
    never decoded."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    first = str(tmp_path / 'first')
    full, _ = _train_recording(gpu_data_cfg(root, first, 3), monkeypatch)
    cfg = gpu_data_cfg(root, str(tmp_path / 'second'), 3)
    cfg.resume, cfg.load_from = True, osp.join(first, 'iter_2.pth')
    resumed, decoded = _train_recording(cfg, monkeypatch)
    assert len(full) == 3 and len(resumed) == 1
    assert resumed[0][0] == full[2][0]
    for ours, theirs in zip(resumed[0][2], full[2][2]):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert not torch.equal(full[1][2][1], full[2][2][1])
    # iteration 2's batch and the one after it; not the skipped 0 and 1
    assert len(decoded) == 2 and decoded[0][1] == full[2][0]
