"""The ``data_format`` switch: train from image lists (``'lists'``, the
default) or from tar shards (``'shards'``, docs/shards.md).

``--cfg-options data_format=shards shard_root=<folder>`` (after
``lists_to_shards.py`` wrote ``<folder>/train-index.json``) turns the
train loader of a list config into a ``ShardDataset`` over that folder
with the same pipeline, classes and tolerance of undecodable images, no
sampler (an iterable dataset orders itself), and adds ``ShardEpochHook``.
Validation and test keep reading the image lists under ``data_root``:
they are small (50,000 images), read once an epoch.
"""
from typing import Any, Dict, Optional

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..utils.errors import ConfigError

FORMATS = ('lists', 'shards')
KEYS = ('data_format', 'shard_root')
# what the list dataset and the shard dataset share, and the shard
# dataset's own settings, given in --cfg-options as
# train_dataloader.dataset.<key>
SHARED_KEYS = ('pipeline', 'num_classes', 'max_bad_fraction', 'metainfo')
SHARD_KEYS = ('index', 'streams', 'shuffle_buffer', 'shard_url', 'seed')


def use_shards(cfg: Config, shard_root: str, index: str = 'train-index.json',
               loader: str = 'train_dataloader') -> None:
    """Read ``loader`` from the shards at ``shard_root`` (module
    docstring)."""
    loader_cfg = cfg[loader]
    listed = loader_cfg.dataset
    dataset = dict(type='ShardDataset', data_root=shard_root, index=index,
                   batch_size=loader_cfg.batch_size)
    dataset.update(
        {k: listed[k]
         for k in SHARED_KEYS + SHARD_KEYS if k in listed})
    if listed.get('type') == 'CustomImageList' and 'metainfo' not in listed:
        dataset.pop('metainfo', None)  # the index's class names
    loader_cfg.dataset = ConfigDict(dataset)
    loader_cfg.sampler = None
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'ShardEpochHook' for h in hooks):
        hooks.append(dict(type='ShardEpochHook'))
    cfg.custom_hooks = hooks


def apply_data_format(cfg: Config,
                      options: Optional[Dict[str, Any]] = None) -> None:
    """Apply ``data_format`` (and ``shard_root``) after ``--cfg-options``
    were merged; log what was set.

    Raises:
        ConfigError: an unknown format, ``shards`` without ``shard_root``,
            or a ``shard_root`` for lists.
    """
    data_format = cfg.get('data_format', 'lists')
    if data_format not in FORMATS:
        raise ConfigError(f'data_format={data_format!r}: choose from '
                          f'{", ".join(FORMATS)}')
    shard_root = cfg.get('shard_root')
    if data_format == 'lists':
        if shard_root is not None:
            raise ConfigError(
                f'shard_root={shard_root!r} but data_format=lists: pass '
                'data_format=shards to train from the shards')
        return
    if not isinstance(shard_root, str) or not shard_root:
        raise ConfigError('data_format=shards needs shard_root=<the folder '
                          'of train-index.json> (docs/shards.md)')
    if (options or {}).get('train_dataloader.dataset.type'):
        raise ConfigError('data_format=shards sets train_dataloader.dataset; '
                          'pass one of them')
    use_shards(cfg, shard_root)
    print_log(
        f'data_format=shards: train_dataloader reads ShardDataset at '
        f'{shard_root} (validation and test: the lists)', logger='current')
