"""Records in WebDataset's tar layout, as timm, OpenCLIP and the
``webdataset`` package read them.

A record is consecutive tar members sharing a key, the part of the member
name before its first dot: ``<key>.jpg`` (the image file's bytes as they
were; a PNG stays ``<key>.png``), ``<key>.cls`` (the label, decimal ASCII)
and ``<key>.json`` (key, label, source list, path relative to the image
root). Members are written with fixed owner, mode and time, so the same
records give the same bytes.
"""
import io
import json
import os.path as osp
import tarfile
from typing import IO, Iterator, NamedTuple

from ...utils.errors import DataError

IMAGE_EXTENSIONS = ('jpg', 'png', 'webp', 'bmp', 'gif', 'tif', 'tiff', 'ppm')
_SAME_AS = {'jpeg': 'jpg', 'jpe': 'jpg', 'jfif': 'jpg'}


class Record(NamedTuple):
    """One record: key, label, image bytes and extension, and the
    ``.json`` metadata (``source``, ``path``)."""
    key: str
    label: int
    image: bytes
    ext: str
    meta: dict


def image_extension(path: str) -> str:
    """The member extension of an image file: its own, lower case (``.jpeg``
    as ``jpg``, WebDataset's name); ``jpg`` for a file without one."""
    ext = osp.splitext(path)[1][1:].lower()
    ext = _SAME_AS.get(ext, ext)
    return ext if ext in IMAGE_EXTENSIONS else 'jpg'


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ''
    tar.addfile(info, io.BytesIO(data))


def write_record(tar: tarfile.TarFile, record: Record) -> None:
    """Append ``record``'s three members to ``tar``."""
    _add_member(tar, f'{record.key}.{record.ext}', record.image)
    _add_member(tar, f'{record.key}.cls', str(record.label).encode())
    meta = dict(key=record.key, label=record.label, **record.meta)
    _add_member(tar, f'{record.key}.json',
                json.dumps(meta, ensure_ascii=False).encode('utf-8'))


def open_tar_writer(fileobj: IO[bytes]) -> tarfile.TarFile:
    """A tar writer in the plain ustar format (read by every tar reader)."""
    return tarfile.open(fileobj=fileobj, mode='w', format=tarfile.USTAR_FORMAT)


def _split_name(name: str):
    folder, base = osp.split(name)
    stem, _, ext = base.partition('.')
    return osp.join(folder, stem), ext


def _to_record(key: str, members: dict, where: str) -> Record:
    exts = [e for e in IMAGE_EXTENSIONS if e in members]
    if not exts or 'cls' not in members:
        raise DataError(f'{where}: record {key!r} has no image or no .cls '
                        f'member (has {sorted(members)})')
    try:
        label = int(members['cls'])
        meta = json.loads(members['json']) if 'json' in members else {}
    except ValueError as err:
        raise DataError(f'{where}: record {key!r}: unreadable label or '
                        f'metadata ({err})') from None
    return Record(key, label, members[exts[0]], exts[0], meta)


def read_records(fileobj: IO[bytes], where: str) -> Iterator[Record]:
    """The records of a tar stream, in order (members grouped by key).

    Raises:
        DataError: a cut or corrupt tar, or a record without image or label,
            naming ``where``.
    """
    key, members, count = None, {}, 0
    try:
        with tarfile.open(fileobj=fileobj, mode='r|') as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name_key, ext = _split_name(info.name)
                if name_key != key and key is not None:
                    yield _to_record(key, members, where)
                    count += 1
                    members = {}
                key = name_key
                members[ext] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f'{where}: cut or corrupt tar after {count} records '
                        f'({err}); convert the lists again') from None
    if key is not None:
        yield _to_record(key, members, where)
