"""Per-sample randomness of the data pipeline, reproducible on resume.

The augmentation of every training sample is drawn from RNGs seeded from
``(seed, epoch, position)``: the run's seed, the epoch, and the sample's
position in the epoch's order over all ranks. The sampler puts the three
into the index it yields (:class:`SeededIndex`), the dataset seeds
python's ``random``, numpy's global RNG and torch's default CPU generator
from them before the sample's pipeline (:func:`seeded_rngs`). The views are
thus a function of what a resumed run restores (seed and epoch), whatever
the number of dataloader workers, whether they persist across epochs, or
whether loading runs in the main process.

Why not torchdata's ``StatefulDataLoader`` (a dependency this project does
not have): it resumes mid-epoch by fast-forwarding the sampler, but, as its
tutorial says, worker-specific state such as the transforms' RNGs is the
dataset's to save and restore (``state_dict``/``load_state_dict`` per
worker), and the views would still depend on the worker count; it also
replaces the DataLoader that mmengine's Runner builds, and its state would
need a place in mmengine's checkpoints. Resuming from epoch checkpoints
(what the configs save) needs none of that.
"""
import contextlib
import random
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import get_worker_info

RngKey = Tuple[int, int, int]


class SeededIndex(int):
    """A dataset index that also carries ``rng_key``, ``(seed, epoch,
    position)``, the key of its sample's augmentation randomness.

    It is an ``int``, so any dataset or dataset wrapper can index with it;
    ``ImageListDataset`` reads the key.
    """

    def __new__(cls, index: int, rng_key: RngKey) -> 'SeededIndex':
        obj = super().__new__(cls, index)
        obj.rng_key = tuple(int(k) for k in rng_key)
        return obj

    def __reduce__(self):
        # to the dataloader workers
        return SeededIndex, (int(self), self.rng_key)


def rng_key_of(index) -> Optional[RngKey]:
    """The ``rng_key`` of a :class:`SeededIndex`, None for a plain index."""
    return getattr(index, 'rng_key', None)


def seed_rngs(rng_key: RngKey) -> None:
    """Seed python's ``random``, numpy's global RNG and torch's default CPU
    generator, the RNGs of mmcv/mmpretrain and torchvision transforms, from
    ``rng_key`` (each from 64 bits of ``numpy.random.SeedSequence``)."""
    words = np.random.SeedSequence(list(rng_key)).generate_state(4)
    random.seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words[:2])
    # the default generator alone: torch.manual_seed would also seed every
    # accelerator's generators, ~0.4 ms
    torch.default_generator.manual_seed(int(words[2]) << 32 | int(words[3]))


@contextlib.contextmanager
def seeded_rngs(rng_key: RngKey) -> Iterator[None]:
    """Run the block with the RNGs seeded from ``rng_key`` (:func:`seed_rngs`).

    In the main process (loading without workers) the caller's RNG states
    are restored afterwards, so the training process's random stream is the
    same as without data loading; a dataloader worker's RNGs serve only the
    pipeline, they are left as they are.
    """
    if get_worker_info() is not None:
        seed_rngs(rng_key)
        yield
        return
    states = (random.getstate(), np.random.get_state(),
              torch.default_generator.get_state())
    try:
        seed_rngs(rng_key)
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.default_generator.set_state(states[2])
