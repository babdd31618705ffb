"""JPEG decoding and the two training views per batch on the device."""
import warnings
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub, print_log
from mmpretrain.registry import MODELS

from mopro.datasets.collate import PackedImages
from mopro.datasets.image_list_dataset import check_bad_fraction
from mopro.models.utils.compile import CompiledCall, out_of_memory
from mopro.models.utils.data_preprocessor import (MoProDataPreprocessor,
                                                  step_dtype)
from mopro.utils.errors import ConfigError
from mopro.utils.validate import check_choice
from .decode_ahead import SLOT_KEY, decode_executor
from .decoding import DecodedBatch, decode_packed, decode_stream
from .views import (ViewParams, apply_view, resized_crops, sample_view_params,
                    to_device)


def make_view(crops: torch.Tensor, params: ViewParams,
              mean: Optional[torch.Tensor], std: Optional[torch.Tensor],
              dtype: torch.dtype,
              memory_format: torch.memory_format) -> torch.Tensor:
    """One view of N x 3 x S x S float32 RGB crops in [0, 1]: grayscale,
    colour jitter and flip (:func:`apply_view`), then ``(255 x - mean) /
    std`` in float32 (``mean`` None: no normalisation), converted once to
    ``dtype`` and ``memory_format``."""
    img = apply_view(crops, params) * 255
    if mean is not None:
        img = (img - mean) / std
    return img.to(dtype=dtype, memory_format=memory_format)


_COMPILED_VIEW: Optional[CompiledCall] = None
RESAMPLERS = ('auto', 'triton', 'matmul')


def compiled_make_view() -> CompiledCall:
    """:func:`make_view` through ``torch.compile`` (fixed shapes: one graph
    per view kind), eager if the build fails; one per process."""
    global _COMPILED_VIEW
    if _COMPILED_VIEW is None:
        _COMPILED_VIEW = CompiledCall(make_view, 'make_view',
                                      dict(dynamic=False))
    return _COMPILED_VIEW


def triton_resize(device: torch.device) -> Optional[Callable]:
    """The Triton kernel's crop and resize
    (:func:`mopro.gpu_data.resize_kernel.roi_resized_crops`) where it runs
    on ``device`` (Triton imports; CUDA, or Triton's interpreter), else
    None."""
    try:
        from .resize_kernel import roi_resized_crops, runs_on
    except ImportError:
        return None
    return roi_resized_crops if runs_on(device) else None


