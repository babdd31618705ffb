"""Crop and antialiased resize of each image of a packed batch in one Triton
kernel: :func:`~mopro.gpu_data.views.resized_crops`' result without its
padding to the batch's largest box.

Each program makes a ``BLOCK`` x ``BLOCK`` tile of one image's output, all
three channels, straight from the packed uint8 pixels: per output pixel it
sums the taps of torchvision's antialiased bilinear filter over the rows
and columns of its input window (the weights that
:func:`~mopro.gpu_data.views.antialias_weights` documents, computed in
float32 as ATen computes them, normalised per axis). The work is N
x 3 x S x S outputs times taps, the taps of each image its own (a window is
``2 max(1, box / S)`` samples wide), whatever the largest box of the
batch; the memory traffic is the crops read once (L1 and L2 serve the taps'
overlap) and the output written once.

Why one pass and not two separable ones (rows into an N x 3 x h x S
intermediate, then columns): at WebVision's scales (boxes of ~100 to 341
pixels resized to 224) a window has 2 to 4 samples per axis, so one pass
reads 4 to 16 (cached) pixels per output and writes nothing else, while
two passes would write and re-read a float32 intermediate about as large
as the output (~150 MB for 256 images). For much larger originals (boxes
several times the output) the taps grow quadratically and two passes would
win; such datasets are resized first (docs/speed.md).

The output can be written already mirrored (the flip is the column index)
and normalised, in the step's dtype and memory format: for the weak view
(crop, flip) this kernel is the whole view.
"""
from contextlib import nullcontext
from typing import Optional

import torch
import triton
import triton.language as tl

from .views import (CROP_H, CROP_W, FLIP, IMAGE_H, IMAGE_W, LEFT, OFFSET, TOP,
                    check_crops, crop_geometry, to_device)

BLOCK = 32  # the side of the output tile of one program (224 = 7 tiles)
# 4 outputs per thread: 112 registers on sm_90 by ptxas, no spills (168
# with 4 warps), so twice the resident warps; chosen by that count, not
# timed
NUM_WARPS = 8

_COLUMNS = tl.constexpr(FLIP + 1)
_OFFSET, _IMAGE_H, _IMAGE_W = (
    tl.constexpr(c) for c in (OFFSET, IMAGE_H, IMAGE_W))
_TOP, _LEFT, _CROP_H, _CROP_W, _FLIP = (
    tl.constexpr(c) for c in (TOP, LEFT, CROP_H, CROP_W, FLIP))


def runs_on(device: torch.device) -> bool:
    """Whether the kernel runs on ``device``: CUDA, or any device under
    Triton's interpreter (``TRITON_INTERPRET=1``, how the CPU tests run
    it)."""
    return device.type == 'cuda' or bool(triton.knobs.runtime.interpret)


@triton.jit
def _window(index, length, size):
    """The input window of output samples ``index`` along one axis of a
    crop of ``length`` samples resized to ``size``: its centre, the
    inverse of the filter's support, and the first and stop input samples
    (ATen's ``_upsample_bilinear2d_aa`` formulas, in float32)."""
    scale = length.to(tl.float32) / size
    support = tl.maximum(scale, 1.0)
    centre = scale * (index.to(tl.float32) + 0.5)
    first = tl.maximum((centre - support + 0.5).to(tl.int32), 0)
    stop = tl.minimum((centre + support + 0.5).to(tl.int32), length)
    return centre, 1.0 / support, first, stop


@triton.jit
def _tap(sample, centre, inv_support, stop):
    """The triangle filter's (unnormalised) weight of input ``sample``; 0
    at and past ``stop``."""
    weight = 1.0 - tl.abs((sample.to(tl.float32) - centre + 0.5) * inv_support)
    return tl.where(sample < stop, tl.maximum(weight, 0.0), 0.0)


@triton.jit
def _store(out, value, channel, stride_c, mask, mean_ptr, std_ptr,
           NORMALISE: tl.constexpr):
    if NORMALISE:
        value = (value - tl.load(mean_ptr + channel)) / tl.load(std_ptr +
                                                                channel)
    tl.store(out + channel * stride_c, value.to(out.dtype.element_ty),
             mask=mask)


