"""The released MoPro code's two views, per batch with per-sample random
parameters, on any device.

The released code (torchvision on PIL images, image by image):

- weak: ``RandomResizedCrop(224, scale=(0.2, 1.))``,
  ``RandomHorizontalFlip()``;
- strong: ``RandomResizedCrop(224, scale=(0.2, 1.))``,
  ``RandomGrayscale(p=0.2)``, ``ColorJitter(0.4, 0.4, 0.4, 0.4)``,
  ``RandomHorizontalFlip()``.

Sampling (:func:`sample_view_params`, on the CPU with a
``torch.Generator``, so the same seed gives the same parameters on any
device) is separate from application (:func:`resized_crops`,
:func:`apply_view`), so tests can fix the parameters.

Why not kornia or DALI: kornia 0.9's ``ColorJitter`` draws one order of the
four adjustments per batch (``ColorJiggleGenerator``: ``order`` of shape
(4,)), and its crops need a batch of equal-size images; DALI's
``color_twist`` applies the four adjustments as one fixed transform. The
released transforms draw the order per image. What is written here is the
per-sample selection and the resampling of a whole batch of differently
sized images in a fixed number of operations (:func:`resized_crops`:
torchvision's antialiased bilinear resize as two batched matrix products;
equal to torchvision's ``resized_crop`` to float rounding, to PIL's
bilinear within 1 grey level). On CUDA the same resize is one Triton
kernel that reads each crop where it lies
(:mod:`mopro.gpu_data.resize_kernel`).
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma, as PIL's 'L')
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass
class ViewParams:
    """Per-sample random parameters of one view for N images.

    Attributes:
        boxes: N x 4 int64, ``(top, left, height, width)`` of each crop.
        flip: N bool, horizontal flip (None: the crops are flipped
            already).
        gray: N bool, grayscale (None: the view has no RandomGrayscale).
        order: N x 4 int64, each row a permutation of the adjustments
            0 brightness, 1 contrast, 2 saturation, 3 hue, applied in that
            order (None: no ColorJitter).
        factors: N x 4 float32, the brightness, contrast, saturation and hue
            factors (columns indexed as ``order``'s values).
    """
    boxes: torch.Tensor
    flip: Optional[torch.Tensor]
    gray: Optional[torch.Tensor] = None
    order: Optional[torch.Tensor] = None
    factors: Optional[torch.Tensor] = None

    def to(self, device: torch.device) -> 'ViewParams':
        """The flip, grayscale and jitter parameters on ``device`` (the
        boxes stay on the CPU: crops are sized on the host)."""

        def move(t):
            return None if t is None else to_device(t, device)

        return ViewParams(self.boxes, move(self.flip), move(self.gray),
                          move(self.order), move(self.factors))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` (on the CPU) on ``device`` without making the host wait:
    a CUDA copy goes from pinned memory (a copy from pageable memory may
    wait for the stream)."""
    device = torch.device(device)
    if device.type == 'cuda':
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def _uniform(shape: Tuple[int, ...], low: float, high: float,
             generator: torch.Generator) -> torch.Tensor:
    return torch.empty(shape,
                       dtype=torch.float64).uniform_(low, high,
                                                     generator=generator)


def sample_crop_boxes(sizes: torch.Tensor, scale: Tuple[float, float],
                      ratio: Tuple[float, float], generator: torch.Generator,
                      attempts: int = 10) -> torch.Tensor:
    """``torchvision.transforms.RandomResizedCrop.get_params`` for N images
    at once: up to ``attempts`` draws of an area fraction uniform in
    ``scale`` and an aspect ratio log-uniform in ``ratio``; the first that
    fits is taken, at an offset uniform over the valid ones; if none fits,
    the centre crop of the whole image clamped to ``ratio``.

    Args:
        sizes: N x 2 int64, ``(height, width)`` of each image.

    Returns:
        N x 4 int64 ``(top, left, height, width)``.
    """
    n = sizes.shape[0]
    height, width = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = height * width * _uniform((n, attempts), *scale, generator)
    log_ratio = _uniform((n, attempts), math.log(ratio[0]), math.log(ratio[1]),
                         generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first), h.gather(1, first)
    found = fits.any(dim=1, keepdim=True)
    # fallback: the whole image, clamped to the ratio range, centred
    in_ratio = width / height
    fw = torch.where(in_ratio > ratio[1], torch.round(height * ratio[1]),
                     width)
    fh = torch.where(in_ratio < ratio[0], torch.round(width / ratio[0]),
                     height)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand((n, 2), dtype=torch.float64, generator=generator)
    top = torch.where(found, torch.floor(u[:, 0:1] * (height - h + 1)),
                      torch.div(height - h, 2, rounding_mode='floor'))
    left = torch.where(found, torch.floor(u[:, 1:2] * (width - w + 1)),
                       torch.div(width - w, 2, rounding_mode='floor'))
    return torch.cat([top, left, h, w], dim=1).long()


def sample_view_params(sizes: torch.Tensor, generator: torch.Generator,
                       scale: Tuple[float, float] = (0.2, 1.0),
                       ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                       flip_prob: float = 0.5,
                       gray_prob: Optional[float] = None,
                       jitter: Optional[Sequence[float]] = None) -> ViewParams:
    """Parameters of ``RandomResizedCrop(scale, ratio)``,
    ``RandomGrayscale(gray_prob)``, ``ColorJitter(*jitter)`` and
    ``RandomHorizontalFlip(flip_prob)`` for each of N images, drawn as
    torchvision draws them: grayscale and flip with their probabilities;
    jitter factors uniform in ``[max(0, 1 - j), 1 + j]`` (hue: ``[-j, j]``)
    and a uniformly random order of the four adjustments, per image."""
    n = sizes.shape[0]
    boxes = sample_crop_boxes(sizes, scale, ratio, generator)
    params = ViewParams(boxes, torch.rand(n, generator=generator) < flip_prob)
    if gray_prob is not None:
        params.gray = torch.rand(n, generator=generator) < gray_prob
    if jitter is not None:
        brightness, contrast, saturation, hue = jitter
        low = [max(0.0, 1 - j) for j in (brightness, contrast, saturation)]
        low.append(-hue)
        high = [1 + brightness, 1 + contrast, 1 + saturation, hue]
        u = torch.rand((n, 4), generator=generator)
        params.factors = torch.tensor(low) + u * (
            torch.tensor(high) - torch.tensor(low))
        params.order = torch.argsort(
            torch.rand((n, 4), generator=generator), dim=1)
    return params


def antialias_weights(in_sizes: torch.Tensor, out_size: int,
                      width: int) -> torch.Tensor:
    """The antialiased bilinear resize of N signals of lengths ``in_sizes``
    to ``out_size`` samples as N ``out_size`` x ``width`` matrices (columns
    past a signal's length are 0).

    The weights of torchvision's ``resize(antialias=True)``
    (``aten::_upsample_bilinear2d_aa``, ``align_corners=False``), computed
    in float32 as ATen computes them: output sample ``o`` of a signal of
    length ``n`` has centre ``c = (o + 0.5) n / out_size``, support
    ``s = max(n / out_size, 1)`` and weights ``max(0, 1 - |j + 0.5 - c|
    / s)`` on the input samples ``j`` in ``[trunc(c - s + 0.5),
    trunc(c + s + 0.5))`` clipped to ``[0, n)``, normalised to sum 1.

    Args:
        in_sizes: N int64, on the device the matrices are wanted on.
    """
    device = in_sizes.device
    length = in_sizes.to(torch.float32).view(-1, 1, 1)
    scale = length / out_size
    support = torch.clamp(scale, min=1.0)
    centre = scale * (
        torch.arange(out_size, dtype=torch.float32, device=device).view(
            1, -1, 1) + 0.5)
    j = torch.arange(width, dtype=torch.float32, device=device).view(1, 1, -1)
    first = torch.clamp(torch.trunc(centre - support + 0.5), min=0.0)
    stop = torch.minimum(torch.trunc(centre + support + 0.5), length)
    weights = torch.clamp(1 - torch.abs((j - centre + 0.5) / support), min=0.0)
    weights = torch.where((j >= first) & (j < stop), weights, 0.0)
    return weights / weights.sum(dim=-1, keepdim=True)


def pack_images(
    images: Sequence[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """C x H x W images as :func:`resized_crops` reads them: one flat
    tensor (the images back to back, then ``max(W)`` zeros), their offsets
    into it and their sizes (N x 2 ``(H, W)``; offsets and sizes on the
    CPU)."""
    sizes = torch.tensor([img.shape[1:] for img in images])
    numels = [img.numel() for img in images]
    offsets = torch.tensor([0] + numels[:-1]).cumsum(0)
    padding = images[0].new_zeros(int(sizes[:, 1].max()))
    flat = torch.cat([img.reshape(-1) for img in images] + [padding])
    return flat, offsets, sizes


# the columns of a crop geometry row (:func:`crop_geometry`)
OFFSET, IMAGE_H, IMAGE_W, TOP, LEFT, CROP_H, CROP_W, FLIP = range(8)


def crop_geometry(offsets: torch.Tensor, sizes: torch.Tensor,
                  boxes: torch.Tensor,
                  flip: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Where each of N crops lies in the packed images, as one N x 8 int64
    host tensor (columns ``OFFSET``, ``IMAGE_H``, ``IMAGE_W``, ``TOP``,
    ``LEFT``, ``CROP_H``, ``CROP_W``, ``FLIP``), uploaded in one copy.

    Only N-sized tensors are made on the host: everything per crop row or
    pixel is computed on the device from this. Above ATen's parallel grain
    (``at::internal::GRAIN_SIZE``, 32768 elements) a CPU operator opens an
    OpenMP parallel region, whose spinning threads would compete with the
    dataloader workers on every batch.

    Args:
        offsets, sizes, boxes: as :func:`resized_crops` takes them.
        flip: N bool, mirror the crop's columns (None: no flip).
    """
    flip = torch.zeros_like(offsets) if flip is None else flip
    return torch.cat(
        [offsets.view(-1, 1), sizes, boxes,
         flip.to(torch.int64).view(-1, 1)], dim=1)


def check_crops(geometry: torch.Tensor, flat_numel: int,
                reach: Optional[int] = None) -> None:
    """ValueError unless each crop box lies inside its image and each crop
    row, read as ``reach`` elements from its start (None: its crop's
    width), inside the packed images (``flat_numel`` elements). On the
    host, from N-sized tensors: no value on the device is read."""
    height, width = geometry[:, IMAGE_H], geometry[:, IMAGE_W]
    top, left = geometry[:, TOP], geometry[:, LEFT]
    crop_h, crop_w = geometry[:, CROP_H], geometry[:, CROP_W]
    valid = (top >= 0) & (left >= 0) & (crop_h >= 1) & (crop_w >= 1)
    inside = valid & (top + crop_h <= height) & (left + crop_w <= width)
    if not bool(inside.all()):
        raise ValueError('a crop box is not inside its image')
    # the last row of the last channel starts at (2 H + top + h - 1) W + left
    last_row = geometry[:, OFFSET] + (2 * height + top + crop_h - 1) * width
    last_row = last_row + left
    end = last_row + (crop_w if reach is None else reach)
    if int(end.max()) > flat_numel:
        raise ValueError('the packed images end before the last crop row '
                         '(pad them by the widest image, as pack_images '
                         'does)')


def row_starts(geometry: torch.Tensor, rows: int) -> torch.Tensor:
    """N x 3 x ``rows`` int64 on ``geometry``'s device: where each crop row
    of each channel starts in the packed images (rows past a crop's height
    repeat its last row)."""
    columns = geometry[:, :CROP_W, None, None]  # N x 6 x 1 x 1
    offset, height, width, top, left, crop_h = columns.unbind(1)
    device = geometry.device
    channel = torch.arange(3, device=device).view(1, 3, 1)
    row = torch.minimum(
        torch.arange(rows, device=device).view(1, 1, -1), crop_h - 1)
    return offset + channel * height * width + (top + row) * width + left


def resized_crops(flat: torch.Tensor, offsets: torch.Tensor,
                  sizes: torch.Tensor, boxes: torch.Tensor, size: int,
                  scale: float = 1.0) -> torch.Tensor:
    """Crop each of N RGB images to its box and resize it to ``size`` x
    ``size`` with torchvision's antialiased bilinear resize (as
    ``RandomResizedCrop`` does on tensors), in a number of operations that
    does not depend on N.

    The crops are read from ``flat`` (3 x H x W images back to back, then
    padding, as :func:`pack_images` writes them): each crop row is a
    window of ``flat``, and one ``index_select`` of the windows gathers
    all rows of all crops, zero-padded (by their neighbours' pixels, which
    get weight 0) to the largest box of the batch. The resize is separable:
    the rows by N ``size`` x ``w`` matrices, then the columns by N ``size``
    x ``h`` matrices (:func:`antialias_weights`), two batched matrix
    products in float32 (call it outside autocast, which would run them in
    half precision). Transient memory: about 9 bytes per pixel of N x 3
    times the largest box (WebVision's 256-pixel images: boxes up to
    341 x 341, ~0.8 GB for 256 images). The host computes only N-sized
    geometry (:func:`crop_geometry`); the row starts are computed on the
    device.

    Args:
        flat: 1-D uint8 or float tensor on the device, at least as long as
            the last image plus the widest image.
        offsets: N int64 (CPU), where each image starts in ``flat``.
        sizes: N x 2 int64 (CPU), ``(height, width)`` of each image.
        boxes: N x 4 int64 (CPU), ``(top, left, height, width)`` of each
            crop, inside its image.
        scale: factor on the output (1/255: uint8 in, [0, 1] out).

    Returns:
        N x 3 x ``size`` x ``size`` float32 on ``flat``'s device.
    """
    num = boxes.shape[0]
    rows, cols = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    geometry = crop_geometry(offsets, sizes, boxes)
    check_crops(geometry, flat.numel(), cols)
    geometry = to_device(geometry, flat.device)
    starts = row_starts(geometry, rows).view(-1)
    crops = flat.unfold(0, cols, 1).index_select(0, starts)
    crops = crops.view(num, 3 * rows, cols).to(torch.float32)
    across = antialias_weights(geometry[:, CROP_W], size, cols)
    down = antialias_weights(geometry[:, CROP_H], size, rows) * scale
    resized_rows = torch.bmm(crops, across.transpose(1, 2))
    return torch.matmul(
        down.unsqueeze(1), resized_rows.view(num, 3, rows, size))


def rgb_to_gray(img: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luma of N x 3 x H x W RGB (torchvision's weights)."""
    r, g, b = img.unbind(dim=1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g +
            GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_hue(img: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` for float RGB in [0, 1] with one factor
    per image (``hue``: N). torchvision's own takes one float per call and
    uploads a lookup table on each, so the RGB <-> HSV round trip is written
    here, branch-free."""
    minc, maxc = torch.aminmax(img, dim=1)
    delta = maxc - minc
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = img.unbind(dim=1)
    h = torch.where(
        maxc == r, (g - b) / safe_delta,
        torch.where(maxc == g, (b - r) / safe_delta + 2,
                    (r - g) / safe_delta + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    h = torch.remainder(h + hue.view(-1, 1, 1), 1.0)
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    # HSV -> RGB: channel n (R=5, G=3, B=1) is v - v s clamp(min(k, 4 - k))
    n = torch.arange(5.0, 0.0, -2.0, device=img.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * h.unsqueeze(1), 6.0)
    chroma = torch.clamp(torch.minimum(k, 4 - k), 0.0, 1.0)
    return maxc.unsqueeze(1) * (1 - s.unsqueeze(1) * chroma)


def color_jitter(img: torch.Tensor, order: torch.Tensor,
                 factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``ColorJitter`` on float RGB in [0, 1], each image with
    its own order and factors (see :class:`ViewParams`).

    Four stages; at stage k each image applies adjustment ``order[:, k]``.
    Brightness, contrast and saturation are the same blend
    ``clamp(f * img + (1 - f) * ref)`` against black, the image's mean luma
    or its luma, so one blend serves the three; hue is computed for the
    batch and selected per image. All selection is by ``torch.where`` on
    device tensors: no boolean indexing, no host sync.
    """
    n = img.shape[0]
    for stage in range(4):
        op = order[:, stage:stage + 1]
        f = factors.gather(1, op).view(n, 1, 1, 1)
        op = op.view(n, 1, 1, 1)
        gray = rgb_to_gray(img)
        ref = torch.where(
            op == 0, torch.zeros_like(gray),
            torch.where(op == 1, gray.mean(dim=(1, 2, 3), keepdim=True), gray))
        blended = (f * img + (1 - f) * ref).clamp(0.0, 1.0)
        hued = adjust_hue(img, torch.where(op == 3, f, 0.0).view(n))
        img = torch.where(op == 3, hued, blended)
    return img


def apply_view(crops: torch.Tensor, params: ViewParams) -> torch.Tensor:
    """Grayscale, colour jitter and flip (the released order) on N x 3 x S
    x S float RGB crops in [0, 1], with ``params`` on the crops' device.

    The flip may come first instead (``params.flip`` None: the crops were
    resampled mirrored): grayscale and jitter act on each pixel alone but
    for contrast's mean, which a mirror leaves as it is."""
    img = crops
    n = img.shape[0]
    if params.gray is not None:
        img = torch.where(
            params.gray.view(n, 1, 1, 1),
            rgb_to_gray(img).expand_as(img), img)
    if params.order is not None:
        img = color_jitter(img, params.order, params.factors)
    if params.flip is None:
        return img
    return torch.where(params.flip.view(n, 1, 1, 1), img.flip(-1), img)
