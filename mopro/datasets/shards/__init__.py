"""Sharded input: image lists written into WebDataset-style tar shards
(``tools/dataset_converters/lists_to_shards.py``) and read back as a
stream (docs/shards.md)."""
from .dataset import ShardDataset
from .index import ShardIndex, ShardInfo, read_index
from .records import Record, read_records
from .sources import ListSettings, SourceList, read_source_lists
from .writer import Conversion, convert

__all__ = [
    'ShardDataset', 'ShardIndex', 'ShardInfo', 'read_index', 'Record',
    'read_records', 'ListSettings', 'SourceList', 'read_source_lists',
    'Conversion', 'convert'
]
