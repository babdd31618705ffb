"""Images picked out of shards by path: for a tool that names its images
by file (``tools/svm_eval.py``) but reads them from the shards of their
lists.

A record's metadata holds its image's path relative to the image folder
of its list (``path``, :mod:`~mopro.datasets.shards.writer`); the shards
are read once, from start to end, in the index's order, and the bytes of
the records whose path is asked for are kept, the others passed over
undecoded; reading stops once every path asked for is found.
"""
import contextlib
from typing import Collection, Dict, NamedTuple, Sequence

from .index import read_index
from .records import read_records
from .streams import open_shard, shard_location


class ShardImage(NamedTuple):
    """A record's image: where it was read (``<shard>:<key>``, as
    ``ShardDataset`` names its samples) and its file's bytes."""
    name: str
    data: bytes


def read_images_by_path(index_files: Sequence[str],
                        paths: Collection[str]) -> Dict[str, ShardImage]:
    """The images of the records whose ``path`` is one of ``paths``, read
    from the shards of ``index_files``; a path no record holds is left
    out.

    The indexes are checked as :class:`~mopro.datasets.shards.ShardDataset`
    checks its own (:func:`~mopro.datasets.shards.read_index`): shards are
    files beside the index, never commands.

    Raises:
        FileNotFoundError: a missing index.
        DataError: a malformed index, or a cut or corrupt shard, naming it.
    """
    wanted = set(paths)
    found: Dict[str, ShardImage] = {}
    for index in [read_index(path) for path in index_files]:
        for shard in index.shards:
            location = shard_location(shard.name, index.folder, None)
            with open_shard(location) as f, \
                    contextlib.closing(read_records(f, location)) as records:
                for record in records:
                    path = record.meta.get('path')
                    if path in wanted and path not in found:
                        found[path] = ShardImage(f'{shard.name}:{record.key}',
                                                 record.image)
                        if len(found) == len(wanted):
                            return found
    return found
