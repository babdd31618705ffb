"""Base of the project's image datasets: compact lists, tolerant loading."""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

from ..utils.errors import DataError
from ..utils.validate import check_number
from .file_list import ImageList
from .seeding import rng_key_of, seeded_rngs
from .transforms import ImageDecodeError


def check_bad_fraction(owner: str, num_bad: int, attempts: int,
                       max_bad_fraction: float, option: str,
                       min_attempts: int = 100) -> None:
    """Raise a :class:`DataError` once more than ``max_bad_fraction`` of
    ``attempts`` (from ``min_attempts`` on: a running count waits for the
    first 100) were undecodable: the data is then broken rather than dirty.
    ``option`` names the setting that raises the limit."""
    if attempts >= max(min_attempts, 1) and \
            num_bad / attempts > max_bad_fraction:
        raise DataError(
            f'{owner}: {num_bad} of {attempts} images could not be decoded, '
            f'more than max_bad_fraction={max_bad_fraction}; check the data '
            f'or raise {option}')


def indexed_metainfo(num_classes: int) -> dict:
    """``metainfo`` naming each class by its index (``'0'``, ``'1'``, ...),
    for lists that come without class names."""
    return dict(classes=[str(c) for c in range(num_classes)])


class ImageListDataset(BaseDataset):
    """A dataset over an :class:`ImageList`, read once in ``full_init``.

    Subclasses implement :meth:`load_image_list`. Data infos are made on the
    fly (``img_path``, ``gt_label``, ``sample_idx``), so no per-sample Python
    object lives in the workers. Once read, one log line says how many
    images of how many classes were read, and from where (:meth:`summary`).

    A training image that cannot be decoded is skipped (another sample is
    drawn), with a warning naming it and a running count; if more than
    ``max_bad_fraction`` of the images loaded so far (after the first 100)
    fail, loading stops with an error, since the data is then broken rather
    than dirty. In test mode an undecodable image is an error.

    Indexed with a :class:`~mopro.datasets.seeding.SeededIndex` (what the
    training samplers ``ResumableSampler`` and ``SqrtBalancedSampler``
    yield), the sample's pipeline, and the choice of a replacement for an
    undecodable image, draw from RNGs seeded from the index's key ``(seed,
    epoch, position)``: a resumed run makes the views an uninterrupted one
    makes, whatever the dataloader workers. A plain index uses the RNGs as
    they are.

    Args:
        data_root: dataset root.
        pipeline: transforms; start with ``LoadWebImage``.
        max_bad_fraction: tolerated fraction of undecodable training images.
    """

    def __init__(self, data_root: str, pipeline: Sequence = (),
                 test_mode: bool = False, max_bad_fraction: float = 0.01,
                 lazy_init: bool = False, metainfo: Optional[dict] = None,
                 max_refetch: int = 1000) -> None:
        self.max_bad_fraction = check_number(
            max_bad_fraction, 'train_dataloader.dataset.max_bad_fraction', 0,
            1)
        self.num_loaded = 0
        self.num_bad = 0
        self.images: Optional[ImageList] = None
        super().__init__(
            data_root=data_root,
            # built in mmpretrain's scope, also outside a Runner
            pipeline=[
                TRANSFORMS.build(t) if isinstance(t, dict) else t
                for t in pipeline
            ],
            test_mode=test_mode,
            lazy_init=lazy_init,
            metainfo=metainfo,
            serialize_data=False,
            max_refetch=max_refetch)

    def load_image_list(self) -> ImageList:
        """Return the dataset's image list (paths relative to
        :meth:`image_root`)."""
        raise NotImplementedError

    def image_root(self) -> str:
        return self.data_root

    def describe(self) -> str:
        """What the dataset is, for its log line (``WebVision train at
        data/webvision/``)."""
        return f'{type(self).__name__} at {self.data_root}'

    def origin(self) -> str:
        """Where its images come from (``google, flickr``, a list file),
        for its log line; empty if nothing to add."""
        return ''

    def summary(self) -> str:
        """One line: what was read, e.g. ``WebVision train at
        data/webvision/: 2,439,574 images of 1000 classes from google,
        flickr``, with how many classes have images when some have none."""
        labels = self.images.labels
        present = len(np.unique(labels))
        num_classes = len(self.metainfo.get('classes') or ()) or present
        line = (f'{self.describe()}: {len(labels):,} images of '
                f'{num_classes} classes')
        if present < num_classes:
            line += f' ({present} of them with images)'
        origin = self.origin()
        return f'{line} from {origin}' if origin else line

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        self.images = self.load_image_list()
        if len(self.images) == 0:
            origin = self.origin()
            raise DataError(f'{self.describe()}: the dataset is empty' +
                            (f' (no image in {origin})' if origin else ''))
        self._fully_initialized = True
        print_log(self.summary(), logger='current')

    def __len__(self) -> int:
        if not self._fully_initialized:
            self.full_init()
        return len(self.images)

    def get_data_info(self, idx: int) -> dict:
        return dict(
            img_path=osp.join(self.image_root(), self.images.path(idx)),
            gt_label=int(self.images.labels[idx]), sample_idx=idx)

    def get_gt_labels(self) -> np.ndarray:
        """All labels, as mmpretrain datasets provide them."""
        if not self._fully_initialized:
            self.full_init()
        return self.images.labels

    def get_cat_ids(self, idx: int) -> List[int]:
        return [int(self.images.labels[idx])]

    def __getitem__(self, idx: int) -> dict:
        rng_key = rng_key_of(idx)
        if rng_key is None:
            return super().__getitem__(idx)
        # mmengine's refetch (_rand_another) draws from numpy's global RNG:
        # seeded here too
        with seeded_rngs(rng_key):
            return super().__getitem__(int(idx))

    def prepare_data(self, idx: int):
        try:
            data = super().prepare_data(idx)
        except ImageDecodeError as err:
            if self.test_mode:
                raise
            self.num_bad += 1
            print_log(
                f'skipping undecodable image ({self.num_bad} so far in '
                f'this worker): {err}', logger='current', level=30)
            self._check_bad_fraction()
            return None
        self.num_loaded += 1
        return data

    def _check_bad_fraction(self) -> None:
        check_bad_fraction(f'{type(self).__name__} at {self.data_root}',
                           self.num_bad, self.num_loaded + self.num_bad,
                           self.max_bad_fraction,
                           'train_dataloader.dataset.max_bad_fraction')
