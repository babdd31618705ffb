"""Reading training images from tar shards against one file per image:
images per second per worker (one process, one thread: a dataloader
worker's rate) and files opened per image.

Four readers on the same JPEGs, converted into shards in a temporary
folder by the converter's library (``lists_to_shards.py``): the bytes
alone (``read_image_bytes`` of each file; a ``ShardDataset`` without a
pipeline) and the config's two-view training pipeline on top (from the
path; from the record's bytes). Files opened are counted by Python's
``open`` audit event over the timed images. The images sit in the page
cache after the conversion: the figures are CPU costs per image, not the
metadata latency of a network file system, which the files opened per
image stand for.
"""
import contextlib
import os.path as osp
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List

from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..datasets.file_list import ImageList
from ..datasets.seeding import seeded_rngs
from ..datasets.shards import Conversion, ShardDataset, SourceList, convert
from ..datasets.transforms import read_image_bytes
from .data_benchmark import (DataBenchmarkSettings, describe_images,
                             project_pipeline, single_thread)
from .timing import cpu_model, shown_path, versions

_OPENS = [0]
_HOOKED = [False]


def _count_open(event: str, args: tuple) -> None:
    if event == 'open':
        _OPENS[0] += 1


@contextlib.contextmanager
def counted_opens() -> Iterator[List[int]]:
    """Count the files opened in the block (``[count]``, filled at its
    end); the audit hook, once added, stays (Python cannot remove it)."""
    if not _HOOKED[0]:
        sys.addaudithook(_count_open)
        _HOOKED[0] = True
    start, result = _OPENS[0], [0]
    yield result
    result[0] = _OPENS[0] - start


def write_shards(paths: List[str], out: str, shard_records: int) -> str:
    """``paths`` (one folder) as shards of ``shard_records`` in ``out``."""
    root = osp.dirname(paths[0])
    images = ImageList([osp.relpath(p, root) for p in paths], [0] * len(paths))
    convert([SourceList('bench', root, images, root)],
            Conversion(out, 'bench', shard_records=shard_records, workers=1),
            num_classes=1, report=lambda line: None)
    return out


def file_reader(paths: List[str], pipeline: Callable) -> Callable:
    """``n`` images from the files, cycling, each through ``pipeline``
    (None: the bytes only) with its RNGs seeded as a dataset seeds them."""

    def read(n: int) -> None:
        for i in range(n):
            path = paths[i % len(paths)]
            if pipeline is None:
                read_image_bytes(path)
                continue
            with seeded_rngs((0, 0, i)):
                pipeline(i, path)

    return read


def shard_reader(dataset: ShardDataset) -> Callable:
    """``n`` samples of ``dataset``, epoch after epoch."""

    def read(n: int) -> None:
        epoch = 0
        while n > 0:
            dataset.set_epoch(epoch)
            for _ in dataset:
                n -= 1
                if n == 0:
                    return
            epoch += 1

    return read


def time_readers(readers: Dict[str, Callable],
                 settings: DataBenchmarkSettings) -> Dict:
    """Each reader's images per second, thread CPU ms and files opened per
    image over ``settings.iters`` images, after ``settings.warmup``; the
    readers take two turns in ABBA order against drifts in speed."""
    for read in readers.values():
        read(settings.warmup)
    totals = {name: [0.0, 0.0, 0] for name in readers}
    order = list(readers)
    half = settings.iters // 2
    for images in (half, settings.iters - half):
        for name in order:
            with counted_opens() as opens:
                start, cpu = time.perf_counter(), time.thread_time()
                readers[name](images)
                wall = time.perf_counter() - start
                cpu = time.thread_time() - cpu
            totals[name][0] += wall
            totals[name][1] += cpu
            totals[name][2] += opens[0]
        order.reverse()
    return {
        name:
        dict(img_per_s_per_worker=settings.iters / wall,
             cpu_ms_per_image=1e3 * cpu / settings.iters,
             files_opened_per_image=opened / settings.iters)
        for name, (wall, cpu, opened) in totals.items()
    }


def shard_benchmark(cfg: Config, paths: List[str], source: str,
                    settings: DataBenchmarkSettings,
                    shard_records: int) -> Dict:
    """The figures of the module docstring, as a JSON-ready dict."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    single_thread()
    pipeline = cfg.train_dataloader.dataset.pipeline
    with tempfile.TemporaryDirectory() as directory:
        shards = write_shards(paths, directory, shard_records)
        datasets = {
            name:
            ShardDataset(shards, 'bench-index.json', pipeline=steps,
                         batch_size=1, streams=1,
                         shuffle_buffer=settings.block)
            for name, steps in (('bytes', ()), ('pipeline', pipeline))
        }
        readers = dict(
            files_bytes=file_reader(paths, None),
            shards_bytes=shard_reader(datasets['bytes']),
            files_pipeline=file_reader(paths, project_pipeline(cfg)),
            shards_pipeline=shard_reader(datasets['pipeline']))
        results = time_readers(readers, settings)
    return dict(mode='shards', config=shown_path(cfg.filename),
                cpu=cpu_model(), threads=1,
                images=describe_images(paths,
                                       source), shard_records=shard_records,
                shuffle_buffer=settings.block, iters=settings.iters,
                warmup=settings.warmup, versions=versions(), **results)
