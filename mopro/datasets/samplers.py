"""Training samplers whose indices carry their sample's RNG key
(:mod:`mopro.datasets.seeding`), so that a resumed run makes the views an
uninterrupted one makes: :class:`ResumableSampler` (mmengine's
``DefaultSampler`` order) and :class:`SqrtBalancedSampler`.

Square-root class-balanced sampling for classifier re-training.

Paper Section 4.3 (following Mahajan et al. 2018): the classifier is
re-trained with square-root sampling, i.e. a class with n_c images gets a
total sampling mass proportional to sqrt(n_c), each of its images
sqrt(n_c) / n_c = 1 / sqrt(n_c).

The released code approximates this by repeating every image
``int(10 * p_c / min p)`` times and shuffling (``dataloader_balance.py``);
this sampler draws exactly from the sqrt distribution, with replacement, in
two vectorised steps (class by its mass, then an image of the class
uniformly), so it also scales to WebVision V2's 16M images.
"""
from typing import Iterable, Iterator, Optional, Sized

import numpy as np
from mmengine.dataset import DefaultSampler
from mmengine.dist import get_dist_info, sync_random_seed
from mmpretrain.registry import DATA_SAMPLERS
from torch.utils.data import Sampler

from ..utils.errors import DataError
from .seeding import SeededIndex


def seeded_indices(indices: Iterable[int], seed: int, epoch: int, rank: int,
                   world_size: int) -> Iterator[SeededIndex]:
    """A rank's indices ``indices[k]``, which stand at position
    ``rank + k * world_size`` of the epoch's order over all ranks, with the
    RNG key ``(seed, epoch, position)``."""
    for k, index in enumerate(indices):
        yield SeededIndex(index, (seed, epoch, rank + k * world_size))


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` whose indices carry the RNG key of
    their sample's augmentation, ``(seed, epoch, position)``
    (:mod:`mopro.datasets.seeding`).

    Same order and arguments as ``DefaultSampler``. With the project's
    datasets, a sample's views depend only on the seed, the epoch (set by
    ``DistSamplerSeedHook``) and its position in the epoch, not on the
    dataloader workers: a resumed run repeats an uninterrupted one.
    """

    def __iter__(self) -> Iterator[SeededIndex]:
        return seeded_indices(super().__iter__(), self.seed, self.epoch,
                              self.rank, self.world_size)


def dataset_labels(dataset: Sized) -> np.ndarray:
    """Integer class label of every sample (``get_gt_labels`` if the dataset
    has it, else ``get_cat_ids``)."""
    if hasattr(dataset, 'get_gt_labels'):
        return np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    return np.array([dataset.get_cat_ids(i)[0] for i in range(len(dataset))],
                    dtype=np.int64)


def sqrt_class_mass(labels: np.ndarray) -> np.ndarray:
    """Sampling mass of each class, proportional to sqrt(count)."""
    counts = np.bincount(labels)
    mass = np.sqrt(counts.astype(np.float64))
    return mass / mass.sum()


@DATA_SAMPLERS.register_module()
class SqrtBalancedSampler(Sampler):
    """Draw samples with probability proportional to 1/sqrt(class count).

    Every epoch draws ``num_samples`` (default: the dataset size) indices
    from a generator seeded with ``seed + epoch`` (the same on all ranks);
    rank r takes draws ``r, r + W, r + 2W, ...`` of the draw (padded to a
    multiple of the world size W). Each index carries the RNG key
    ``(seed, epoch, draw)`` of its augmentation, as :class:`ResumableSampler`
    (an image drawn twice gets two different views).

    Args:
        dataset: dataset with ``get_gt_labels`` or ``get_cat_ids``.
        seed: base seed; None for a random one shared by all ranks.
        num_samples: draws per epoch over all ranks.
    """

    def __init__(self, dataset: Sized, seed: Optional[int] = None,
                 num_samples: Optional[int] = None) -> None:
        self.dataset = dataset
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        labels = dataset_labels(dataset)
        if len(labels) == 0:
            raise DataError('SqrtBalancedSampler: the dataset is empty')
        self.total = num_samples or len(labels)
        self.num_samples = -(-self.total // self.world_size)
        # images grouped by class, and where each class starts
        self.order = np.argsort(labels, kind='stable')
        counts = np.bincount(labels)
        self.counts = counts
        self.starts = np.cumsum(counts) - counts
        self.class_mass = sqrt_class_mass(labels)

    def draw(self, epoch: int) -> np.ndarray:
        """All ranks' indices of one epoch (padded to a multiple of W)."""
        rng = np.random.default_rng(self.seed + epoch)
        size = self.num_samples * self.world_size
        classes = rng.choice(
            len(self.class_mass), size=size, p=self.class_mass)
        offsets = np.floor(rng.random(size) * self.counts[classes]).astype(
            np.int64)
        return self.order[self.starts[classes] + offsets]

    def __iter__(self) -> Iterator[SeededIndex]:
        indices = self.draw(self.epoch)[self.rank::self.world_size]
        return seeded_indices(indices.tolist(), self.seed, self.epoch,
                              self.rank, self.world_size)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Called by mmengine's DistSamplerSeedHook every epoch."""
        self.epoch = epoch
