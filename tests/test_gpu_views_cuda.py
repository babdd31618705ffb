"""The GPU data path on a GPU: nvjpeg decoding and the views made there
equal the CPU path's (same code, same seed) within stated tolerances; the
mixed bad-image batch on the GPU. Skipped without CUDA."""
import io
import os.path as osp

import pytest
import torch
from mmengine.dataset import pseudo_collate
from test_gpu_views import (MEAN, STD, dirty_files, photos, strong_params,
                            to_float)
from torchvision.io import ImageReadMode, decode_jpeg

from mopro.datasets.transforms import (LoadWebImageBytes, apply_view,
                                       resized_crops)
from mopro.models.utils import MoProGPUViewsPreprocessor

pytestmark = pytest.mark.gpu


def _jpegs(num: int) -> list:
    out = []
    for image in photos(num, 96, 64):
        buf = io.BytesIO()
        image.save(buf, 'JPEG', quality=90)
        out.append(torch.frombuffer(bytearray(buf.getvalue()),
                                    dtype=torch.uint8))
    return out


def test_nvjpeg_decodes_as_libjpeg():
    """nvjpeg and libjpeg differ in IDCT and chroma upsampling: within 2
    grey levels on average, 40 at most (at colour edges of 4:2:0 chroma)."""
    data = _jpegs(16)
    on_gpu = decode_jpeg(data, mode=ImageReadMode.RGB, device='cuda')
    on_cpu = decode_jpeg(data, mode=ImageReadMode.RGB)
    for gpu, cpu in zip(on_gpu, on_cpu):
        diff = (gpu.cpu().float() - cpu.float()).abs()
        assert diff.mean() <= 2.0 and diff.max() <= 40


def test_views_on_gpu_equal_views_on_cpu():
    """Same images, same parameters: the GPU computes the CPU's views up
    to float rounding."""
    images = [to_float(im) for im in photos(16)]
    params = strong_params(torch.tensor([[43, 64]] * 16))
    on_cpu = apply_view(resized_crops(images, params.boxes, 32), params)
    on_gpu = apply_view(
        resized_crops([im.cuda() for im in images], params.boxes, 32),
        params.to(torch.device('cuda')))
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=0)


def test_preprocessor_on_gpu_matches_cpu_for_the_same_seed():
    """Bytes in, normalised views out, on both devices with one seed (the
    GPU's views compiled, as the GPU config has them): the only difference
    left is nvjpeg's decoding (mean within 2 levels)."""
    data = dict(inputs=_jpegs(16), data_samples=None)
    views = {}
    for device in ('cpu', 'cuda'):  # on the GPU as configured: compiled
        preprocessor = MoProGPUViewsPreprocessor(
            mean=MEAN, std=STD, crop_size=64, seed=3,
            compile_views=device == 'cuda').to(device)
        views[device] = [v.cpu() for v in preprocessor(data, True)['inputs']]
    for cpu, gpu in zip(views['cpu'], views['cuda']):
        levels = (cpu - gpu).abs() * torch.tensor(STD).view(1, 3, 1, 1)
        assert levels.mean() <= 2.0


def test_mixed_bad_batch_on_gpu(tmp_path):
    """Every kind of file the workers pass on (bytes of baseline JPEGs,
    pixels of the rest) plus a JPEG no decoder takes, in one batch."""
    transform = LoadWebImageBytes()
    entries = []
    for name, data in dirty_files().items():
        if name in ('undecodable', 'empty'):
            continue  # the dataset skips these (tests/test_gpu_views.py)
        path = osp.join(str(tmp_path), name + '.jpg')
        with open(path, 'wb') as f:
            f.write(data)
        entries.append(transform(dict(img_path=path))['img'])
    baseline = dirty_files()['baseline']
    broken = baseline[:baseline.index(b'\xff\xda')] + b'\xff\xd9'
    entries.append(torch.frombuffer(bytearray(broken), dtype=torch.uint8))
    preprocessor = MoProGPUViewsPreprocessor(
        mean=MEAN, std=STD, crop_size=32).cuda()
    out = preprocessor(pseudo_collate([dict(inputs=e) for e in entries]),
                       True)
    for view in out['inputs']:
        assert view.is_cuda and view.shape == (len(entries), 3, 32, 32)
        assert torch.isfinite(view).all()
    assert preprocessor.num_bad == 1
    assert preprocessor.num_images == len(entries)
