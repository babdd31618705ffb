"""Checks a tool runs on its outputs before it reads any image or feature.

A tool that can only find out at the end that it cannot write its result
(a read-only folder, a full disk, an output path that is a folder, or the
input itself) has wasted the whole pass. These checks write and delete a
probe file where each output goes (creating nothing), compare free space with
what the tool will write, and refuse an output that is one of the inputs,
also through a link; the writes themselves stay atomic
(:func:`mopro.utils.fileio.atomic_path`).
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Iterable, Optional

from .cli import UserError


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (also through links)."""
    if osp.realpath(a) == osp.realpath(b):
        return True
    try:
        return osp.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _nearest_existing(path: str) -> str:
    """``path`` or its closest existing ancestor."""
    path = osp.abspath(path)
    while not osp.exists(path):
        path = osp.dirname(path)
    return path


def _probe(folder: str, subject: str, what: str, need_bytes: int) -> None:
    """Write and delete a file in ``folder`` or the closest existing folder
    above it; compare its disk's free space with ``need_bytes``. Messages
    start with ``subject`` and name the output as ``what``."""
    existing = _nearest_existing(folder)
    if not osp.isdir(existing):
        raise UserError(f'{subject}: cannot write the {what}: {existing} is '
                        'a file, not a folder')
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix='.write_probe.')
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UserError(f'{subject}: cannot write the {what} in {existing}: '
                        f'{err.strerror or err}') from None
    free = shutil.disk_usage(existing).free
    if need_bytes and free < need_bytes:
        raise UserError(f'{subject}: {free / 2**20:.1f} MiB free on the disk '
                        f'of the {what}, it needs about '
                        f'{need_bytes / 2**20:.1f} MiB')


def check_output_dir(path: str, need_bytes: int = 0,
                     what: str = 'output folder') -> None:
    """Make sure files can be written in folder ``path``, without creating
    it: it, or the closest existing folder above it, is probed with a file
    written and deleted there.

    Args:
        path: the folder (need not exist yet).
        need_bytes: bytes the tool will write there; a disk with less free
            space is an error now rather than a failed write later.
        what: how the message names the folder (``'work dir'``).

    Raises:
        UserError: one line naming the folder and the cause.
    """
    path = path or '.'
    if osp.isfile(path):
        raise UserError(f'{path}: the {what} is a file, not a folder')
    _probe(path, path, what, need_bytes)


def check_output_file(path: str, inputs: Iterable[Optional[str]] = (),
                      need_bytes: int = 0, what: str = 'output') -> None:
    """Check that file ``path`` can be written (see
    :func:`check_output_dir`) and is none of ``inputs``; an existing
    ``path`` must be a file (it is replaced atomically).

    Raises:
        UserError: one line naming the path and the cause.
    """
    if osp.isdir(path):
        raise UserError(f'{path}: the {what} is a folder, expected a file '
                        'path')
    for source in inputs:
        if source and same_file(path, source):
            raise UserError(f'{path}: the {what} is the input {source}; '
                            'write it to another path')
    _probe(osp.dirname(osp.abspath(path)), path, what, need_bytes)
