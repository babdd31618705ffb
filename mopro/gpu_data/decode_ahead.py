"""Decoding one training batch ahead, in a background thread.

The GPU data path's decoder makes the host wait for the whole decode (it
synchronises its stream, :mod:`mopro.gpu_data.decoding`). So the
batch after the current one is decoded in a background thread while the
training thread queues the current step: the wait leaves the training
thread's critical path.

:class:`DecodeAheadIterator` wraps the train loop's batches (installed by
``DecodeAheadHook``): it fetches each batch one ahead of the loop and
attaches a :class:`DecodeSlot` to each. The preprocessor, when it takes
batch k, starts the decoding of batch k + 1 (:meth:`DecodeSlot.start_next`)
and takes batch k's decoded images from its slot (decoded inline if none
was started: the first batch, and the first after a resume). Decoding
depends on the bytes only; the random views are drawn from (seed, rank,
iteration) when the batch is used, so views, and a resumed run's views,
are those of a loop without this wrapper. Batches a resumed loop skips are
fetched but never decoded. On a CPU the same happens, with the decoding in
the background thread on the CPU.
"""
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional

SLOT_KEY = 'decode_ahead'

_EXECUTOR: Optional[ThreadPoolExecutor] = None


def decode_executor() -> ThreadPoolExecutor:
    """The process's one decoding thread."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(1, thread_name_prefix='decode_ahead')
    return _EXECUTOR


class DecodeSlot:
    """Attached to a batch (``batch['decode_ahead']``): the future of its
    decoding, if started, and the batch after it, if fetched."""

    def __init__(self) -> None:
        self.future: Optional[Future] = None
        self.following: Optional[dict] = None

    def start_next(self, decode: Callable[[dict], object]) -> None:
        """Start ``decode(next batch)`` in the background thread (once)."""
        following = self.following
        if following is None:
            return
        slot = following[SLOT_KEY]
        if slot.future is None:
            slot.future = decode_executor().submit(decode, following)
        self.following = None  # the chain holds no decoded batch


class DecodeAheadIterator:
    """An iterator over training batches (dicts) that fetches one batch
    ahead and links each to the next through a :class:`DecodeSlot`.

    Other attributes are those of the wrapped iterator (e.g. mmengine's
    ``_InfiniteDataloaderIterator``) or data loader.
    """

    def __init__(self, batches) -> None:
        self._batches = batches
        self._source: Optional[Iterator] = None
        self._ahead: Optional[dict] = None

    def __iter__(self) -> 'DecodeAheadIterator':
        return self

    def __next__(self) -> dict:
        if self._source is None:
            self._source = iter(self._batches)
        batch = self._ahead if self._ahead is not None else \
            _with_slot(next(self._source))
        self._ahead = _with_slot(next(self._source, None))
        batch[SLOT_KEY].following = self._ahead
        return batch

    def __getattr__(self, name: str):
        if name == '_batches':  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self._batches, name)


class DecodeAheadLoader:
    """A data loader whose every iteration (epoch) is a
    :class:`DecodeAheadIterator`; other attributes and ``len`` are the
    wrapped loader's."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __iter__(self) -> DecodeAheadIterator:
        return DecodeAheadIterator(self._loader)

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str):
        if name == '_loader':
            raise AttributeError(name)
        return getattr(self._loader, name)


def _with_slot(batch: Optional[dict]) -> Optional[dict]:
    if batch is not None:
        batch.setdefault(SLOT_KEY, DecodeSlot())
    return batch
