"""Write image lists into tar shards (``lists_to_shards.py``).

The plan, which record goes to which shard, is a function of the lists,
the seed and the shard size alone: the records of all lists in a seeded
random order (the lists are sorted by class, and a reader's shuffle buffer
mixes only nearby records), cut into shards of ``shard_records`` records or
about ``shard_mb`` megabytes. Each shard is written to a temporary file and
renamed, then its report (records, bytes, undecodable images) is saved
beside it; a re-run keeps the shards whose report matches the plan and
writes the others, byte for byte as an uninterrupted run would. The index
is written last.
"""
import hashlib
import json
import multiprocessing
import os
import os.path as osp
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...utils.errors import ConfigError, DataError
from ...utils.fileio import atomic_path, remove_stale_temporaries, write_json
from ..transforms import ImageDecodeError, decode_rgb_bytes, read_image_bytes
from .index import ShardIndex, ShardInfo, index_name, read_index, shard_name
from .records import Record, image_extension, open_tar_writer, write_record
from .sources import SourceList

# tar overhead of a record beyond the image: three 512-byte headers, the
# label and the metadata padded to 512 bytes
RECORD_OVERHEAD = 4 * 512


@dataclass(frozen=True)
class Entry:
    """A planned record: its key, label, image file and where it came
    from."""
    key: str
    label: int
    file: str
    source: str
    path: str


@dataclass
class ShardPlan:
    """The records of one shard, and a digest of them (so a kept shard is
    known to hold what this plan puts there)."""
    number: int
    name: str
    entries: List[Entry]

    @property
    def digest(self) -> str:
        text = '\n'.join(f'{e.key} {e.label} {e.file}' for e in self.entries)
        return hashlib.sha256(text.encode('utf-8')).hexdigest()


def plan_entries(lists: Sequence[SourceList]) -> List[Entry]:
    """Every record of ``lists``, in list order; the key is the list's
    name and the line's index among the list's images
    (``google-000000012``)."""
    entries = []
    for source in lists:
        for i in range(len(source.images)):
            path = source.images.path(i)
            entries.append(
                Entry(f'{source.name}-{i:09d}', int(source.images.labels[i]),
                      osp.join(source.image_root, path), source.name, path))
    return entries


