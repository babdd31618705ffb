"""JPEG decoding and the two training views per batch on the device."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub, print_log
from mmpretrain.registry import MODELS
from torchvision.io import ImageReadMode, decode_jpeg

from mopro.datasets.image_list_dataset import check_bad_fraction
from mopro.datasets.transforms import (ImageDecodeError, ViewParams,
                                       apply_view,
                                       decode_rgb_bytes, resized_crops,
                                       rgb_to_chw_tensor, sample_view_params)
from .data_preprocessor import MoProDataPreprocessor


@MODELS.register_module()
class MoProGPUViewsPreprocessor(MoProDataPreprocessor):
    """Decode a batch and make the released code's weak and strong views of
    each image on the device (GPU, or CPU: the same code).

    Training batches come from ``LoadWebImageBytes`` through
    ``pseudo_collate``: ``inputs`` is a list with, per image, either the
    bytes of a baseline JPEG (1-D uint8, decoded here with one batched
    ``torchvision.io.decode_jpeg`` call: nvjpeg on a GPU, libjpeg on the
    CPU) or a 3 x H x W uint8 RGB image the worker decoded. A JPEG the batch
    decoder rejects is decoded alone, then by the tolerant CPU decoder; one
    that none decodes is replaced by another image of the batch and
    counted, and more than ``max_bad_fraction`` of them (after 100 images)
    stops the run, as the datasets do for the files their workers cannot
    decode. Then both views (``mopro.datasets.transforms.batched_views``)
    and normalisation; the output is ``MoProDataPreprocessor``'s.
    Other batches (validation: stacked BGR images) go to
    ``MoProDataPreprocessor``, so ``mean``, ``std`` and ``to_rgb`` keep
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
        compile_views: run grayscale, jitter, flip and normalisation through
            ``torch.compile`` (one graph per view kind; batch and crop sizes
            fixed). Eager, they are ~150 elementwise kernels per batch,
            about 10 ms of an H200 for 256 images (estimated from their
            memory traffic); fused, a few.
        Others: as ``MoProDataPreprocessor``.
    """

    def __init__(self,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False,
                 crop_size: int = 224,
                 scale: Tuple[float, float] = (0.2, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5,
                 gray_prob: float = 0.2,
                 jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.4),
                 seed: Optional[int] = None,
                 max_bad_fraction: float = 0.01,
                 compile_views: bool = False,
                 **kwargs) -> None:
        super().__init__(mean=mean, std=std, to_rgb=to_rgb, **kwargs)
        self.crop_size = crop_size
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.flip_prob, self.gray_prob = flip_prob, gray_prob
        self.jitter = tuple(jitter)
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self.generator = torch.Generator()
        self.num_images = 0
        self.num_bad = 0
        self._calls = 0
        self._views = torch.compile(self._views_eager, dynamic=False) \
            if compile_views else self._views_eager

    def forward(self, data: dict, training: bool = False) -> dict:
        """Views of a batch of encoded/decoded images (see the class), or
        ``MoProDataPreprocessor``'s output for stacked images."""
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if not (isinstance(inputs, (list, tuple)) and inputs
                and isinstance(inputs[0], torch.Tensor)
                and inputs[0].ndim in (1, 3)):
            return super().forward(data, training)
        data_samples = self.cast_data(data.get('data_samples'))
        images = self.decode(inputs, data_samples)
        sizes = torch.tensor([img.shape[1:] for img in images])
        self.generator.manual_seed(self._batch_seed())
        weak = sample_view_params(sizes, self.generator, self.scale,
                                  self.ratio, self.flip_prob)
        strong = sample_view_params(sizes, self.generator, self.scale,
                                    self.ratio, self.flip_prob,
                                    self.gray_prob, self.jitter)
        floats = self._to_float(images)
        views = [
            self._views(resized_crops(floats, p.boxes, self.crop_size),
                        p.to(self.device)) for p in (weak, strong)
        ]
        return {'inputs': views, 'data_samples': data_samples}

    def decode(self, inputs: Sequence[torch.Tensor],
               data_samples: Optional[list] = None) -> List[torch.Tensor]:
        """3 x H x W uint8 RGB images on the device, one per entry of
        ``inputs`` (bytes or pixels); undecodable ones replaced and
        counted (see the class)."""
        images: List[Optional[torch.Tensor]] = list(inputs)
        jpegs = [i for i, entry in enumerate(inputs) if entry.ndim == 1]
        if jpegs:
            data = [inputs[i] for i in jpegs]
            try:
                decoded = decode_jpeg(data, mode=ImageReadMode.RGB,
                                      device=self.device)
            except RuntimeError:
                decoded = [
                    self._decode_alone(inputs[i], _name(data_samples, i))
                    for i in jpegs
                ]
            for i, img in zip(jpegs, decoded):
                images[i] = img
        bad = [i for i, img in enumerate(images) if img is None]
        self.num_images += len(images)
        if bad:
            self._replace_bad(images, bad, data_samples)
        return [img.to(self.device, non_blocking=True) for img in images]

    def _decode_alone(self, data: torch.Tensor,
                      name: str) -> Optional[torch.Tensor]:
        """One JPEG: the device decoder, else the tolerant CPU decoder;
        None if neither takes it."""
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB,
                               device=self.device)
        except RuntimeError:
            pass
        try:
            rgb = decode_rgb_bytes(data.numpy().tobytes(), name)
        except ImageDecodeError as err:
            print_log(f'skipping undecodable image: {err}', logger='current',
                      level=30)
            return None
        return rgb_to_chw_tensor(rgb)

    def _replace_bad(self, images: list, bad: List[int],
                     data_samples: Optional[list]) -> None:
        self.num_bad += len(bad)
        good = [i for i, img in enumerate(images) if img is not None]
        if not good:
            raise RuntimeError(
                f'{type(self).__name__}: no image of the batch could be '
                'decoded, first ' + _name(data_samples, bad[0]))
        for i in bad:
            images[i] = images[good[0]]
        print_log(f'{len(bad)} undecodable image(s) in a batch replaced by '
                  f'another of the batch ({self.num_bad} so far)',
                  logger='current', level=30)
        check_bad_fraction(type(self).__name__, self.num_bad,
                           self.num_images, self.max_bad_fraction,
                           'model.data_preprocessor.max_bad_fraction')

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

    @staticmethod
    def _to_float(images: List[torch.Tensor]) -> List[torch.Tensor]:
        """float32 [0, 1] copies, converted in one kernel, not one per
        image."""
        flat = torch.cat([img.reshape(-1) for img in images]).float()
        flat = flat.div_(255)
        return [
            part.view(img.shape) for part, img in zip(
                flat.split([img.numel() for img in images]), images)
        ]

    def _views_eager(self, crops: torch.Tensor,
                     params: ViewParams) -> torch.Tensor:
        """One view of [0, 1] RGB crops, normalised as the model takes it."""
        img = apply_view(crops, params) * 255
        if self._enable_normalize:
            img = (img - self.mean) / self.std
        return img


def _name(data_samples: Optional[list], index: int) -> str:
    """The image's path for messages, else its place in the batch."""
    if data_samples is not None and 'img_path' in data_samples[index]:
        return data_samples[index].img_path
    return f'batch entry {index}'
