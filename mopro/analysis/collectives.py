"""What each collective of a training step sends and receives, per rank.

:class:`CollectiveLog` records, while it is active, every call of
``torch.distributed``'s ``all_gather``, ``all_gather_into_tensor``,
``all_reduce``, ``broadcast`` and ``all_to_all_single`` in this process
(mmengine's and mmpretrain's wrappers call these): the operation, its role
in MoPro's step (:data:`ROLES`, from the functions that called it), the
bytes of the tensors handed in, and the bytes this process really sent and
received during the call, read from the kernel's counters
(:func:`socket_bytes`; Linux, gloo's TCP transport).
:meth:`CollectiveLog.region` measures a stretch of code the same way: DDP's
gradient all-reduce runs from C++ during the backward pass, out of reach of
the Python wrappers.

:func:`ring_bytes` gives what NCCL's ring algorithms send and receive per
rank for a world size, the arithmetic with which ``docs/speed.md``
extends the measured figures to 64 and 512 GPUs.
"""
import contextlib
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist

from ..utils.errors import UserError

# the function that issues each of MoPro's per-step collectives (the
# innermost one of the calling functions that is named here gives the role)
ROLES = {
    'CrossRankShuffle.shuffle': 'shuffle_images',
    'CrossRankShuffle.unshuffle': 'shuffle_keys',
    'batch_shuffle_ddp': 'shuffle_images',
    'batch_unshuffle_ddp': 'shuffle_keys',
    'MoPro._update_queue': 'queue_keys',
    'MoPro._update_prototypes': 'prototype_update',
    'NonFiniteGuard._all_finite': 'nonfinite_flag',
}
OPS = ('all_gather', 'all_gather_into_tensor', 'all_reduce', 'broadcast',
       'all_to_all_single')
# struct tcp_info (linux/tcp.h): tcpi_bytes_received, a __u64, since 4.1
_TCPI_BYTES_RECEIVED = 128


@dataclass
class Collective:
    """One recorded call (or region): its bytes on this rank."""
    op: str
    role: str
    payload_bytes: int  # the tensors this rank handed in
    sent_bytes: int  # written to its sockets meanwhile
    received_bytes: int  # received on its TCP sockets meanwhile


def _bytes_written() -> int:
    """Bytes this process has written through ``write``-like calls
    (``wchar`` of /proc/self/io: gloo's socket writes count there)."""
    with open('/proc/self/io') as f:
        for line in f:
            if line.startswith('wchar:'):
                return int(line.split()[1])
    raise UserError('/proc/self/io has no wchar line')


def _tcp_bytes_received() -> Dict[str, int]:
    """Bytes received so far on each TCP socket this process has open
    (TCP_INFO's ``tcpi_bytes_received``), by the socket's inode."""
    received = {}
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink(f'/proc/self/fd/{fd}')
            if not target.startswith('socket:'):
                continue
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:  # closed since the listing
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.family in (
                    socket.AF_INET, socket.AF_INET6):
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                       256)
                received[target] = struct.unpack_from('Q', info,
                                                      _TCPI_BYTES_RECEIVED)[0]
        finally:
            sock.close()
    return received


class SocketCounters(NamedTuple):
    """The kernel's counts of what this process sent and received so far:
    the bytes it wrote (around code that writes no file, these are its
    socket writes) and those each of its TCP sockets received."""
    written: int
    received: Dict[str, int]

    def since(self, before: 'SocketCounters') -> Tuple[int, int]:
        """(bytes sent, bytes received) since ``before``; a socket opened
        meanwhile counts from 0 (gloo opens some on its first use), one
        closed meanwhile is left out."""
        received = sum(count - before.received.get(sock, 0)
                       for sock, count in self.received.items())
        return self.written - before.written, received


def socket_bytes() -> SocketCounters:
    """This process's :class:`SocketCounters` now."""
    return SocketCounters(_bytes_written(), _tcp_bytes_received())


def check_measurable() -> None:
    """Raise a :class:`UserError` where :func:`socket_bytes` cannot read
    the kernel's counters (they are Linux's)."""
    if not sys.platform.startswith('linux') or not os.path.exists(
            '/proc/self/io'):
        raise UserError('measuring the bytes of collectives reads Linux '
                        f'counters (/proc/self/io), not on {sys.platform}')


def _payload(op: str, args: tuple, kwargs: dict) -> int:
    """Bytes of the tensor(s) a rank hands to ``op``."""
    names = {
        'all_gather': ('tensor', 1),
        'all_gather_into_tensor': ('input_tensor', 1),
        'all_reduce': ('tensor', 0),
        'broadcast': ('tensor', 0),
        'all_to_all_single': ('input', 1),
    }
    name, position = names[op]
    tensor = kwargs[name] if name in kwargs else args[position]
    return tensor.numel() * tensor.element_size()