@triton.jit
def _roi_resize_kernel(flat_ptr, geometry_ptr, out_ptr, mean_ptr, std_ptr,
                       size, scale, stride_n, stride_c, stride_y, stride_x,
                       NORMALISE: tl.constexpr, BLOCK_Y: tl.constexpr,
                       BLOCK_X: tl.constexpr):
    image = tl.program_id(0)
    row = geometry_ptr + image * _COLUMNS
    width = tl.load(row + _IMAGE_W)
    plane = tl.load(row + _IMAGE_H) * width
    crop_h, crop_w = tl.load(row + _CROP_H), tl.load(row + _CROP_W)
    corner = flat_ptr + tl.load(
        row + _OFFSET) + tl.load(row + _TOP) * width + tl.load(row + _LEFT)
    oy = tl.program_id(1) * BLOCK_Y + tl.arange(0, BLOCK_Y)
    ox = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)
    centre_y, inv_support_y, first_y, stop_y = _window(oy, crop_h, size)
    centre_x, inv_support_x, first_x, stop_x = _window(ox, crop_w, size)
    taps_y = tl.max(tl.where(oy < size, stop_y - first_y, 0), axis=0)
    taps_x = tl.max(tl.where(ox < size, stop_x - first_x, 0), axis=0)
    total_x = tl.zeros((BLOCK_X, ), tl.float32)
    for tap in range(0, taps_x):
        total_x += _tap(first_x + tap, centre_x, inv_support_x, stop_x)
    total_y = tl.zeros((BLOCK_Y, ), tl.float32)
    red = tl.zeros((BLOCK_Y, BLOCK_X), tl.float32)
    green = tl.zeros((BLOCK_Y, BLOCK_X), tl.float32)
    blue = tl.zeros((BLOCK_Y, BLOCK_X), tl.float32)
    for tap_y in range(0, taps_y):
        y = first_y + tap_y
        weight_y = _tap(y, centre_y, inv_support_y, stop_y)
        total_y += weight_y
        # samples past the window (weight 0) read the crop's last row or
        # column: every read stays inside the crop
        rows = corner + tl.minimum(y, crop_h - 1)[:, None] * width
        for tap_x in range(0, taps_x):
            x = first_x + tap_x
            weight = weight_y[:, None] * _tap(x, centre_x, inv_support_x,
                                              stop_x)[None, :]
            pixels = rows + tl.minimum(x, crop_w - 1)[None, :]
            red += weight * tl.load(pixels).to(tl.float32)
            green += weight * tl.load(pixels + plane).to(tl.float32)
            blue += weight * tl.load(pixels + 2 * plane).to(tl.float32)
    # rows and columns of the tile past the output have no window
    total_y = tl.where(total_y > 0, total_y, 1.0)
    total_x = tl.where(total_x > 0, total_x, 1.0)
    norm = scale / (total_y[:, None] * total_x[None, :])
    flip = tl.load(row + _FLIP)
    column = tl.where(flip != 0, size - 1 - ox, ox)
    out = (
        out_ptr + image.to(tl.int64) * stride_n + oy[:, None] * stride_y +
        column[None, :] * stride_x)
    mask = (oy < size)[:, None] & (ox < size)[None, :]
    _store(out, red * norm, 0, stride_c, mask, mean_ptr, std_ptr, NORMALISE)
    _store(out, green * norm, 1, stride_c, mask, mean_ptr, std_ptr, NORMALISE)
    _store(out, blue * norm, 2, stride_c, mask, mean_ptr, std_ptr, NORMALISE)


def roi_resized_crops(
    flat: torch.Tensor, offsets: torch.Tensor, sizes: torch.Tensor,
    boxes: torch.Tensor, size: int, scale: float = 1.0,
    flip: Optional[torch.Tensor] = None, mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None, dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """:func:`~mopro.gpu_data.views.resized_crops` by the kernel above,
    optionally mirrored, normalised and stored in ``dtype`` and
    ``memory_format``: ``(scale x resized - mean) / std``, in float32
    until the store.

    The host makes only the N x 8 crop geometry (one copy to the device,
    checked on the host first: no value on the device is read); ``flat``
    needs no padding.

    Args:
        flat, offsets, sizes, boxes, size, scale: as ``resized_crops``.
        flip: N bool (CPU), mirror the image's output columns.
        mean, std: 3 float32 on ``flat``'s device (any shape of 3
            contiguous values), or None: no normalisation.
        dtype, memory_format: the output's.
    """
    num = boxes.shape[0]
    geometry = crop_geometry(offsets, sizes, boxes, flip)
    check_crops(geometry, flat.numel())
    geometry = to_device(geometry, flat.device)
    out = torch.empty((num, 3, size, size), dtype=dtype, device=flat.device,
                      memory_format=memory_format)
    normalise = mean is not None
    grid = (num, triton.cdiv(size, BLOCK), triton.cdiv(size, BLOCK))
    guard = torch.cuda.device(flat.device) if flat.is_cuda else nullcontext()
    with guard:
        _roi_resize_kernel[grid](flat, geometry, out,
                                 mean if normalise else out,
                                 std if normalise else out, size, scale,
                                 *out.stride(), NORMALISE=normalise,
                                 BLOCK_Y=BLOCK, BLOCK_X=BLOCK,
                                 num_warps=NUM_WARPS)
    return out
