"""The ``data_format`` switch: read image lists (``'lists'``, the default)
or tar shards (``'shards'``, docs/shards.md).

``--cfg-options data_format=shards shard_root=<folder>`` (after
``lists_to_shards.py`` wrote ``<folder>/train-index.json``) turns the
train loader of a list config into a ``ShardDataset`` over that folder
with the same pipeline, classes and tolerance of undecodable images, no
sampler (an iterable dataset orders itself), and adds ``ShardEpochHook``.
``shard_indexes`` names the index of each loader read from shards
(``train``, and ``val`` or ``test`` where given, e.g.
``shard_indexes.val=val-index.json``); the other loaders keep reading
the image lists under ``data_root``. A cleaned-label config
(``CleanedWebVision``) keeps its ``pseudo_label_file``: over shards, the
file noise cleaning wrote over the same shards.
"""
from typing import Any, Dict, Optional

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..utils.errors import ConfigError

FORMATS = ('lists', 'shards')
KEYS = ('data_format', 'shard_root', 'shard_indexes')
DEFAULT_INDEXES = dict(train='train-index.json')
# what the list dataset and the shard dataset share, and the shard
# dataset's own settings, given in --cfg-options as
# <stage>_dataloader.dataset.<key>
SHARED_KEYS = ('pipeline', 'num_classes', 'max_bad_fraction', 'metainfo',
               'test_mode')
SHARD_KEYS = ('streams', 'shuffle_buffer', 'shard_url', 'seed',
              'pseudo_label_file')


def use_shards(cfg: Config, shard_root: str, index: str = 'train-index.json',
               loader: str = 'train_dataloader') -> None:
    """Read ``loader`` from the shards of ``index`` at ``shard_root``
    (module docstring); the train loader gets ``ShardEpochHook``."""
    loader_cfg = cfg[loader]
    listed = loader_cfg.dataset
    dataset = dict(type='ShardDataset', data_root=shard_root, index=index,
                   batch_size=loader_cfg.batch_size)
    dataset.update(
        {k: listed[k]
         for k in SHARED_KEYS + SHARD_KEYS if k in listed})
    loader_cfg.dataset = ConfigDict(dataset)
    loader_cfg.sampler = None
    if loader != 'train_dataloader':
        return
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'ShardEpochHook' for h in hooks):
        hooks.append(dict(type='ShardEpochHook'))
    cfg.custom_hooks = hooks


def apply_data_format(cfg: Config,
                      options: Optional[Dict[str, Any]] = None) -> None:
    """Apply ``data_format`` (with ``shard_root`` and ``shard_indexes``)
    after ``--cfg-options`` were merged; log what was set.

    Raises:
        ConfigError: an unknown format, ``shards`` without ``shard_root``,
            a ``shard_root`` for lists, an index for a loader the config
            does not have, or a loader's dataset type given beside it.
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
                'data_format=shards to read the shards')
        return
    if not isinstance(shard_root, str) or not shard_root:
        raise ConfigError('data_format=shards needs shard_root=<the folder '
                          'of train-index.json> (docs/shards.md)')
    indexes = dict(cfg.get('shard_indexes') or DEFAULT_INDEXES)
    for stage, index in indexes.items():
        loader = f'{stage}_dataloader'
        if not isinstance(cfg.get(loader), dict):
            raise ConfigError(f'shard_indexes.{stage}={index!r}: the config '
                              f'has no {loader}')
        if (options or {}).get(f'{loader}.dataset.type'):
            raise ConfigError(f'data_format=shards sets {loader}.dataset; '
                              'pass one of them')
        use_shards(cfg, shard_root, index, loader)
        print_log(
            f'data_format=shards: {loader} reads ShardDataset at '
            f'{shard_root} ({index})', logger='current')
