"""Checkpoint files read under torch's weights-only unpickler.

mmengine 0.10.7 calls ``torch.load`` with the default ``weights_only=True``
of torch >= 2.6, which rejects the numpy objects and mmengine
``HistoryBuffer`` that its checkpoints carry, so ``--resume`` fails. Rather
than switching the safe unpickler off,
:func:`install_checkpoint_pickling` (run by ``import mopro``,
:func:`mopro.environment.setup_environment`):

- allow-lists exactly the safe globals those checkpoints need (numpy array
  and scalar reconstruction, dtypes, ``HistoryBuffer``), and
- pickles ``HistoryBuffer`` as plain lists, so checkpoints written by this
  project never need ``builtins.getattr`` (stock mmengine pickles the
  buffer's bound statistics methods through it).

:func:`load_checkpoint` reads a file with that unpickler; an empty, cut or
corrupt file, or one holding other objects, is a one-line
:class:`CheckpointError`.
"""
import copyreg
import os
import pickle
import zipfile
from typing import Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..utils.errors import UserError

SAFE_GLOBALS = [
    HistoryBuffer,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    np.ndarray,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
]


def _reduce_history_buffer(buffer: HistoryBuffer):
    logs, counts = buffer.data
    return HistoryBuffer, (logs.tolist(), counts.tolist(), buffer.max_length)


def install_checkpoint_pickling() -> None:
    """Allow-list :data:`SAFE_GLOBALS` in torch's weights-only unpickler
    and pickle ``HistoryBuffer`` as plain lists (idempotent)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)


# the first bytes of a zip archive (torch.save's format)
_ZIP_START = b'PK\x03\x04'


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message names file and cause."""


def _file_kind(path: str) -> Optional[str]:
    """``'zip'`` (torch.save), ``'cut zip'`` (a zip archive whose end, its
    directory, is missing: a copy cut short), ``'pickle'`` (legacy
    torch.save) or None."""
    if zipfile.is_zipfile(path):
        return 'zip'
    with open(path, 'rb') as f:
        start = f.read(len(_ZIP_START))
    if start == _ZIP_START:
        return 'cut zip'
    return 'pickle' if start[:1] == b'\x80' else None  # protocol >= 2


def load_checkpoint(path: str, map_location: str = 'cpu',
                    trust: bool = False) -> dict:
    """Load a checkpoint file with the weights-only unpickler.

    Args:
        path: checkpoint file.
        map_location: as in ``torch.load``.
        trust: unpickle arbitrary objects (``weights_only=False``). Only for
            files from a source you trust (``--trust-checkpoint``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: empty, truncated or corrupt file, or one holding
            objects outside the allow-list.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such checkpoint file')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: checkpoint file is empty (0 bytes)')
    kind = _file_kind(path)
    if kind is None:
        raise CheckpointError(f'{path}: not a checkpoint (neither the zip '
                              'archive nor the pickle that torch.save '
                              'writes)')
    if kind == 'cut zip':
        raise CheckpointError(
            f'{path}: truncated or corrupt checkpoint (a zip archive without '
            'its end, as a copy cut short leaves it)')
    try:
        ckpt = torch.load(path, map_location=map_location,
                          weights_only=not trust)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        detail = str(err).split('WeightsUnpickler error:', 1)[-1]
        if 'Weights only load failed' in str(err) and 'global' in detail:
            unsafe = _unsafe_globals(path)
            raise CheckpointError(
                f'{path}: holds objects outside the weights-only allow-list'
                f' ({unsafe or first}); pass --trust-checkpoint only if you '
                'trust its source') from None
        raise CheckpointError(
            f'{path}: truncated or corrupt checkpoint (unreadable pickle: '
            f'{first})') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, IndexError,
            KeyError, UnicodeDecodeError) as err:
        # a file that is no pickle at all trips the weights-only unpickler
        # in arbitrary ways (IndexError, KeyError, ...)
        first = str(err).strip().splitlines()[0] if str(err) else type(
            err).__name__
        raise CheckpointError(
            f'{path}: truncated or corrupt checkpoint ({first})') from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f'{path}: expected a dict checkpoint, got {type(ckpt).__name__}')
    return ckpt


def _unsafe_globals(path: str) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the listing is only for the message
        return ''
    return ', '.join(names)
