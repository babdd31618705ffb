"""The Triton crop-and-resize kernel (mopro.gpu_data.resize_kernel) on the
CPU, under Triton's interpreter: it equals the batched matrix products
(``resized_crops``) and torchvision's ``resized_crop(antialias=True)``;
written mirrored, normalised and in the step's dtype and layout it equals
``make_view``'s weak view; through the preprocessor the views equal the
matrix products' for the same seed, in as many operators for 32 as for 256
images. On CUDA (``gpu``): the same against the matrix products there.

The interpreter is chosen when Triton's kernels are defined (at import),
so the kernel runs in a subprocess started with ``TRITON_INTERPRET=1``:
this file run as a script computes its outputs into a file
(:func:`interpreted_outputs`), and the tests compare them.
"""
import os
import os.path as osp
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import Future

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from mopro.gpu_data import MoProGPUViewsPreprocessor
from mopro.gpu_data.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.gpu_data.decoding import decode_packed
from mopro.gpu_data.preprocessor import make_view
from mopro.gpu_data.views import (ViewParams, pack_images, resized_crops,
                                  sample_view_params)
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.commands import user_env
from helpers.gpu_views import MEAN, STD, dirty_files, packed_batch

# output sides: mostly down- and mostly up-sampling (and, past the
# kernel's 32-pixel tile, two tiles per side)
SIZES = (16, 40)


def kernel_images() -> list:
    """Four uint8 RGB images of different sizes (one batch), random
    pixels."""
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                      generator=generator)
        for h, w in ((20, 30), (37, 25), (9, 44), (50, 50))
    ]


def kernel_boxes(sizes: torch.Tensor) -> torch.Tensor:
    """Boxes smaller and larger than the outputs: sampled ones, the whole
    image, 1-pixel-wide and 1-pixel-high boxes on the right and bottom
    edges, a box in the top-left corner; each image gets several."""
    sampled = sample_view_params(sizes, torch.Generator().manual_seed(1)).boxes
    height, width = sizes[:, 0], sizes[:, 1]
    whole = torch.stack(
        [torch.zeros_like(height),
         torch.zeros_like(width), height, width], 1)
    column = torch.stack(
        [torch.zeros_like(height), width - 1, height,
         torch.ones_like(width)], 1)
    row = torch.stack(
        [height - 1,
         torch.zeros_like(width),
         torch.ones_like(height), width], 1)
    corner = torch.stack([
        torch.zeros_like(height),
        torch.zeros_like(width), (height + 1) // 2, (width + 2) // 3
    ], 1)
    return torch.cat([sampled, whole, column, row, corner])