def plan_shards(entries: List[Entry], prefix: str, seed: int,
                shard_records: Optional[int] = None,
                shard_mb: Optional[float] = None) -> List[ShardPlan]:
    """Cut the seeded permutation of ``entries`` into shards of
    ``shard_records`` records, or of about ``shard_mb`` MB (by the files'
    sizes; a record larger than that is a shard of its own)."""
    order = np.random.default_rng(seed).permutation(len(entries))
    shuffled = [entries[i] for i in order]
    groups: List[List[Entry]] = []
    if shard_records is not None:
        groups = [
            shuffled[i:i + shard_records]
            for i in range(0, len(shuffled), shard_records)
        ]
    else:
        limit, size = shard_mb * 1e6, 0
        for entry in shuffled:
            nbytes = _file_size(entry.file) + RECORD_OVERHEAD
            if not groups or (size + nbytes > limit and groups[-1]):
                groups.append([])
                size = 0
            groups[-1].append(entry)
            size += nbytes
    return [
        ShardPlan(n, shard_name(prefix, n), group)
        for n, group in enumerate(groups)
    ]


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def check_output_folder(out_dir: str, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is, or lies inside, an input folder:
    the converter never writes among the data it reads.

    Raises:
        ConfigError: naming both folders.
    """
    out = osp.realpath(out_dir)
    for folder in inputs:
        real = osp.realpath(folder)
        if out == real or out.startswith(real.rstrip(os.sep) + os.sep):
            raise ConfigError(
                f'--out {out_dir} lies in the input folder {folder}: the '
                'converter does not write among the data it reads; choose '
                'a folder outside it')


def _parts_dir(out_dir: str, prefix: str) -> str:
    return osp.join(out_dir, f'.{prefix}-parts')


def _part_file(out_dir: str, plan: ShardPlan) -> str:
    return osp.join(
        _parts_dir(out_dir,
                   plan.name.rsplit('-', 1)[0]), f'{plan.name}.json')


def load_image(entry: Entry) -> Tuple[Optional[bytes], str]:
    """The image file's bytes if they decode (as training decodes them),
    else None and the error."""
    try:
        data = read_image_bytes(entry.file)
        decode_rgb_bytes(data, entry.file)
    except ImageDecodeError as err:
        return None, str(err)
    return bytes(data), ''


def write_shard(out_dir: str, plan: ShardPlan) -> dict:
    """Write one shard (temporary file, renamed when complete), then its
    report beside it; return the report."""
    bad = []
    path = osp.join(out_dir, plan.name)
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        with open_tar_writer(f) as tar:
            for entry in plan.entries:
                data, error = load_image(entry)
                if data is None:
                    bad.append(
                        dict(key=entry.key, path=entry.path,
                             source=entry.source, error=error))
                    continue
                write_record(
                    tar,
                    Record(entry.key, entry.label, data,
                           image_extension(entry.file),
                           dict(source=entry.source, path=entry.path)))
    report = dict(name=plan.name, records=len(plan.entries) - len(bad),
                  bytes=osp.getsize(path), bad_images=bad, digest=plan.digest)
    write_json(_part_file(out_dir, plan), report)
    return report


def kept_report(out_dir: str, plan: ShardPlan) -> Optional[dict]:
    """The report of a shard a previous run finished for this same plan,
    else None (the shard is then written again)."""
    part = _part_file(out_dir, plan)
    if not osp.isfile(part):
        return None
    with open(part, encoding='utf-8') as f:
        report = json.load(f)
    path = osp.join(out_dir, plan.name)
    if report.get('digest') != plan.digest:
        raise ConfigError(
            f'{path} holds other records than this conversion plans (a run '
            'with other lists, seed or shard size): convert into another '
            f'--out, or remove {out_dir}')
    if not osp.isfile(path) or osp.getsize(path) != report['bytes']:
        return None
    return report


@dataclass
class Conversion:
    """A conversion's settings: where, the shard size, the seed and the
    processes."""
    out_dir: str
    prefix: str = 'train'
    shard_records: Optional[int] = None
    shard_mb: Optional[float] = None
    seed: int = 0
    workers: int = 1


def _settings(conv: Conversion, lists: Sequence[SourceList]) -> dict:
    return dict(
        seed=conv.seed, shard_records=conv.shard_records,
        shard_mb=conv.shard_mb, lists=[
            dict(name=s.name, file=s.origin, records=len(s.images))
            for s in lists
        ])


def _finished_index(conv: Conversion, settings: dict) -> Optional[str]:
    path = osp.join(conv.out_dir, index_name(conv.prefix))
    if not osp.isfile(path):
        return None
    index = read_index(path)
    if index.conversion != settings:
        raise ConfigError(
            f'{path}: the folder already holds shards {conv.prefix}-* of '
            'another conversion; choose another --out or --prefix, or '
            'remove them')
    for shard in index.shards:
        file = osp.join(conv.out_dir, shard.name)
        if not osp.isfile(file) or osp.getsize(file) != shard.bytes:
            raise DataError(f'{file}: missing or changed since {path} was '
                            'written; remove the index to convert again')
    return path


def _run(plans: List[ShardPlan], conv: Conversion) -> Iterator[dict]:
    if conv.workers <= 1:
        for plan in plans:
            yield write_shard(conv.out_dir, plan)
        return
    with multiprocessing.get_context('spawn').Pool(conv.workers) as pool:
        yield from pool.imap_unordered(_write_task,
                                       [(conv.out_dir, p) for p in plans])


def _write_task(task: Tuple[str, ShardPlan]) -> dict:
    return write_shard(*task)


def convert(lists: Sequence[SourceList], conv: Conversion, num_classes: int,
            classes: Sequence[str] = (),
            report: Callable[[str], None] = print) -> ShardIndex:
    """Write ``lists`` into shards in ``conv.out_dir`` and the index last;
    a re-run keeps the shards already written. ``report`` gets the
    progress lines."""
    settings = _settings(conv, lists)
    done = _finished_index(conv, settings)
    if done:
        report(f'{done}: already converted, nothing to do')
        return read_index(done)
    os.makedirs(conv.out_dir, exist_ok=True)
    for stale in remove_stale_temporaries(conv.out_dir, f'{conv.prefix}-*'):
        report(f'removed the temporary file of an interrupted run: {stale}')
    plans = plan_shards(
        plan_entries(lists), conv.prefix, conv.seed, conv.shard_records,
        conv.shard_mb)
    reports, todo = {}, []
    for plan in plans:
        kept = kept_report(conv.out_dir, plan)
        if kept is None:
            todo.append(plan)
        else:
            reports[plan.number] = kept
    if reports:
        report(f'{len(reports)} of {len(plans)} shards kept from an '
               'earlier run')
    _write_all(todo, conv, reports, report)
    ordered = [reports[p.number] for p in plans]
    index = ShardIndex(
        osp.join(conv.out_dir, index_name(conv.prefix)),
        [ShardInfo(r['name'], r['records'], r['bytes'])
         for r in ordered], num_classes, list(classes), settings['lists'],
        [bad for r in ordered for bad in r['bad_images']], settings)
    write_json(index.path, index.to_json())
    shutil.rmtree(_parts_dir(conv.out_dir, conv.prefix), ignore_errors=True)
    return index


def _write_all(todo: List[ShardPlan], conv: Conversion, reports: dict,
               report: Callable[[str], None]) -> None:
    start = last = time.monotonic()
    numbers = {p.name: p.number for p in todo}
    images = bad = 0
    for i, result in enumerate(_run(todo, conv), 1):
        reports[numbers[result['name']]] = result
        images += result['records']
        bad += len(result['bad_images'])
        now = time.monotonic()
        if now - last >= 10 or i == len(todo):
            last = now
            rate = (images + bad) / max(now - start, 1e-9)
            report(f'{i}/{len(todo)} shards written, {images} images '
                   f'({bad} undecodable), {rate:.0f} images/s')
