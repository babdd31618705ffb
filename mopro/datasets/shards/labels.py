"""Cleaned labels of shard records, by shard and record key: what
``tools/noise_cleaning.py`` writes for shards and ``ShardDataset``
(``pseudo_label_file``) trains on.

The file is ``{"shards": {"<shard name>": {"<record key>": label}}}``:
the records kept by noise cleaning, grouped by the shard that holds them,
so that a reader knows how many records each shard keeps before it reads
one, and cuts the kept records into equal ranges per rank as it cuts the
index's (:mod:`~mopro.datasets.shards.streams`).
"""
import json
from typing import Dict, Sequence

from ...utils.errors import DataError
from .index import ShardIndex

ShardLabels = Dict[str, Dict[str, int]]


def group_by_shard(shard_names: Sequence[str], keys: Sequence[str],
                   labels: Sequence[int]) -> dict:
    """The file's object for records ``keys`` (in shard ``shard_names``)
    with ``labels``, shards and records in the order given."""
    shards: ShardLabels = {}
    for name, key, label in zip(shard_names, keys, labels):
        shards.setdefault(name, {})[key] = int(label)
    return dict(shards=shards)


def read_shard_labels(path: str, index: ShardIndex) -> ShardLabels:
    """Read a cleaned-label file of the shards of ``index``.

    Raises:
        FileNotFoundError: no such file.
        DataError: not JSON of this layout, a shard the index does not
            list, more records for a shard than it holds, or a label
            outside ``[0, num_classes)``, naming the file and the entry.
    """
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'{path}: pseudo-label file not found') from None
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f'{path}: not a JSON file ({err})') from None
    shards = data.get('shards') if isinstance(data, dict) else None
    if not isinstance(shards, dict) or \
            not all(isinstance(v, dict) for v in shards.values()):
        raise DataError(
            f'{path}: expected {{"shards": {{"<shard>": {{"<key>": label}}}}}}'
            ' (tools/noise_cleaning.py with data_format=shards); a '
            '{"relative/path": label} file is read with data_format=lists')
    records = {s.name: s.records for s in index.shards}
    for name, kept in shards.items():
        if name not in records:
            raise DataError(f'{path}: shard {name!r} is not in {index.path}')
        if len(kept) > records[name]:
            raise DataError(f'{path}: {len(kept)} records of shard {name!r}, '
                            f'which holds {records[name]}')
        for key, label in kept.items():
            if not isinstance(label, int) or isinstance(label, bool) or \
                    not 0 <= label < index.num_classes:
                raise DataError(
                    f'{path}: label {label!r} of {name}:{key} is not a '
                    f'class index in [0, {index.num_classes})')
    return shards
