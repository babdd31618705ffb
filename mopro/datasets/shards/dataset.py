"""Training (and single-process testing) over tar shards, streamed."""
import contextlib
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, TRANSFORMS
from torch.utils.data import IterableDataset, get_worker_info

from ...utils.errors import ConfigError, DataError
from ...utils.validate import check_int, check_number
from ..image_list_dataset import check_bad_fraction, indexed_metainfo
from ..seeding import seeded_rngs
from ..transforms import ImageDecodeError
from .index import ShardIndex, read_index
from .labels import read_shard_labels
from .records import Record, read_records
from .streams import (Piece, open_shard, record_pieces, shard_location,
                      shard_order, split_ranges)

# (record, shard number, record number in the shard)
Item = Tuple[Record, int, int]


def shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """``items`` through a shuffle buffer of ``size``: each item out is
    drawn uniformly from the buffer and replaced by the next one in."""
    buffer = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    for j in rng.permutation(len(buffer)):
        yield buffer[j]


@DATASETS.register_module()
class ShardDataset(IterableDataset):
    """The records of tar shards (``lists_to_shards.py``), streamed.

    Every epoch the shards are read in a seeded order and their records cut
    into ``world_size x streams`` ranges of equal length
    (:mod:`~mopro.datasets.shards.streams`); each stream passes its range
    through a shuffle buffer seeded from ``(seed, epoch, range)`` and
    yields ``quota`` samples, the same for every stream and a multiple of
    ``batch_size``: every rank runs the same number of iterations, and the
    at most ``batch_size`` records of a range beyond the quota are dropped
    this epoch (as ``drop_last`` drops a partial batch; another epoch's
    order drops others). A dataloader worker serves ``streams /
    num_workers`` streams, batch by batch, so the batches of a rank come in
    the same order whatever the number of workers dividing ``streams``.

    Each sample is a list dataset's (``img_path`` naming shard and key,
    ``gt_label``, ``sample_idx``) plus ``img_bytes``, the record's image
    file, which ``LoadWebImage`` decodes and ``LoadWebImageBytes`` hands
    to the GPU data path as they are. Its pipeline draws from RNGs seeded
    from ``(seed, epoch, position)`` (:mod:`~mopro.datasets.seeding`), the
    position counted over all ranks as the samplers count it: a run
    resumed at an epoch boundary makes the views an uninterrupted one
    makes. ``ShardEpochHook`` sets the epoch and the run's seed before
    each epoch. An undecodable image is skipped (the stream's next record
    takes its place) and counted against ``max_bad_fraction`` as in the
    list datasets; a shard that is cut or ends before the index says is an
    error naming it.

    In ``test_mode`` the ranks read the records in the index's order,
    once, in shares of equal length that mmengine's result collection puts
    back together (:func:`rank_share`).

    With ``pseudo_label_file`` (noise cleaning's output over these shards,
    :mod:`~mopro.datasets.shards.labels`) only the records it names are
    read, with its labels: the ranges, quota and test shares are cut from
    the kept records, so every rank still runs the same number of
    iterations.

    Args:
        data_root: the folder of the index.
        index: the index file, relative to ``data_root``.
        pipeline: transforms; start with ``LoadWebImage`` or
            ``LoadWebImageBytes``.
        batch_size: the dataloader's batch size (``train_dataloader.
            batch_size``; ``ShardEpochHook`` checks they agree).
        streams: shuffle streams per rank; ``num_workers`` must divide it.
        shuffle_buffer: records in each stream's shuffle buffer (the
            memory is their image files: ~100 kB each for WebVision).
        seed: seed of the order until ``ShardEpochHook`` sets the run's.
        shard_url: where to read shards, ``{shard}`` standing for a shard's
            file name (``/fast/disk/{shard}``, ``pipe:aws s3 cp
            s3://bucket/webvision/{shard} -``); default: the index's
            folder. Only this setting runs commands, never the index.
        num_classes: the classes trained; must match the index.
        max_bad_fraction: tolerated fraction of undecodable images.
        pseudo_label_file: the cleaned labels to train on, by shard and
            record key; default: every record with its own label.
    """

    def __init__(self, data_root: str, index: str = 'train-index.json',
                 pipeline: Sequence = (), batch_size: Optional[int] = None,
                 streams: int = 8, shuffle_buffer: int = 1000, seed: int = 0,
                 shard_url: Optional[str] = None,
                 num_classes: Optional[int] = None, test_mode: bool = False,
                 max_bad_fraction: float = 0.01,
                 pseudo_label_file: Optional[str] = None,
                 metainfo: Optional[dict] = None,
                 lazy_init: bool = False) -> None:
        self.data_root = data_root
        self.index_path = osp.join(data_root, index)
        self.pipeline = Compose([
            TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline
        ])
        self.test_mode = test_mode
        if batch_size is not None or not test_mode:
            check_int(
                batch_size, 'dataset batch_size (set it to the '
                "dataloader's batch_size)")
        self.batch_size = batch_size
        self.streams = check_int(streams, 'dataset streams')
        self.shuffle_buffer = check_int(shuffle_buffer,
                                        'dataset shuffle_buffer')
        self.shard_url = shard_url
        self.num_classes = num_classes
        self.max_bad_fraction = check_number(
            max_bad_fraction, 'train_dataloader.dataset.max_bad_fraction', 0,
            1)
        self.pseudo_label_file = pseudo_label_file
        self._metainfo = metainfo
        # epoch (-1: not set), seed, rank, world size and whether epochs
        # follow each other in one pass, in shared memory: set in the main
        # process (the workers are in no process group), read by the
        # dataloader workers, persistent ones included
        self._state = torch.tensor([-1, seed, *get_dist_info(), 0],
                                   dtype=torch.int64)
        self._state.share_memory_()
        self.num_loaded = self.num_bad = 0
        self.index: Optional[ShardIndex] = None
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        """Read the index, check it against the settings, log a summary."""
        if self.index is not None:
            return
        index = read_index(self.index_path)
        if self.num_classes is not None and \
                index.num_classes != self.num_classes:
            raise ConfigError(
                f'{self.index_path}: shards of {index.num_classes} classes '
                f'but dataset num_classes={self.num_classes}')
        self._labels = None
        self._counts = [s.records for s in index.shards]
        kept = ''
        if self.pseudo_label_file is not None:
            self._labels = read_shard_labels(self.pseudo_label_file, index)
            self._counts = [
                len(self._labels.get(s.name, ())) for s in index.shards
            ]
            kept = f' ({sum(self._counts):,} kept by {self.pseudo_label_file})'
        self._offsets = np.cumsum([0] + self._counts)
        self.index = index
        print_log(
            f'ShardDataset at {self.data_root}: {index.num_records:,} '
            f'images{kept} of {index.num_classes} classes in '
            f'{len(index.shards)} shards', logger='current')

    @property
    def num_records(self) -> int:
        """The records read: the index's, or those the pseudo-label file
        keeps."""
        self.full_init()
        return int(self._offsets[-1])

    def describe(self) -> str:
        """The dataset in error messages."""
        return f'ShardDataset at {self.data_root}'

    @property
    def metainfo(self) -> dict:
        if self._metainfo is None:
            self.full_init()
            self._metainfo = dict(classes=list(self.index.classes)) \
                if self.index.classes else \
                indexed_metainfo(self.index.num_classes)
        return self._metainfo

    def set_epoch(self, epoch: int, seed: Optional[int] = None,
                  continuous: bool = False) -> None:
        """Read epoch ``epoch`` next (``ShardEpochHook``), with ``seed``
        (the run's) if given; ``continuous``: one endless pass, epoch
        after epoch (an iteration-based loop's)."""
        self._state[0] = epoch
        if seed is not None:
            self._state[1] = seed
        self._state[2:4] = torch.tensor(get_dist_info())
        self._state[4] = int(continuous)

    def quota(self, world_size: int) -> int:
        """Samples each stream yields per epoch."""
        self.full_init()
        streams = world_size * self.streams
        quota = self.num_records // streams
        quota -= quota % self.batch_size
        if quota == 0:
            raise ConfigError(
                f'{self.index_path}: {self.num_records} images make '
                f'no batch of {self.batch_size} in each of {world_size} '
                f'process(es) x {self.streams} streams; lower the batch '
                'size or dataset streams')
        return quota

    def __len__(self) -> int:
        self.full_init()
        if self.test_mode:
            return self.num_records
        return self.streams * self.quota(get_dist_info()[1])

    def _rank_and_world(self) -> Tuple[int, int]:
        """This process's rank and world size; in a dataloader worker,
        its main process's."""
        if get_worker_info() is None:
            return get_dist_info()
        return int(self._state[2]), int(self._state[3])

    def __iter__(self) -> Iterator[dict]:
        self.full_init()
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id,
                                                       info.num_workers)
        if self.test_mode:
            return self._test_samples(worker, workers)
        return self._train_samples(worker, workers)

    def _train_samples(self, worker: int, workers: int) -> Iterator[dict]:
        epoch, seed = int(self._state[0]), int(self._state[1])
        if epoch < 0:
            raise ConfigError(
                'ShardDataset: no epoch set; training over shards needs '
                "dict(type='ShardEpochHook') in custom_hooks")
        if self.streams % workers:
            raise ConfigError(
                f'train_dataloader.num_workers={workers} does not divide '
                f'dataset streams={self.streams}: set streams to a '
                'multiple of it')
        # every worker yields as many batches an epoch: the batches of the
        # next epoch follow in the dataloader's round-robin order
        yield from self._epoch_samples(worker, workers, epoch, seed)
        while int(self._state[4]):
            epoch += 1
            yield from self._epoch_samples(worker, workers, epoch, seed)

    def _epoch_samples(self, worker: int, workers: int, epoch: int,
                       seed: int) -> Iterator[dict]:
        rank, world = self._rank_and_world()
        quota = self.quota(world)
        order = shard_order(len(self._counts), seed, epoch, shuffle=True)
        ranges = split_ranges(self._counts, order, world * self.streams)
        first = rank * self.streams
        streams = {
            v: self._stream(ranges[first + v], (seed, epoch, first + v))
            for v in range(worker, self.streams, workers)
        }
        batch = self.batch_size
        for b in range(worker, self.streams * quota // batch, workers):
            stream = streams[b % self.streams]
            for i in range(batch):
                position = rank + world * (b * batch + i)
                yield self._next_sample(stream, (seed, epoch, position))

    def _stream(self, pieces: List[Piece], key: tuple) -> Iterator[Item]:
        """A range's records through the shuffle buffer, over and over
        (an undecodable image takes a record beyond the quota)."""
        rng = np.random.default_rng(key)
        while True:
            yield from shuffled(self._read(pieces), self.shuffle_buffer, rng)

    def _read(self, pieces: List[Piece]) -> Iterator[Item]:
        """The records of ``pieces``, numbered among the records read
        (all, or those the pseudo-label file keeps, with its labels)."""
        for piece in pieces:
            name = self.index.shards[piece.shard].name
            location = shard_location(name, self.index.folder, self.shard_url)
            kept = None if self._labels is None else self._labels[name]
            with open_shard(location) as f, \
                    contextlib.closing(read_records(f, location)) as records:
                count = 0
                for record in records:
                    if count >= piece.stop:
                        break
                    if kept is not None:
                        if record.key not in kept:
                            continue
                        record = record._replace(label=kept[record.key])
                    if count >= piece.start:
                        yield record, piece.shard, count
                    count += 1
                if count < piece.stop:
                    raise DataError(self._short_shard(location, piece, count))

    def _short_shard(self, location: str, piece: Piece, count: int) -> str:
        """The error of a shard that yielded ``count`` records, fewer than
        ``piece`` needs."""
        if self._labels is None:
            return (f'{location}: ends after {count} records, the index '
                    f'says {self.index.shards[piece.shard].records}: the '
                    'shard is cut; convert the lists again')
        return (f'{location}: holds {count} of the '
                f'{self._counts[piece.shard]} records that '
                f'{self.pseudo_label_file} keeps of it: a cut shard, or '
                'labels of other shards')

    def _sample(self, item: Item) -> dict:
        record, shard, number = item
        name = self.index.shards[shard].name
        if not 0 <= record.label < self.index.num_classes:
            raise DataError(
                f'{name}: record {record.key}: label {record.label} out of '
                f'range [0, {self.index.num_classes})')
        return dict(img_path=f'{name}:{record.key}',
                    img_bytes=bytearray(record.image), gt_label=record.label,
                    sample_idx=int(self._offsets[shard]) + number,
                    record_key=record.key)

    def _next_sample(self, stream: Iterator[Item], rng_key: tuple) -> dict:
        """The stream's next sample that loads, its pipeline seeded from
        ``rng_key``; undecodable images skipped and counted."""
        with seeded_rngs(rng_key):
            while True:
                try:
                    data = self.pipeline(self._sample(next(stream)))
                except ImageDecodeError as err:
                    self._count_bad(err)
                    continue
                if data is not None:
                    self.num_loaded += 1
                    return data

    def _count_bad(self, err: ImageDecodeError) -> None:
        self.num_bad += 1
        print_log(
            f'skipping undecodable image ({self.num_bad} so far in this '
            f'worker): {err}', logger='current', level=30)
        check_bad_fraction(self.describe(), self.num_bad,
                           self.num_loaded + self.num_bad,
                           self.max_bad_fraction,
                           'train_dataloader.dataset.max_bad_fraction')

    def _test_samples(self, worker: int, workers: int) -> Iterator[dict]:
        for info in self.test_infos(worker, workers):
            data = self.pipeline(info)
            if data is None:
                raise DataError(f'{info["record_key"]}: the pipeline '
                                'dropped it')
            yield data

    def test_infos(self, worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """The samples, before the pipeline, of this rank's share of the
        records in the index's order (:func:`rank_share`), its batches
        split among the workers in consecutive blocks: the last worker,
        whose block ends the rank's share, yields the last batch (and the
        padding repeat)."""
        self.full_init()
        rank, world = self._rank_and_world()
        counts = self._counts
        lo, hi, pad = rank_share(sum(counts), rank, world)
        batch = self.batch_size or 1
        batches = -(-(hi - lo + pad) // batch)
        first = batch * (batches * worker // workers)
        last = min(hi - lo + pad, batch * (batches * (worker + 1) // workers))
        order = shard_order(len(counts), 0, 0, shuffle=False)
        pieces = record_pieces(counts, order, lo + first,
                               lo + min(last, hi - lo))
        item = None
        for item in self._read(pieces):
            yield self._sample(item)
        if pad and last == hi - lo + 1:
            if item is None:  # the block holds the padding alone
                *_, item = self._read(record_pieces(counts, order, hi - 1, hi))
            yield self._sample(item)

    def get_data_info(self, idx: int) -> dict:
        """Sample ``idx`` (its ``sample_idx``: the position among the
        records read, in the index's order) before the pipeline, read from
        its shard's start (for a few samples, as the noise cleaning report
        shows)."""
        shard = self.shard_of(idx)
        number = idx - int(self._offsets[shard])
        item, = self._read([Piece(shard, number, number + 1)])
        return self._sample(item)

    def shard_of(self, idx: int) -> int:
        """The shard (its position in the index) of sample ``idx``."""
        self.full_init()
        if not 0 <= idx < self.num_records:
            raise IndexError(f'sample {idx} of {self.num_records}')
        return int(np.searchsorted(self._offsets, idx, side='right')) - 1


def rank_share(total: int, rank: int, world: int) -> Tuple[int, int, int]:
    """Records ``[lo, hi)`` of rank ``rank`` in test mode, and 1 if it
    repeats its last record once more (else 0).

    Every rank yields ``ceil(total / world)`` samples, the first ranks
    records only, the others one record fewer and their last once more:
    mmengine's ``collect_results`` zips the ranks' results in rank order
    and keeps the first ``total``, which leaves out exactly those repeats
    (mmengine's ``DefaultSampler`` pads the same way).

    Raises:
        ConfigError: fewer records than processes.
    """
    if total < world:
        raise ConfigError(f'{total} images to test on {world} processes: '
                          'test on fewer processes')
    share = -(-total // world)
    full = total - (share - 1) * world  # ranks with ``share`` records
    if rank < full:
        return rank * share, (rank + 1) * share, 0
    lo = full * share + (rank - full) * (share - 1)
    return lo, lo + share - 1, 1
