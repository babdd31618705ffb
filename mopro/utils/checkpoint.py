"""Checkpoint loading under torch's weights-only unpickler.

mmengine 0.10.7 calls ``torch.load`` with the default ``weights_only=True``
of torch >= 2.6, which rejects the numpy objects and mmengine
``HistoryBuffer`` that its checkpoints carry, so ``--resume`` fails. Rather
than switching the safe unpickler off, importing this module:

- allow-lists exactly the safe globals those checkpoints need (numpy array
  and scalar reconstruction, dtypes, ``HistoryBuffer``), and
- pickles ``HistoryBuffer`` as plain lists, so checkpoints written by this
  project never need ``builtins.getattr`` (stock mmengine pickles the
  buffer's bound statistics methods through it).

It also reads the two checkpoint formats of this project: its own (mmengine
Runner, ``state_dict`` with ``backbone.*``) and the released original code's
(``state_dict`` with ``module.encoder_q.*``).
"""
import copyreg
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .cli import UserError

SAFE_GLOBALS = [
    HistoryBuffer,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    np.ndarray,
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
]
torch.serialization.add_safe_globals(SAFE_GLOBALS)


def _reduce_history_buffer(buffer: HistoryBuffer):
    logs, counts = buffer.data
    return HistoryBuffer, (logs.tolist(), counts.tolist(), buffer.max_length)


copyreg.pickle(HistoryBuffer, _reduce_history_buffer)

MOPRO_FORMAT = 'mopro'
ORIGINAL_FORMAT = 'original'

# released code (torchvision-style ResNet in ``encoder_q``/``encoder_k``)
# -> this project
_ORIGINAL_HEADS = {
    'classifier.': 'classifier.',
    'fc1.': 'projector.0.',
    'fc2.': 'projector.2.',
}
_ORIGINAL_BUFFERS = {
    'module.queue': 'queue',
    'module.queue_ptr': 'queue_ptr',
    'module.prototypes': 'prototypes',
}


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used; the message names file and cause."""


def load_checkpoint(path: str,
                    map_location: str = 'cpu',
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
    try:
        ckpt = torch.load(path, map_location=map_location,
                          weights_only=not trust)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        if 'Weights only load failed' in str(err):
            unsafe = _unsafe_globals(path)
            raise CheckpointError(
                f'{path}: holds objects outside the weights-only allow-list'
                f' ({unsafe or first}); pass --trust-checkpoint only if you '
                'trust its source') from None
        raise CheckpointError(
            f'{path}: corrupt checkpoint ({first})') from None
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


def get_state_dict(ckpt: dict) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint (``state_dict`` or the dict)."""
    state = ckpt.get('state_dict', ckpt)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_format(ckpt: dict) -> Optional[str]:
    """``'mopro'``, ``'original'`` (released code) or None if neither."""
    keys = get_state_dict(ckpt).keys()
    if any(k.startswith('module.encoder_q.') for k in keys):
        return ORIGINAL_FORMAT
    if any(k.startswith('backbone.') for k in keys):
        return MOPRO_FORMAT
    return None


def require_format(ckpt: dict, expected: str, path: str) -> None:
    """Raise a one-line error if ``ckpt`` is not of the expected format."""
    found = checkpoint_format(ckpt)
    if found == expected:
        return
    hints = {
        ORIGINAL_FORMAT: 'a checkpoint of the released MoPro code: import it '
        'with tools/convert_from_original.py first',
        MOPRO_FORMAT: 'a checkpoint of this project, not of the released '
        'code',
        None: 'neither a MoPro project nor a released-code checkpoint (no '
        "'backbone.*' or 'module.encoder_q.*' weights)",
    }
    raise CheckpointError(f'{path}: expected a {expected} checkpoint, got '
                          f'{hints[found]}')


def original_to_mopro(state: Dict[str, torch.Tensor]
                      ) -> 'OrderedDict[str, torch.Tensor]':
    """Rename a released-code state dict into this project's names.

    ``encoder_q`` becomes ``backbone``/``classifier``/``projector``,
    ``encoder_k`` becomes ``momentum_backbone``/``momentum_projector`` (the
    released momentum encoder also averages a classifier that it never uses;
    it is dropped). The queue keeps its D x R layout.
    """
    out = OrderedDict()
    for key, value in state.items():
        if key in _ORIGINAL_BUFFERS:
            out[_ORIGINAL_BUFFERS[key]] = value
            continue
        for encoder, prefix in (('module.encoder_q.', ''),
                                ('module.encoder_k.', 'momentum_')):
            if not key.startswith(encoder):
                continue
            name = key[len(encoder):]
            head = next((h for h in _ORIGINAL_HEADS if name.startswith(h)),
                        None)
            if head is None:
                out[f'{prefix}backbone.{name}'] = value
            elif head != 'classifier.' or not prefix:
                out[prefix + _ORIGINAL_HEADS[head] + name[len(head):]] = value
    return out


def mopro_state_dict(ckpt: dict, path: str) -> Dict[str, torch.Tensor]:
    """This project's state dict from a checkpoint of either format."""
    if checkpoint_format(ckpt) == ORIGINAL_FORMAT:
        return original_to_mopro(get_state_dict(ckpt))
    require_format(ckpt, MOPRO_FORMAT, path)
    return get_state_dict(ckpt)


def encoder_state_dict(ckpt: dict,
                       path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone weights (torchvision/mmpretrain ResNet names, no prefix) of
    the encoder, from a checkpoint of either format."""
    state = mopro_state_dict(ckpt, path)
    return OrderedDict((k[len('backbone.'):], v) for k, v in state.items()
                       if k.startswith('backbone.'))


def load_model_weights(model: torch.nn.Module,
                       path: str,
                       trust: bool = False,
                       strict: bool = True) -> dict:
    """Load a checkpoint of either format into a MoPro model.

    Raises a one-line :class:`CheckpointError` naming both sides when the
    class count or the architecture of the checkpoint does not match the
    model built from the config. Returns the loaded checkpoint dict.
    """
    ckpt = load_checkpoint(path, trust=trust)
    state = mopro_state_dict(ckpt, path)
    own = model.state_dict()
    classifier = state.get('classifier.weight')
    if classifier is not None and 'classifier.weight' in own and \
            classifier.shape != own['classifier.weight'].shape:
        raise CheckpointError(
            f'{path}: checkpoint has {classifier.shape[0]} classes '
            f'(classifier {tuple(classifier.shape)}) but the config builds '
            f'{own["classifier.weight"].shape[0]} '
            f'(classifier {tuple(own["classifier.weight"].shape)}); set '
            'model.num_classes to match')
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f'{path}: architecture mismatch at {key}: checkpoint '
                f'{tuple(value.shape)} vs config {tuple(own[key].shape)}')
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f'{path}: architecture mismatch: {len(missing)} weights missing '
            f'(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. '
            f'{unexpected[:2]})')
    model.load_state_dict(state, strict=strict)
    return ckpt
