"""The index of a set of shards: which tar files, how many records each.

Written by ``tools/dataset_converters/lists_to_shards.py`` beside the
shards (``<prefix>-index.json``) and read by :class:`ShardDataset`. Shard
names are file names relative to the index's folder, never commands or
URLs: a command (``pipe:...``) runs only where the user typed it in a
config or on the command line (``ShardDataset(shard_url=...)``), never
because a data file says so.
"""
import json
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import List

from ...utils.errors import DataError

FORMAT = 'webdataset-tar'
VERSION = 1
# a relative file name: letters, digits, '.', '_', '-' in '/'-separated
# parts, no part starting with '.' (no '..', no hidden files), no ':'
_SAFE_NAME = re.compile(r'[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-]'
                        r'[A-Za-z0-9._-]*)*')


def index_name(prefix: str) -> str:
    """The index file of the shards ``<prefix>-NNNNNN.tar``."""
    return f'{prefix}-index.json'


def shard_name(prefix: str, number: int) -> str:
    """The file name of shard ``number``: ``<prefix>-%06d.tar``."""
    return f'{prefix}-{number:06d}.tar'


def check_shard_name(name: str, where: str) -> str:
    """``name`` if it is a plain relative file name; else a
    :class:`DataError` naming ``where``: an index names files, and a
    ``pipe:`` command, URL, absolute path or ``..`` in it is refused."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise DataError(
            f'{where}: shard name {name!r} is not a file name relative to '
            'the index (commands such as pipe:... and URLs are taken only '
            'from the config: ShardDataset shard_url)')
    return name


@dataclass
class ShardInfo:
    """One shard: its file name (relative to the index), record count and
    size in bytes."""
    name: str
    records: int
    bytes: int


@dataclass
class ShardIndex:
    """The shards of one conversion, in order, and what was converted.

    Attributes:
        path: the index file.
        shards: the shards, in record order.
        num_classes: labels lie in ``[0, num_classes)``.
        classes: class names in label order, where the lists had them.
        lists: per converted list its name, file and record count.
        bad_images: per undecodable image its key, path and error; these
            were not written.
        conversion: the converter's settings (seed, shard size), so that a
            re-run with other settings is refused rather than mixed in.
    """
    path: str
    shards: List[ShardInfo]
    num_classes: int
    classes: List[str] = field(default_factory=list)
    lists: List[dict] = field(default_factory=list)
    bad_images: List[dict] = field(default_factory=list)
    conversion: dict = field(default_factory=dict)

    @property
    def num_records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def folder(self) -> str:
        return osp.dirname(osp.abspath(self.path))

    def to_json(self) -> dict:
        return dict(format=FORMAT, version=VERSION,
                    num_classes=self.num_classes, classes=self.classes,
                    records=self.num_records, bytes=sum(s.bytes
                                                        for s in self.shards),
                    shards=[vars(s) for s in self.shards], lists=self.lists,
                    bad_images=self.bad_images, conversion=self.conversion)


def _field(obj: dict, key: str, kind: type, where: str):
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f'{where}: {key!r} missing or not a '
                        f'{kind.__name__} ({value!r})')
    return value


def read_index(path: str) -> ShardIndex:
    """Read and check a shard index.

    Raises:
        FileNotFoundError: no index at ``path``.
        DataError: not an index of this format, or a shard entry that is
            malformed or names anything but a relative file, naming the
            index and the entry.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: shard index not found (written by '
                                'tools/dataset_converters/lists_to_shards.py)')
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f'{path}: not a JSON shard index ({err})') from None
    if not isinstance(obj, dict) or obj.get('format') != FORMAT:
        raise DataError(f'{path}: not a shard index (format {FORMAT!r})')
    if obj.get('version') != VERSION:
        raise DataError(f'{path}: shard index version '
                        f'{obj.get("version")!r}, this code reads {VERSION}')
    shards = []
    for i, entry in enumerate(_field(obj, 'shards', list, path)):
        where = f'{path}: shards[{i}]'
        if not isinstance(entry, dict):
            raise DataError(f'{where}: not an object')
        name = check_shard_name(entry.get('name'), where)
        shards.append(
            ShardInfo(name, _field(entry, 'records', int, where),
                      _field(entry, 'bytes', int, where)))
    if not shards:
        raise DataError(f'{path}: the index lists no shards')
    return ShardIndex(path, shards, _field(obj, 'num_classes', int, path),
                      obj.get('classes') or [],
                      obj.get('lists') or [],
                      obj.get('bad_images') or [],
                      obj.get('conversion') or {})
