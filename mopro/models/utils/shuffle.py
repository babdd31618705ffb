"""MoCo's shuffling BatchNorm across ranks, with one all-to-all each way.

The momentum encoder's BatchNorm must not see a positive pair in one batch,
so MoCo (and the released MoPro code, ``_batch_shuffle_ddp``) encodes the
keys of a random permutation of the global batch: rank ``k`` encodes
positions ``k * b ... (k + 1) * b - 1`` of the permuted batch, and the keys
go back to the ranks their images came from. The released code builds this
by an all-gather of every rank's images, a permutation broadcast from rank
0 and an all-gather of the keys: each rank receives the whole global batch
of images every step, so its traffic grows with the number of ranks.

Here every rank draws the same permutation from a shared seed and the
iteration (:func:`shuffle_permutation`, no broadcast), works out on the host
which of its images go to which rank (:func:`shuffle_plan`), and exchanges
them with one uneven ``all_to_all_single``; the keys come back the same way
(:class:`CrossRankShuffle`). A rank sends and receives at most its own batch
of images and keys, whatever the number of ranks, and each rank's BatchNorm
batch is the one the gather version makes for the same permutation, image
for image and in the same order. The split sizes are host lists and the
index tensors reach the device by a non-blocking copy from pinned memory:
the exchange makes no host-device sync. Every rank's batch has the same
size ``b``, as the all-gather of the released code also requires.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
from mmengine.logging import MessageHub


def shuffle_permutation(global_batch: int, seed: int, step: int) -> np.ndarray:
    """The permutation of the global batch at ``step``: position ``p`` of
    the shuffled batch holds image ``perm[p]`` of the batch gathered in
    rank order. Every rank with the same ``seed`` draws the same one."""
    return np.random.default_rng([seed, step]).permutation(global_batch)


def training_iteration() -> Optional[int]:
    """The Runner's iteration in its training loop (mmengine's message
    hub, which a resumed run restores), or None outside one."""
    hub = MessageHub.get_current_instance()
    if hub.get_info('loop_stage') == 'train':
        return hub.get_info('iter')
    return None


@dataclass(frozen=True)
class ShufflePlan:
    """Where one rank's images go and where its share comes from, for one
    permutation (all host data).

    Attributes:
        send_splits: images this rank sends to each rank (its own count
            stays local, as ``all_to_all_single`` copies it).
        recv_splits: images it receives from each rank.
        send_order: its local images in the order they are sent (grouped by
            destination, each group in shuffled position order).
        recv_order: for each position of its share, the row of the received
            images that holds it.
        return_order: for each key sent back, its position in the share
            (the received rows' order).
        restore_order: for each local image, the row of the returned keys
            that holds its key.
    """
    send_splits: List[int]
    recv_splits: List[int]
    send_order: np.ndarray
    recv_order: np.ndarray
    return_order: np.ndarray
    restore_order: np.ndarray


def shuffle_plan(perm: np.ndarray, world_size: int, rank: int) -> ShufflePlan:
    """The exchange that gives ``rank`` positions ``rank * b ...
    (rank + 1) * b - 1`` of the global batch shuffled by ``perm`` (``b``:
    the batch of each rank)."""
    batch = len(perm) // world_size
    source = perm // batch  # the rank each shuffled position comes from
    # sent: this rank's images, in shuffled position order, which is also
    # destination order
    taken = np.flatnonzero(source == rank)
    send_order = perm[taken] % batch
    send_splits = np.bincount(taken // batch, minlength=world_size)
    # received: grouped by source rank, each group in position order
    share = source[rank * batch:(rank + 1) * batch]
    return_order = np.argsort(share, kind='stable')
    recv_splits = np.bincount(share, minlength=world_size)
    return ShufflePlan(send_splits=send_splits.tolist(),
                       recv_splits=recv_splits.tolist(), send_order=send_order,
                       recv_order=np.argsort(return_order),
                       return_order=return_order,
                       restore_order=np.argsort(send_order))


def _device_indices(arrays: List[np.ndarray],
                    device: torch.device) -> List[torch.Tensor]:
    """``arrays`` (equal lengths) as int64 index tensors on ``device``, in
    one copy; to a GPU from pinned memory without blocking the host (the
    caching host allocator keeps the buffer until the copy has run). The
    host tensor is written through numpy: no tensor is made from Python
    data."""
    host = torch.empty((len(arrays), len(arrays[0])), dtype=torch.int64,
                       pin_memory=device.type == 'cuda')
    host.numpy()[...] = arrays
    return list(host.to(device, non_blocking=True).unbind(0))


def _exchange(tensor: torch.Tensor, order: torch.Tensor, send: List[int],
              receive: List[int]) -> torch.Tensor:
    """Rows ``order`` of ``tensor`` sent in ``send`` splits; the rows
    received in ``receive`` splits, in rank order."""
    outgoing = tensor.index_select(0, order)
    incoming = torch.empty_like(outgoing)
    dist.all_to_all_single(incoming, outgoing, receive, send)
    return incoming


class CrossRankShuffle:
    """One step's shuffle of the global batch and its inverse.

    Args:
        perm: the step's permutation (:func:`shuffle_permutation`), the
            same on every rank.
        device: where the batch is.
    """

    def __init__(self, perm: np.ndarray, device: torch.device) -> None:
        self.plan = shuffle_plan(perm, dist.get_world_size(), dist.get_rank())
        (self._send_order, self._recv_order, self._return_order,
         self._restore_order) = _device_indices([
             self.plan.send_order, self.plan.recv_order,
             self.plan.return_order, self.plan.restore_order
         ], device)

    @torch.no_grad()
    def shuffle(self, inputs: torch.Tensor) -> torch.Tensor:
        """This rank's share of the shuffled global batch."""
        incoming = _exchange(inputs, self._send_order, self.plan.send_splits,
                             self.plan.recv_splits)
        return incoming.index_select(0, self._recv_order)

    @torch.no_grad()
    def unshuffle(self, outputs: torch.Tensor) -> torch.Tensor:
        """``outputs`` of the share back on the ranks of their images, in
        the order of the batch :meth:`shuffle` was given."""
        returned = _exchange(outputs, self._return_order,
                             self.plan.recv_splits, self.plan.send_splits)
        return returned.index_select(0, self._restore_order)


def step_shuffle(inputs: torch.Tensor, calls: int,
                 seed: Optional[int] = None) -> CrossRankShuffle:
    """The shuffle of a training step's batch ``inputs`` (this rank's).

    Its permutation comes from ``seed`` and the step: the Runner's
    iteration in its training loop (a resumed run draws the permutations of
    the uninterrupted one), else ``calls``, the caller's count of earlier
    shuffles. ``seed`` defaults to ``torch.initial_seed()``, the Runner's
    seed, which mmengine sets alike on every rank unless
    ``randomness.diff_rank_seed=True`` (refused with MoPro's shuffle by
    :func:`mopro.engine.run_checks.check_shared_seed`). Outside a Runner,
    seed torch alike on every rank: ranks with different seeds would
    exchange by different plans (gloo then stops with a size mismatch).
    """
    step = training_iteration()
    if step is None:
        step = calls
    seed = torch.initial_seed() if seed is None else seed
    perm = shuffle_permutation(inputs.shape[0] * dist.get_world_size(), seed,
                               step)
    return CrossRankShuffle(perm, inputs.device)
