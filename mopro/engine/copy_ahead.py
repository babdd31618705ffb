"""The next training batch copied to the GPU one step ahead, on a side
stream.

With the CPU data path a batch is two uint8 views (77 MB at 256 images)
and the labels, pinned by the dataloader. The data preprocessor copies
them without blocking, but on the training stream: the copy of batch k
runs between step k - 1 and step k, and the GPU waits for it. Here the
copy of batch k + 1 is queued on a copy stream while step k runs, and
step k + 1 waits for it on the device only (an event), so the copy
overlaps the step.

:class:`CopyAheadIterator` wraps the train loop's batches (installed by
:class:`~mopro.engine.hooks.CopyAheadHook`). When the loop starts a step
on batch k, the hook fetches batch k + 1 from it
(:meth:`CopyAheadIterator.peek`) and starts its copy (and batch k's if
none was started: the first batch, and the first after a resume), then
hands batch k's copies over to the training stream
(:class:`CopyStreams`). A batch is fetched early and copied only when the
loop trains on the batch before it: the batches that a resumed loop skips
are never copied, and nothing is fetched after the last iteration. Off
CUDA there is nothing to copy and no hook installs this.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch

SLOT_KEY = 'copy_ahead'


@dataclass
class DeviceBatch:
    """A batch's tensors copied to the device, and the event after which
    the copies are complete."""
    inputs: object  # a tensor or a list of tensors, as in the batch
    labels: Optional[torch.Tensor]
    ready: object

    def tensors(self) -> List[torch.Tensor]:
        views = self.inputs if isinstance(self.inputs,
                                          (list, tuple)) else [self.inputs]
        return [*views, *([] if self.labels is None else [self.labels])]


class CopyStreams:
    """The copy stream of one CUDA device and the protocol around it:

    1. :meth:`start`: with the copy stream current, each tensor of the
       batch (``inputs``: a tensor or a list of them; ``data_samples`` if a
       tensor) is copied to the device without blocking: the copies are
       allocated in the copy stream's memory pool; an event recorded on the
       copy stream after them marks their end;
    2. :meth:`hand_over`: the consumer (the training stream) waits for that
       event, and each copy is recorded on the consumer (``record_stream``),
       so that its memory returns to the copy stream's pool only after the
       consumer's work on it has finished; the batch's tensors are replaced
       by the copies, which the data preprocessor then leaves where they
       are.

    The copy stream waits for nothing: it writes only memory of its own
    pool, which the allocator hands out again only after the consumer's
    recorded work, and reads pinned host memory nothing else writes.
    The device and stream calls go through :meth:`use`, :meth:`copy`,
    :meth:`record`, :meth:`event` and :meth:`consumer`, so the protocol
    runs on the CPU with stand-in streams in the tests.
    """

    def __init__(self, stream, device: torch.device) -> None:
        self.stream = stream
        self.device = device

    @classmethod
    def for_device(cls, device: torch.device) -> 'CopyStreams':
        return cls(torch.cuda.Stream(device), device)

    @contextmanager
    def use(self, stream) -> Iterator[None]:
        with torch.cuda.stream(stream):
            yield

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)

    @staticmethod
    def record(tensor: torch.Tensor, stream) -> None:
        tensor.record_stream(stream)

    @staticmethod
    def event(stream):
        """An event recorded on ``stream`` now."""
        return stream.record_event()

    def consumer(self):
        """The stream the training step runs on."""
        return torch.cuda.current_stream(self.device)

    def start(self, batch: dict) -> DeviceBatch:
        """Queue the copies of ``batch``'s tensors on the copy stream."""
        inputs, labels = batch['inputs'], batch.get('data_samples')
        with self.use(self.stream):
            if isinstance(inputs, (list, tuple)):
                inputs = type(inputs)(self.copy(view) for view in inputs)
            else:
                inputs = self.copy(inputs)
            labels = self.copy(labels) if isinstance(labels,
                                                     torch.Tensor) else None
        return DeviceBatch(inputs, labels, self.event(self.stream))

    def hand_over(self, batch: dict, copied: DeviceBatch) -> None:
        """Make ``copied`` safe to use, and to free, on the consumer, and
        put the copies in ``batch``."""
        consumer = self.consumer()
        consumer.wait_event(copied.ready)
        for tensor in copied.tensors():
            self.record(tensor, consumer)
        batch['inputs'] = copied.inputs
        if copied.labels is not None:
            batch['data_samples'] = copied.labels


def copyable(batch) -> bool:
    """Whether ``batch`` is a dict whose ``inputs`` are a tensor or a list
    of tensors (what :meth:`CopyStreams.start` copies)."""
    if not isinstance(batch, dict):
        return False
    inputs = batch.get('inputs')
    if isinstance(inputs, (list, tuple)):
        return bool(inputs) and all(
            isinstance(view, torch.Tensor) for view in inputs)
    return isinstance(inputs, torch.Tensor)


class CopySlot:
    """Attached to a batch (``batch['copy_ahead']``): its copies, once
    started."""

    def __init__(self) -> None:
        self.copied: Optional[DeviceBatch] = None


def slot(batch) -> Optional[CopySlot]:
    """The :class:`CopySlot` of ``batch``, None if it has none."""
    return batch.get(SLOT_KEY) if isinstance(batch, dict) else None


_END = object()


class CopyAheadIterator:
    """An iterator over training batches that can fetch the next batch
    before the loop asks for it (:meth:`peek`). Each batch that
    :func:`copyable` accepts is a shallow copy of the loader's dict (the
    hook puts the device copies in it) with a :class:`CopySlot`; other
    batches pass as they are.

    Other attributes are those of the wrapped iterator (e.g. mmengine's
    ``_InfiniteDataloaderIterator``) or data loader.
    """

    def __init__(self, batches) -> None:
        self._batches = batches
        self._source: Optional[Iterator] = None
        self._next = None  # a batch fetched by peek, or _END

    def __iter__(self) -> 'CopyAheadIterator':
        return self

    def __next__(self):
        batch = self._next if self._next is not None else self._fetch()
        self._next = None
        if batch is _END:
            raise StopIteration
        return batch

    def peek(self):
        """The batch the next ``next()`` returns (fetched now if it was
        not), or None at the end."""
        if self._next is None:
            self._next = self._fetch()
        return None if self._next is _END else self._next

    def _fetch(self):
        if self._source is None:
            self._source = iter(self._batches)
        batch = next(self._source, _END)
        if copyable(batch):
            batch = dict(batch)
            batch[SLOT_KEY] = CopySlot()
        return batch

    def __getattr__(self, name: str):
        if name == '_batches':  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self._batches, name)


class CopyAheadLoader:
    """A data loader whose every iteration (epoch) is a
    :class:`CopyAheadIterator`, the current one in :attr:`iterator`; other
    attributes and ``len`` are the wrapped loader's."""

    def __init__(self, loader) -> None:
        self._loader = loader
        self.iterator: Optional[CopyAheadIterator] = None

    def __iter__(self) -> CopyAheadIterator:
        self.iterator = CopyAheadIterator(self._loader)
        return self.iterator

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str):
        if name == '_loader':
            raise AttributeError(name)
        return getattr(self._loader, name)


def copy_streams(device: torch.device) -> Optional[CopyStreams]:
    """The :class:`CopyStreams` of a CUDA device (a new copy stream); None
    off CUDA, where there is nothing to copy."""
    if device.type != 'cuda':
        return None
    return CopyStreams.for_device(device)
