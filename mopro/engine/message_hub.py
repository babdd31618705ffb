"""The Runner's message hub with histories that append in constant time.

Every iteration the hooks add about a dozen scalars to the message hub
(the learning rate, the losses and rates the model logs, the iteration and
data times, MoPro's phase flags), and mmengine's ``HistoryBuffer`` keeps
every value (up to a million) and appends with ``np.append``, which copies
the whole history: the cost of an iteration grows with the run. MoPro's
WebVision schedule has ~850k iterations; on a 2-core VM the hooks spent
~1 ms per iteration with 100k values of history and 6-8 ms with 400k
(0.15 ms with these buffers, at any length).
:class:`GrowingHistoryBuffer` keeps the same values in arrays with spare
room, grown by half when full, so an append costs the same at any
length.
"""
from collections import OrderedDict
from typing import Sequence

import numpy as np
from mmengine.logging import HistoryBuffer, MessageHub

_MIN_CAPACITY = 64


class GrowingHistoryBuffer(HistoryBuffer):
    """A ``HistoryBuffer`` whose :meth:`update` appends in amortised
    constant time.

    The values live in arrays with spare room, grown by half when full;
    ``_log_history`` and ``_count_history`` (what every statistic, ``data``
    and the state read) are views of their filled part, of the dtype
    ``np.append`` would give them, and trimmed to ``max_length`` as
    mmengine trims them. Arrays returned earlier are never written again.
    Copies and pickles are plain ``HistoryBuffer`` objects, so checkpoints
    hold only mmengine's classes.
    """

    def __init__(self, log_history: Sequence = (),
                 count_history: Sequence = (),
                 max_length: int = 1000000) -> None:
        super().__init__(list(log_history), list(count_history), max_length)
        self._store(self._log_history, self._count_history)

    @classmethod
    def of(cls, buffer: HistoryBuffer) -> 'GrowingHistoryBuffer':
        """The same history as ``buffer``, growing."""
        logs, counts = buffer.data
        grown = cls.__new__(cls)
        grown._set_default_statistics()
        grown.max_length = buffer.max_length
        grown._store(logs, counts)
        return grown

    def _store(self, logs: np.ndarray, counts: np.ndarray) -> None:
        """Hold ``logs`` and ``counts`` (equal lengths) with room for half as
        many more (at most 1.5 times mmengine's memory)."""
        size = len(logs)
        capacity = max(size + size // 2, _MIN_CAPACITY)
        self._logs = np.empty(capacity, dtype=logs.dtype)
        self._counts = np.empty(capacity, dtype=counts.dtype)
        self._logs[:size] = logs
        self._counts[:size] = counts
        self._begin, self._end = 0, size
        self._expose()

    def _expose(self) -> None:
        self._log_history = self._logs[self._begin:self._end]
        self._count_history = self._counts[self._begin:self._end]

    def update(self, log_val, count=1) -> None:
        """Append ``log_val`` with ``count``, as ``HistoryBuffer.update``
        does (the same checks and dtypes)."""
        if not isinstance(log_val, (int, float)) or \
                not isinstance(count, (int, float)):
            super().update(log_val, count)  # mmengine's TypeError
        if self._widens(log_val, count):  # np.append's result, stored anew
            super().update(log_val, count)
            self._store(self._log_history, self._count_history)
            return
        if self._end == len(self._logs):
            self._store(self._log_history, self._count_history)
        self._logs[self._end] = log_val
        self._counts[self._end] = count
        self._end += 1
        self._begin = max(self._begin, self._end - self.max_length)
        self._expose()

    def _widens(self, log_val, count) -> bool:
        """Whether appending changes a dtype (``np.append``'s promotion:
        an int history takes a float, ...)."""
        return (np.result_type(self._logs.dtype,
                               np.asarray(log_val)) != self._logs.dtype
                or np.result_type(self._counts.dtype,
                                  np.asarray(count)) != self._counts.dtype)

    def __reduce_ex__(self, protocol):
        """Copy and pickle as the plain ``HistoryBuffer`` of this history
        (made by its constructor, which copies the arrays)."""
        return HistoryBuffer, (self._log_history, self._count_history,
                               self.max_length)


class GrowingScalars(OrderedDict):
    """A message hub's ``log_scalars``: each ``HistoryBuffer`` put in (a
    new key's, or one loaded from a checkpoint) is kept as a
    :class:`GrowingHistoryBuffer`."""

    def __setitem__(self, key, value) -> None:
        if isinstance(value, HistoryBuffer) and \
                not isinstance(value, GrowingHistoryBuffer):
            value = GrowingHistoryBuffer.of(value)
        super().__setitem__(key, value)


def grow_histories(message_hub: MessageHub) -> MessageHub:
    """Make ``message_hub``'s scalar histories (present and future)
    :class:`GrowingHistoryBuffer` objects; return it."""
    scalars = GrowingScalars()
    for key, value in message_hub.log_scalars.items():
        scalars[key] = value
    message_hub._log_scalars = scalars
    return message_hub
