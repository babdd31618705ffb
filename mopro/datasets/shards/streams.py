"""Which records each rank and stream of a shard dataset reads in an
epoch, and opening a shard (a file, or a ``pipe:`` command the user
configured).

An epoch puts the shards in a seeded order (``seed``, ``epoch``) and reads
their records as one sequence, cut into ``world_size x streams`` equal
ranges; range ``s`` belongs to rank ``s // streams``, stream
``s % streams``. A range starts and ends anywhere in a shard: only the
two shards at its ends are shared with the neighbouring ranges, so the
ranges differ by at most one record, whatever the shard sizes, and no
rank waits for another at the end of an epoch (DDP's all-reduce would
hang on an uneven last shard otherwise).
"""
import contextlib
import shlex
import subprocess
from typing import IO, Iterator, List, NamedTuple, Optional, Sequence

import numpy as np

from ...utils.errors import DataError


class Piece(NamedTuple):
    """Records ``[start, stop)`` of shard ``shard`` (its position in the
    index)."""
    shard: int
    start: int
    stop: int


def shard_order(num_shards: int, seed: int, epoch: int,
                shuffle: bool) -> np.ndarray:
    """The epoch's order of the shards: seeded from (seed, epoch), or the
    index's order."""
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng((seed, epoch)).permutation(num_shards)


def record_pieces(counts: Sequence[int], order: Sequence[int], lo: int,
                  hi: int) -> List[Piece]:
    """Records ``[lo, hi)`` of the shards (``counts``) read in ``order``,
    as the pieces of the shards they cover."""
    starts = np.concatenate([[0], np.cumsum([counts[i] for i in order])])
    pieces = []
    for pos, shard in enumerate(order):
        first, end = int(starts[pos]), int(starts[pos + 1])
        if end <= lo or first >= hi or first == end:
            continue
        pieces.append(
            Piece(int(shard),
                  max(lo, first) - first,
                  min(hi, end) - first))
    return pieces


def split_ranges(counts: Sequence[int], order: Sequence[int],
                 num_ranges: int) -> List[List[Piece]]:
    """The records of the shards (``counts``) read in ``order``, cut into
    ``num_ranges`` ranges of ``floor`` or ``ceil(total / num_ranges)``
    records (:func:`record_pieces`)."""
    total = int(sum(counts))
    bounds = [total * r // num_ranges for r in range(num_ranges + 1)]
    return [
        record_pieces(counts, order, bounds[r], bounds[r + 1])
        for r in range(num_ranges)
    ]


def shard_location(name: str, folder: str, shard_url: Optional[str]) -> str:
    """Where shard ``name`` (a file name from the index) is read:
    ``shard_url`` with ``{shard}`` replaced by it, else the index's
    folder. In a ``pipe:`` command the name is shell-quoted."""
    if shard_url is None:
        return f'{folder}/{name}'
    if shard_url.startswith('pipe:'):
        return shard_url.replace('{shard}', shlex.quote(name))
    return shard_url.replace('{shard}', name)


@contextlib.contextmanager
def open_shard(location: str) -> Iterator[IO[bytes]]:
    """A shard's bytes as a stream: a local file, or the standard output
    of the shell command after ``pipe:`` (a command the user configured).
    A command that ends with an error, once read to its end, is a
    :class:`DataError` naming it; one stopped early is ended."""
    if not location.startswith('pipe:'):
        try:
            f = open(location, 'rb', buffering=1 << 20)
        except OSError as err:
            raise DataError(f'{location}: cannot open shard ({err})') \
                from None
        with f:
            yield f
        return
    command = location[len('pipe:'):]
    proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE,
                            bufsize=1 << 20)
    try:
        yield proc.stdout
        finished = proc.stdout.read(1) == b''
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if not finished:
        proc.kill()
    proc.stdout.close()
    code = proc.wait()
    if finished and code != 0:
        raise DataError(f'{location}: exit status {code}')
