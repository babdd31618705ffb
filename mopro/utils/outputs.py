"""Checks a tool runs on its outputs before it reads any image or feature.

A tool that can only find out at the end that it cannot write its result
(a read-only folder, a full disk, an output path that is a folder, or the
input itself) has wasted the whole pass. These checks write and delete a
probe file where each output goes (creating nothing), compare free space with
what the tool will write, and refuse an output that is one of the inputs,
also through a link; the writes themselves stay atomic
(:func:`mopro.utils.fileio.atomic_path`).

The inputs are what the tool was given (config, checkpoints, feature
files) and what it read to find its work: the image lists, label files and
class names a dataset reads are recorded as they are opened
(:func:`files_read`), whatever the dataset, so that an output onto any of
them (``--out <data_root>/train.txt``) is refused before the pass.
"""
import contextlib
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Iterable, Iterator, List, Optional

from .errors import UserError

# the lists of the open files_read blocks; the audit hook is added once
_READ_RECORDERS: List[List[str]] = []
_HOOKED = False


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (also through links)."""
    if osp.realpath(a) == osp.realpath(b):
        return True
    try:
        return osp.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _record_read(event: str, args: tuple) -> None:
    """Python's audit hook: the path of every file opened read-only (the
    ``open`` event of ``open()``, ``io.open_code`` and ``os.open``: every
    library that reads through them, json, numpy, torch.load, PIL) into the
    open :func:`files_read` blocks."""
    if event != 'open' or not _READ_RECORDERS:
        return
    path, _, flags = args
    if isinstance(path, int) or path is None or \
            (flags & os.O_ACCMODE) != os.O_RDONLY:
        return
    path = osp.abspath(os.fsdecode(os.fspath(path)))
    for recorder in _READ_RECORDERS:
        recorder.append(path)


@contextlib.contextmanager
def files_read() -> Iterator[List[str]]:
    """Yield a list that collects the absolute paths of the files this
    process opens read-only inside the block (repeats left in).

    Example::

        with files_read() as inputs:
            dataset.full_init()  # reads its image lists
        check_output_file(out, inputs=inputs)
    """
    global _HOOKED
    if not _HOOKED:  # audit hooks cannot be removed: one, idle outside
        sys.addaudithook(_record_read)
        _HOOKED = True
    recorder: List[str] = []
    _READ_RECORDERS.append(recorder)
    try:
        yield recorder
    finally:
        _READ_RECORDERS.remove(recorder)


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


def check_not_input(path: str, inputs: Iterable[Optional[str]],
                    what: str = 'output',
                    fix: str = 'write it to another path') -> None:
    """Raise a one-line :class:`UserError` if the output ``path`` is one of
    ``inputs`` (the same file, also through a link); ``fix`` says what to
    do."""
    for source in dict.fromkeys(inputs):
        if source and same_file(path, source):
            raise UserError(f'{path}: the {what} is the input {source}; '
                            f'{fix}')


def check_output_file(path: str, inputs: Iterable[Optional[str]] = (),
                      need_bytes: int = 0, what: str = 'output') -> None:
    """Check that file ``path`` can be written (see
    :func:`check_output_dir`) and is none of ``inputs``
    (:func:`check_not_input`); an existing ``path`` must be a file (it is
    replaced atomically).

    Raises:
        UserError: one line naming the path and the cause.
    """
    if osp.isdir(path):
        raise UserError(f'{path}: the {what} is a folder, expected a file '
                        'path')
    check_not_input(path, inputs, what)
    _probe(osp.dirname(osp.abspath(path)), path, what, need_bytes)
