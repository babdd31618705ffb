"""Tar shards of the fake datasets, and a process of a gloo group reading
them."""
import json
import os.path as osp
from typing import List

import torch
import torch.distributed as dist
from mmengine.dist import collect_results
from torch.utils.data import DataLoader

from mopro.datasets.shards import (Conversion, ListSettings, Record,
                                   ShardDataset, ShardIndex, convert,
                                   read_records, read_source_lists)
from mopro.datasets.shards.sources import class_names


def make_shards(data_root: str, out: str, kind: str = 'webvision',
                num_classes: int = 4, shard_records: int = 5,
                **settings) -> str:
    """Convert the lists of ``data_root`` into ``out`` (one process, the
    split as the prefix, as the tool names them); return ``out``."""
    lists_settings = ListSettings(kind, data_root, num_classes=num_classes,
                                  **settings)
    convert(
        read_source_lists(lists_settings),
        Conversion(out, lists_settings.split,
                   shard_records=shard_records, workers=1), num_classes,
        class_names(lists_settings), report=lambda line: None)
    return out


def shard_records(index: ShardIndex) -> List[Record]:
    """Every record of the shards of ``index``, in the index's order."""
    records = []
    for shard in index.shards:
        path = osp.join(index.folder, shard.name)
        with open(path, 'rb') as f:
            records += list(read_records(f, path))
    return records


def record_keys(batch: list) -> list:
    """The record keys of a batch of samples (a collate function)."""
    return [sample['record_key'] for sample in batch]


def read_as_rank(rank: int, world: int, init_file: str, shards: str,
                 out: str) -> None:
    """One process of a gloo group: an epoch of a ShardDataset through a
    2-worker DataLoader, an all-reduce per batch (as DDP's backward), the
    record keys read written to ``out``-<rank>.json."""
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    dataset = ShardDataset(shards, batch_size=2, streams=2)
    dataset.set_epoch(3, seed=5)
    loader = DataLoader(dataset, batch_size=2, num_workers=2,
                        collate_fn=record_keys, multiprocessing_context='fork')
    keys, steps = [], 0
    for batch in loader:
        keys += batch
        step = torch.ones(1)
        dist.all_reduce(step)
        steps += 1
    with open(osp.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(keys=keys, steps=steps, length=len(loader)), f)
    dist.destroy_process_group()


def evaluate_as_rank(rank: int, world: int, init_file: str, shards: str,
                     out: str) -> None:
    """One process of a gloo group: a test-mode ShardDataset through a
    2-worker DataLoader, the record keys gathered by mmengine's
    ``collect_results`` (as its evaluators gather results), rank 0's
    written to ``out``/collected.json."""
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    dataset = ShardDataset(shards, batch_size=2, test_mode=True)
    loader = DataLoader(dataset, batch_size=2, num_workers=2,
                        collate_fn=record_keys, multiprocessing_context='fork')
    keys = [key for batch in loader for key in batch]
    collected = collect_results(keys, len(dataset), 'cpu')
    if rank == 0:
        with open(osp.join(out, 'collected.json'), 'w') as f:
            json.dump(dict(collected=collected, rank0=keys), f)
    dist.destroy_process_group()


def clean_as_rank(rank: int, world: int, init_file: str, config: str,
                  options: dict, checkpoint: str, out: str) -> None:
    """One process of a gloo group: ``tools/noise_cleaning.py``'s work
    (``clean_noisy_dataset``) on ``config`` with ``options``, batches of 3
    over 2 dataloader workers; rank 0 writes ``out`` and the work dir."""
    from mopro.apis import clean_noisy_dataset
    from helpers.configs import tool_config
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world)
    cfg = tool_config(config, options, work_dir=options['work_dir'])
    clean_noisy_dataset(cfg, checkpoint, out, batch_size=3, num_workers=2,
                        device='cpu')
    dist.destroy_process_group()