def _role(frame) -> str:
    """The role of the innermost calling function named in
    :data:`ROLES`; ``'other'`` if none is."""
    while frame is not None:
        role = ROLES.get(frame.f_code.co_qualname)
        if role is not None:
            return role
        frame = frame.f_back
    return 'other'


class CollectiveLog:
    """Record the bytes of every collective call while active (a context
    manager; see the module docstring).

    Attributes:
        records: one :class:`Collective` per call or region, in order.
    """

    def __init__(self) -> None:
        check_measurable()
        self.records: List[Collective] = []
        self._saved: Dict[str, Callable] = {}
        self._in_region = False

    def __enter__(self) -> 'CollectiveLog':
        for op in OPS:
            self._saved[op] = getattr(dist, op)
            setattr(dist, op, self._wrap(op, self._saved[op]))
        return self

    def __exit__(self, *exc) -> None:
        for op, original in self._saved.items():
            setattr(dist, op, original)
        self._saved = {}

    def _wrap(self, op: str, original: Callable) -> Callable:

        def measured(*args, **kwargs):
            if self._in_region:  # counted with its region
                return original(*args, **kwargs)
            payload = _payload(op, args, kwargs)
            role = _role(sys._getframe(1))
            with self._measure(op, role, payload):
                return original(*args, **kwargs)

        return measured

    @contextlib.contextmanager
    def _measure(self, op: str, role: str, payload: int) -> Iterator[None]:
        before = socket_bytes()
        yield
        self.records.append(
            Collective(op, role, payload,
                       *socket_bytes().since(before)))

    @contextlib.contextmanager
    def region(self, role: str, payload: int = 0) -> Iterator[None]:
        """Record the bytes of the block as one entry (``op='region'``),
        the collectives called in it included (DDP's comm hooks call
        ``all_reduce`` from the backward pass)."""
        self._in_region = True
        try:
            with self._measure('region', role, payload):
                yield
        finally:
            self._in_region = False

    def take(self) -> List[Collective]:
        """The records so far, and an empty log."""
        records, self.records = self.records, []
        return records


def by_role(records: List[Collective],
            steps: int = 1) -> Dict[str, Dict[str, object]]:
    """``records`` of ``steps`` steps summed per role, per step: the
    operations, calls, payload, sent and received bytes."""
    roles: Dict[str, Dict[str, object]] = {}
    for record in records:
        entry = roles.setdefault(
            record.role,
            dict(ops=[], calls=0, payload_bytes=0, sent_bytes=0,
                 received_bytes=0))
        if record.op not in entry['ops']:
            entry['ops'].append(record.op)
        entry['calls'] += 1
        for key in ('payload_bytes', 'sent_bytes', 'received_bytes'):
            entry[key] += getattr(record, key)
    for entry in roles.values():
        for key in ('calls', 'payload_bytes', 'sent_bytes', 'received_bytes'):
            entry[key] /= steps
    return roles


def ring_bytes(op: str, payload: float, world_size: int,
               local: Optional[float] = None) -> float:
    """Bytes each rank sends (and receives) in ``op`` with NCCL's ring
    algorithms, for ``payload`` bytes handed in per rank.

    - ``all_gather``: the other ranks' payloads pass through every rank,
      ``(W - 1) * payload``;
    - ``all_reduce``: reduce-scatter then all-gather of ``payload / W``
      chunks, ``2 (W - 1) / W * payload``;
    - ``broadcast``: the payload, once (pipelined ring);
    - ``all_to_all_single``: the payload less what stays on the rank
      (``local``; on average ``payload / W``).
    """
    if op == 'all_gather':
        return (world_size - 1) * payload
    if op == 'all_reduce':
        return 2 * (world_size - 1) / world_size * payload
    if op == 'broadcast':
        return payload
    if op == 'all_to_all_single':
        return payload - (payload / world_size if local is None else local)
    raise ValueError(f'no ring arithmetic for {op!r}')


def ddp_bucket_bytes(ddp: torch.nn.Module) -> List[int]:
    """The bytes of each gradient bucket of a
    ``DistributedDataParallel`` module, in the order they are reduced
    (after its first iteration, in which DDP rebuilds its buckets in the
    order the gradients became ready)."""
    return [
        bucket.buffer().numel() * bucket.buffer().element_size()
        for bucket in ddp.reducer._get_zeros_like_grad_buckets()
    ]