def kernel_batch():
    """The images repeated once per kind of box, packed without padding
    (the kernel needs none), with their boxes."""
    images = kernel_images()
    boxes = kernel_boxes(torch.tensor([im.shape[1:] for im in images]))
    images = images * (len(boxes) // len(images))
    flat, offsets, sizes = pack_images(images)
    flat = flat[:-int(sizes[:, 1].max())]
    return images, flat, offsets, sizes, boxes


def weak_params(boxes: torch.Tensor) -> ViewParams:
    return ViewParams(boxes, torch.arange(len(boxes)) % 2 == 0)


def preprocessor_batch(num: int, directory: str) -> dict:
    """A batch of ``num`` JPEGs and decoded pixels, decoded ahead (as
    DecodeAheadHook has it)."""
    files = dirty_files()
    data = packed_batch([files['baseline'], files['png']] * (num // 2),
                        directory)
    slot = data[SLOT_KEY] = DecodeSlot()
    slot.future = Future()
    slot.future.set_result(decode_packed(data['inputs'], 'cpu'))
    return data


def preprocessor_views(resample: str, data: dict) -> list:
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD, crop_size=16,
                                             seed=5, channels_last=True,
                                             resample=resample)
    return preprocessor(dict(data), True)['inputs']


def interpreted_outputs(path: str) -> None:
    """The kernel's outputs for the tests below (run with
    ``TRITON_INTERPRET=1``), saved to ``path``."""
    from mopro.gpu_data.resize_kernel import roi_resized_crops
    images, flat, offsets, sizes, boxes = kernel_batch()
    floats = torch.cat([im.reshape(-1) for im in images]).float() / 255
    out = dict(
        uint8={
            size: roi_resized_crops(flat, offsets, sizes, boxes, size, 1 / 255)
            for size in SIZES
        })
    out['float'] = {
        SIZES[0]: roi_resized_crops(floats, offsets, sizes, boxes, SIZES[0])
    }
    out['weak'] = roi_resized_crops(flat, offsets, sizes, boxes, SIZES[1], 1.0,
                                    weak_params(boxes).flip,
                                    torch.tensor(MEAN), torch.tensor(STD),
                                    torch.bfloat16, torch.channels_last)
    with tempfile.TemporaryDirectory() as directory:
        out['views'] = preprocessor_views('triton',
                                          preprocessor_batch(8, directory))
    torch.save(out, path)


@pytest.fixture(scope='module')
def interpreted(tmp_path_factory) -> dict:
    """:func:`interpreted_outputs`, from a subprocess under Triton's
    interpreter."""
    pytest.importorskip('triton')
    path = str(tmp_path_factory.mktemp('kernel') / 'outputs.pt')
    env = dict(user_env(), TRITON_INTERPRET='1',
               PYTHONPATH=os.pathsep.join([ROOT, osp.join(ROOT, 'tests')]))
    subprocess.run([sys.executable, __file__, path], env=env, check=True,
                   timeout=600)
    return torch.load(path)


@pytest.mark.slow
@pytest.mark.parametrize('size', SIZES)
def test_kernel_equals_the_matrix_products(interpreted, size):
    """uint8 pixels in, [0, 1] out: every box kind of ``kernel_boxes``
    (down- and up-sampling, edges, 1-pixel boxes), four image sizes in one
    batch, to 1e-5."""
    images, flat, offsets, sizes, boxes = kernel_batch()
    padded, _, _ = pack_images(images)
    ours = interpreted['uint8'][size]
    assert ours.shape == (len(boxes), 3, size, size)
    torch.testing.assert_close(
        ours, resized_crops(padded, offsets, sizes, boxes, size, 1 / 255),
        atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize('kind,size',
                         [('uint8', SIZES[0]), ('uint8', SIZES[1]),
                          ('float', SIZES[0])])
def test_kernel_equals_torchvision_resized_crop(interpreted, kind, size):
    """Each crop equals torchvision's ``resized_crop`` (bilinear,
    antialias=True) of its float image, to 1e-5: from the uint8 pixels
    (scaled by 1/255) and from float images."""
    images, _, _, _, boxes = kernel_batch()
    ours = interpreted[kind][size]
    for i, image in enumerate(images):
        top, left, height, width = boxes[i].tolist()
        theirs = TF.resized_crop(image.float() / 255, top, left, height, width,
                                 [size, size],
                                 interpolation=TF.InterpolationMode.BILINEAR,
                                 antialias=True)
        torch.testing.assert_close(ours[i], theirs, atol=1e-5, rtol=0,
                                   msg=lambda m: f'crop {i}: {m}')


@pytest.mark.slow
def test_kernel_makes_the_whole_weak_view(interpreted):
    """Written mirrored, normalised, in bfloat16 and channels-last: the
    weak view ``make_view`` makes of the matrix products' crops, within
    one bfloat16 step (values up to ~2.7)."""
    images, flat, offsets, sizes, boxes = kernel_batch()
    padded, _, _ = pack_images(images)
    size = SIZES[1]
    ours = interpreted['weak']
    assert ours.dtype == torch.bfloat16
    assert ours.is_contiguous(memory_format=torch.channels_last)
    theirs = make_view(
        resized_crops(padded, offsets, sizes, boxes, size, 1 / 255),
        weak_params(boxes),
        torch.tensor(MEAN).view(3, 1, 1),
        torch.tensor(STD).view(3, 1, 1), torch.float32,
        torch.contiguous_format)
    torch.testing.assert_close(ours.float(), theirs, atol=0.016, rtol=0)


@pytest.mark.slow
def test_preprocessor_views_by_the_kernel_equal_the_matrix_products(
        interpreted, tmp_path):
    """``resample='triton'`` against ``'matmul'``, the same seed and batch
    (JPEGs and decoded pixels): both views equal to float rounding (the
    strong view's crops written mirrored, its flip pass dropped)."""
    data = preprocessor_batch(8, str(tmp_path))
    for ours, theirs in zip(interpreted['views'],
                            preprocessor_views('matmul', data)):
        assert ours.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_auto_falls_back_to_the_matrix_products(tmp_path, monkeypatch):
    """A kernel that fails at its first batch (as where Triton cannot build
    it for the GPU): ``'auto'`` warns once and makes the matrix products'
    views, from then on without trying the kernel again; ``'triton'``
    raises the kernel's error."""
    resize_kernel = pytest.importorskip('mopro.gpu_data.resize_kernel')
    launches = []

    class Unbuildable:

        def __getitem__(self, grid):

            def launch(*args, **kwargs):
                launches.append(grid)
                raise RuntimeError('no Triton backend for this GPU')

            return launch

    monkeypatch.setattr(resize_kernel, '_roi_resize_kernel', Unbuildable())
    monkeypatch.setattr(resize_kernel, 'runs_on', lambda device: True)
    data = preprocessor_batch(4, str(tmp_path))

    def preprocessor(resample):
        return MoProGPUViewsPreprocessor(mean=MEAN, std=STD, crop_size=16,
                                         seed=5, resample=resample)

    auto, matmul = preprocessor('auto'), preprocessor('matmul')
    with pytest.warns(UserWarning, match='the Triton resize failed'):
        views = [auto(dict(data), True)['inputs']]
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        views.append(auto(dict(data), True)['inputs'])
    assert len(launches) == 1
    for ours in views:
        for view, theirs in zip(ours, matmul(dict(data), True)['inputs']):
            torch.testing.assert_close(view, theirs, atol=0, rtol=0)
    with pytest.raises(RuntimeError, match='no Triton backend'):
        preprocessor('triton')(dict(data), True)


@pytest.mark.parametrize('out_type,normalise', [('*fp32', False),
                                                ('*bf16', True),
                                                ('*fp32', True)])
def test_kernel_compiles_for_hopper(out_type, normalise, tmp_path,
                                    monkeypatch):
    """The interpreter runs the kernel's Python; Triton's compiler (no GPU
    needed) builds it for the H100/H200 (sm_90) as the preprocessor
    launches it: uint8 pixels in, float32 crops or the normalised view in
    bfloat16 out."""
    compiler = pytest.importorskip('triton.compiler')
    from triton import compile
    from triton.backends.compiler import GPUTarget

    from mopro.gpu_data import resize_kernel
    monkeypatch.setenv('TRITON_CACHE_DIR', str(tmp_path))
    signature = dict(flat_ptr='*u8', geometry_ptr='*i64', out_ptr=out_type,
                     mean_ptr='*fp32', std_ptr='*fp32', size='i32',
                     scale='fp32', stride_n='i32', stride_c='i32',
                     stride_y='i32', stride_x='i32', NORMALISE='constexpr',
                     BLOCK_Y='constexpr', BLOCK_X='constexpr')
    source = compiler.ASTSource(
        fn=resize_kernel._roi_resize_kernel, signature=signature,
        constexprs=dict(NORMALISE=normalise, BLOCK_Y=resize_kernel.BLOCK,
                        BLOCK_X=resize_kernel.BLOCK))
    kernel = compile(source, target=GPUTarget('cuda', 90, 32),
                     options=dict(num_warps=resize_kernel.NUM_WARPS))
    assert kernel.asm['cubin']


@pytest.mark.gpu
def test_kernel_on_cuda_equals_the_matrix_products(tmp_path):
    """On the GPU, compiled by Triton: the kernel's crops equal the matrix
    products' (float32, no TF32) to 1e-5, and the preprocessor's views
    (both paths, views compiled) to float rounding."""
    from mopro.gpu_data.resize_kernel import roi_resized_crops
    images, flat, offsets, sizes, boxes = kernel_batch()
    padded, _, _ = pack_images(images)
    for size in SIZES + (224, ):
        torch.testing.assert_close(
            roi_resized_crops(flat.cuda(), offsets, sizes, boxes, size,
                              1 / 255).cpu(),
            resized_crops(padded, offsets, sizes, boxes, size, 1 / 255),
            atol=1e-5, rtol=0)
    data = packed_batch([dirty_files()['baseline']] * 8, str(tmp_path))
    views = {}
    for resample in ('triton', 'matmul'):
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=32, seed=3,
                                                 channels_last=True,
                                                 compile_views=True,
                                                 resample=resample).cuda()
        views[resample] = preprocessor(dict(data), True)['inputs']
    for ours, theirs in zip(views['triton'], views['matmul']):
        assert ours.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


if __name__ == '__main__':
    np.seterr(all='ignore')  # the interpreter's masked lanes
    interpreted_outputs(sys.argv[1])


def test_resample_is_checked(tmp_path, monkeypatch):
    """An unknown ``resample`` fails when the preprocessor is built; the
    kernel asked for where it cannot run (a CPU without Triton's
    interpreter) fails at the first batch, before any view is made; both
    name the key."""
    with pytest.raises(ConfigError, match='data_preprocessor.resample'):
        MoProGPUViewsPreprocessor(resample='nearest')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    data = packed_batch([dirty_files()['baseline']] * 2, str(tmp_path))
    with pytest.raises(ConfigError, match="resample='triton'"):
        MoProGPUViewsPreprocessor(resample='triton')(data, True)