def autocast_off(device: torch.device):
    """A context with autocast off on ``device``: the views are computed in
    float32 and converted once (a device without autocast, such as the
    meta device the tests run the view code on without data, needs
    none)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


@MODELS.register_module()
class MoProGPUViewsPreprocessor(MoProDataPreprocessor):
    """Decode a batch and make the released code's weak and strong views of
    each image on the device (GPU, or CPU: the same code).

    Training batches come from ``LoadWebImageBytes`` through
    ``packed_images_collate``: ``inputs`` is one :class:`PackedImages`
    (per image, the bytes of a baseline JPEG or the RGB pixels of a file
    the worker decoded, all in one uint8 tensor), ``data_samples`` the
    labels (one int64 tensor). Decoding
    (:mod:`mopro.gpu_data.decoding`): the JPEGs with one batched
    ``torchvision.io.decode_jpeg`` call (nvjpeg on a GPU, on side streams
    that keep it from writing memory queued work still reads; libjpeg on
    the CPU); a JPEG the batch decoder rejects is isolated by bisection and
    decoded by the tolerant CPU decoder; one that none decodes is replaced
    by another image of the batch and counted, and more than
    ``max_bad_fraction`` of them (after 100 images) stops the run, as the
    datasets do for the files their workers cannot decode. With
    ``DecodeAheadHook`` (the GPU-data config) each batch is decoded while
    the step before it runs, in a background thread
    (:mod:`mopro.gpu_data.decode_ahead`); without it, here.

    Then both views, for the whole batch in a fixed number of operations:
    crop and antialiased resize, grayscale, jitter and flip
    (:func:`apply_view`), normalisation in float32, and one conversion to
    the step's dtype (autocast's) and memory format (``channels_last``).
    The resize (``resample``) is a Triton kernel on CUDA
    (:mod:`mopro.gpu_data.resize_kernel`: each image's crop read from the
    packed pixels, written mirrored where flipped; the weak view, which
    has no colour adjustment, also normalised and stored in the step's
    dtype and layout there: one kernel per view), elsewhere two batched
    matrix products over the crops padded to the batch's largest box
    (:func:`resized_crops`). Other batches (validation: stacked BGR images) go
    to ``MoProDataPreprocessor``, so ``mean``, ``std`` and ``to_rgb`` keep
    their meaning there; the decoded views are RGB already.

    Randomness: the parameters are drawn on the CPU from a generator
    re-seeded for every training batch from ``(seed, rank, iteration)``
    (the Runner's iteration; outside a Runner, a count of calls). ``seed``
    defaults to ``torch.initial_seed()``, i.e. the Runner's seed. Ranks
    thus draw differently, the same seed gives the same views on any
    device, and a resumed run, whose sampler yields the same batches,
    makes the same views as an uninterrupted one.

    Args:
        crop_size: output side of both views.
        scale, ratio: ``RandomResizedCrop``'s area and aspect-ratio ranges.
        flip_prob: ``RandomHorizontalFlip`` probability (both views).
        gray_prob: ``RandomGrayscale`` probability (strong view).
        jitter: ``ColorJitter`` brightness, contrast, saturation, hue
            (strong view).
        seed: base seed; None: ``torch.initial_seed()``.
        max_bad_fraction: tolerated fraction of images no decoder takes.
        channels_last: views in channels-last memory format (as
            ``model.channels_last``).
        compile_views: run grayscale, jitter, flip, normalisation and the
            conversion through ``torch.compile`` (:func:`make_view`; eager
            if the build fails). Eager, they are ~150 elementwise kernels
            per batch, about 10 ms of an H200 for 256 images (estimated
            from their memory traffic); fused, a few.
        resample: ``'triton'`` (the kernel; CUDA, or a CPU under
            ``TRITON_INTERPRET=1``), ``'matmul'`` (the batched matrix
            products, any device) or ``'auto'``: the kernel where it runs
            (CUDA with Triton; any device under ``TRITON_INTERPRET=1``),
            else the matrix products, which also take over, with a
            warning, if the kernel fails at its first batch.
        Others: as ``MoProDataPreprocessor``.
    """

    def __init__(self, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, to_rgb: bool = False,
                 crop_size: int = 224, scale: Tuple[float, float] = (0.2, 1.0),
                 ratio: Tuple[float,
                              float] = (3 / 4, 4 / 3), flip_prob: float = 0.5,
                 gray_prob: float = 0.2, jitter: Sequence[float] = (0.4, 0.4,
                                                                    0.4, 0.4),
                 seed: Optional[int] = None, max_bad_fraction: float = 0.01,
                 channels_last: bool = False, compile_views: bool = False,
                 resample: str = 'auto', **kwargs) -> None:
        check_choice(resample, 'model.data_preprocessor.resample', RESAMPLERS)
        super().__init__(mean=mean, std=std, to_rgb=to_rgb, **kwargs)
        self.crop_size = crop_size
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.flip_prob, self.gray_prob = flip_prob, gray_prob
        self.jitter = tuple(jitter)
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self.channels_last = channels_last
        self.compile_views = compile_views
        self.resample = resample
        self._kernel_works: Optional[bool] = None  # until its first call
        self.generator = torch.Generator()
        self.num_images = 0
        self.num_bad = 0
        self._calls = 0

    def forward(self, data: dict, training: bool = False) -> dict:
        """Views of a batch of :class:`PackedImages` (see the class), or
        ``MoProDataPreprocessor``'s output for stacked images."""
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if not isinstance(inputs, PackedImages):
            return super().forward(data, training)
        labels = data.get('data_samples')
        if labels is not None:
            labels = to_device(labels, self.device)
        decoded = self._decoded(data)
        self.generator.manual_seed(self._batch_seed())
        weak = sample_view_params(decoded.sizes, self.generator, self.scale,
                                  self.ratio, self.flip_prob)
        strong = sample_view_params(decoded.sizes, self.generator, self.scale,
                                    self.ratio, self.flip_prob, self.gray_prob,
                                    self.jitter)
        with autocast_off(self.device):
            views = [self._view(decoded, p) for p in (weak, strong)]
        return {'inputs': views, 'data_samples': labels}

    def _view(self, decoded: DecodedBatch, params: ViewParams) -> torch.Tensor:
        """One view of the decoded batch, in the step's dtype and memory
        format: the crops resized by the kernel (mirrored there; for a view
        without colour adjustments, the whole view) or by the matrix
        products, then :func:`make_view`."""
        dtype = step_dtype(self.device)
        memory_format = torch.channels_last if self.channels_last else \
            torch.contiguous_format
        view = compiled_make_view() if self.compile_views else make_view
        mean, std = (self.mean, self.std) if self._enable_normalize else \
            (None, None)
        crop = (decoded.flat, decoded.offsets, decoded.sizes, params.boxes,
                self.crop_size)
        if params.gray is None and params.order is None:
            # make_view's 255 x (uint8 / 255): the pixels' own scale
            out = self._by_kernel(*crop, 1.0, params.flip, mean, std, dtype,
                                  memory_format)
            if out is not None:
                return out
        else:
            crops = self._by_kernel(*crop, 1 / 255, params.flip)
            if crops is not None:
                return view(crops,
                            replace(params, flip=None).to(self.device), mean,
                            std, dtype, memory_format)
        return view(
            resized_crops(*crop, 1 / 255), params.to(self.device), mean, std,
            dtype, memory_format)

    def _by_kernel(self, *args) -> Optional[torch.Tensor]:
        """``roi_resized_crops(*args)`` where ``resample`` chooses the
        kernel, else None. Under ``'auto'``, a kernel that fails at its
        first call (Triton cannot build it for this GPU, say) warns once
        and leaves the matrix products in its place; ``'triton'`` raises
        (a ConfigError where it cannot run at all)."""
        if self.resample == 'matmul' or self._kernel_works is False:
            return None
        kernel = triton_resize(self.device)
        if kernel is None:
            if self.resample == 'triton':
                raise ConfigError(
                    "model.data_preprocessor.resample='triton' needs Triton "
                    'and a CUDA device (or TRITON_INTERPRET=1), not '
                    f'{self.device.type}')
            return None
        if self._kernel_works or self.resample == 'triton':
            return kernel(*args)
        try:
            out = kernel(*args)
        except Exception as err:
            # bad crops and a full memory are no fault of the kernel's
            if isinstance(err, ValueError) or out_of_memory(err) is not None:
                raise
            warnings.warn(
                f'{type(self).__name__}: the Triton resize failed ({err!r}'
                '); resampling by batched matrix products from now on '
                "(model.data_preprocessor.resample='matmul' says so)")
            self._kernel_works = False
            return None
        self._kernel_works = True
        return out

    def decode(self, packed: PackedImages) -> DecodedBatch:
        """A batch decoded on this device (in this thread), ready to read on
        the current stream, the images no decoder takes counted (see the
        class)."""
        return self._decoded(dict(inputs=packed))

    def _decode(self, batch: dict) -> DecodedBatch:
        return decode_packed(batch['inputs'], self.device)

    def _decoded(self, data: dict) -> DecodedBatch:
        """This batch decoded (by the background thread where a
        ``DecodeAheadHook`` set it up), counted, and ready to read on the
        current stream; the decoding of the next batch started."""
        slot = data.get(SLOT_KEY)
        if slot is None:
            decoded = self._decode(data)
        else:
            if slot.future is None:  # the first batch, or after a resume
                slot.future = decode_executor().submit(self._decode, data)
            decoded = slot.future.result()
            slot.future = None
        if decoded.ready is not None:
            decode_stream(decoded.flat.device).hand_over(
                decoded.flat, decoded.ready,
                torch.cuda.current_stream(self.device))
        if slot is not None:
            slot.start_next(self._decode)
        self._count(decoded, data['inputs'])
        return decoded

    def _count(self, decoded: DecodedBatch, packed: PackedImages) -> None:
        self.num_images += len(decoded.sizes)
        if not decoded.bad:
            return
        self.num_bad += len(decoded.bad)
        print_log(
            f'{len(decoded.bad)} undecodable image(s) in a batch '
            f'replaced by another of the batch ({self.num_bad} so '
            f'far), first {packed.paths[decoded.bad[0]]}', logger='current',
            level=30)
        check_bad_fraction(
            type(self).__name__, self.num_bad, self.num_images,
            self.max_bad_fraction, 'model.data_preprocessor.max_bad_fraction')

    def _batch_seed(self) -> int:
        """The generator's seed for this batch, from (seed, rank,
        iteration)."""
        hub = MessageHub.get_current_instance()
        if hub.get_info('loop_stage') == 'train' and \
                hub.get_info('iter') is not None:
            step = hub.get_info('iter')
        else:
            step = self._calls
        self._calls += 1
        seed = torch.initial_seed() if self.seed is None else self.seed
        entropy = np.random.SeedSequence([seed, get_rank(), step])
        return int(entropy.generate_state(1, dtype=np.uint64)[0])
