"""Checkpoint loading under torch's weights-only unpickler.

mmengine 0.10.7 calls ``torch.load`` with the default ``weights_only=True``
of torch >= 2.6, which rejects the numpy objects and mmengine
``HistoryBuffer`` that its checkpoints carry, so ``--resume`` fails. Rather
than switching the safe unpickler off,
:func:`install_checkpoint_pickling` (run by ``import mopro``,
:func:`mopro.utils.environment.setup_environment`):

- allow-lists exactly the safe globals those checkpoints need (numpy array
  and scalar reconstruction, dtypes, ``HistoryBuffer``), and
- pickles ``HistoryBuffer`` as plain lists, so checkpoints written by this
  project never need ``builtins.getattr`` (stock mmengine pickles the
  buffer's bound statistics methods through it).

It also reads the two checkpoint formats of this project: its own (mmengine
Runner, ``state_dict`` with ``backbone.*``) and the released original code's
(``state_dict`` with ``module.encoder_q.*``), and loads them into a model
strictly (:func:`load_model_weights`): a checkpoint of another depth, class
count or format, or with non-finite weights, is a one-line error that says
what does not match.
"""
import copyreg
import os
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

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


def _reduce_history_buffer(buffer: HistoryBuffer):
    logs, counts = buffer.data
    return HistoryBuffer, (logs.tolist(), counts.tolist(), buffer.max_length)


def install_checkpoint_pickling() -> None:
    """Allow-list :data:`SAFE_GLOBALS` in torch's weights-only unpickler
    and pickle ``HistoryBuffer`` as plain lists (idempotent)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
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

# (bottleneck blocks, blocks per stage) -> depth of the standard ResNets
RESNET_DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}
# the classifier weight of each model type, the keys setting its classes
# (the class count of the data too: the num_classes switch sets them all)
# and the key setting the width of the features it takes
_CLASSIFIERS = (
    ('classifier.weight', ('model.num_classes', ), 'model.feat_dim'),
    ('head.fc.weight', ('model.head.num_classes',
                        'model.data_preprocessor.num_classes'),
     'model.head.in_channels'),
)
_DATA_CLASSES = "each dataloader's dataset.num_classes"
# the features of a standard ResNet: 512 channels, x4 with bottlenecks
_RESNET_WIDTH = {False: 512, True: 2048}
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
        ORIGINAL_FORMAT:
        'a checkpoint of the released MoPro code: import it '
        'with tools/model_converters/convert_from_original.py first',
        MOPRO_FORMAT:
        'a checkpoint of this project, not of the released '
        'code',
        None:
        'neither a MoPro project nor a released-code checkpoint (no '
        "'backbone.*' or 'module.encoder_q.*' weights)",
    }
    if found is None and 'conv1.weight' in get_state_dict(ckpt):
        hints[None] = ('a bare ResNet state dict (conv1.weight at the top '
                       'level, as torchvision writes it), not a checkpoint '
                       'of this project or of the released MoPro code')
    article = 'an' if expected[0] in 'aeiou' else 'a'
    raise CheckpointError(f'{path}: expected {article} {expected} checkpoint, '
                          f'got {hints[found]}')


def original_to_mopro(
        state: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
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


def resnet_layout(keys: Iterable[str], stage: str = 'backbone.layer',
                  first: int = 1) -> Optional[Tuple[bool, Tuple[int, ...]]]:
    """(bottleneck blocks, blocks per stage) of the ResNet whose weights
    are named ``{stage}{i}.{block}.conv1.weight``, stages ``first`` to
    ``first + 3`` (torchvision/mmpretrain: ``backbone.layer1..4``;
    Detectron2: ``res2..5``); None without such weights."""
    keys = set(keys)
    blocks = []
    for i in range(first, first + 4):
        count = 0
        while f'{stage}{i}.{count}.conv1.weight' in keys:
            count += 1
        blocks.append(count)
    if not any(blocks):
        return None
    return f'{stage}{first}.0.conv3.weight' in keys, tuple(blocks)


def describe_resnet(layout: Tuple[bool, Tuple[int, ...]]) -> str:
    """``'ResNet-50'``, or the layout of a non-standard one."""
    depth = RESNET_DEPTHS.get(layout)
    if depth:
        return f'ResNet-{depth}'
    kind = 'bottleneck' if layout[0] else 'basic'
    return f'ResNet of {kind} blocks {"-".join(map(str, layout[1]))}'


def depth_mismatch(ckpt_keys: Iterable[str], own_keys: Iterable[str],
                   stage: str = 'backbone.layer', first: int = 1,
                   setting: str = 'model.backbone.depth') -> Optional[str]:
    """Why the checkpoint's ResNet is not the model's, or None, with every
    key to change: the depth, and the width of the features the model's
    classifier takes when it has one (``model.feat_dim`` of MoPro,
    ``model.head.in_channels`` of a classifier), e.g. ``'checkpoint is a
    ResNet-50 (backbone.layer1.0.conv3 present), the config builds
    ResNet-18: set model.backbone.depth=50 model.feat_dim=2048'``."""
    own_keys = set(own_keys)
    theirs = resnet_layout(ckpt_keys, stage, first)
    ours = resnet_layout(own_keys, stage, first)
    if theirs is None or ours is None or theirs == ours:
        return None
    if theirs[0] != ours[0]:
        evidence = (f'{stage}{first}.0.conv3 '
                    f'{"present" if theirs[0] else "absent"}')
    else:
        evidence = f'blocks per stage {"-".join(map(str, theirs[1]))}'
    message = (f'checkpoint is a {describe_resnet(theirs)} ({evidence}), '
               f'the config builds {describe_resnet(ours)}')
    depth = RESNET_DEPTHS.get(theirs)
    if not depth:
        return message
    keys = [f'{setting}={depth}']
    if _RESNET_WIDTH[theirs[0]] != _RESNET_WIDTH[ours[0]]:
        keys += [
            f'{width}={_RESNET_WIDTH[theirs[0]]}'
            for weight, _, width in _CLASSIFIERS if weight in own_keys
        ]
    return f'{message}: set {" ".join(keys)}'


def _kind_hint(missing: List[str], unexpected: List[str]) -> str:
    """What a set of missing and unexpected weights says about the
    checkpoint, for the message."""
    if any(k.startswith('head.fc.') for k in missing) and \
            any(k.startswith('classifier.') for k in unexpected):
        return ('; it is a MoPro checkpoint: evaluate it with a MoPro '
                'config, or start a classifier from it with '
                "init_cfg=dict(type='MoProPretrained', ...)")
    if any(k.startswith('classifier.') for k in missing) and \
            any(k.startswith('head.fc.') for k in unexpected):
        return '; it is a classifier checkpoint: use a classifier config'
    return ''


def check_weights_match(own: Dict[str, torch.Tensor],
                        state: Dict[str, torch.Tensor], path: str,
                        strict: bool = True) -> Tuple[List[str], List[str]]:
    """Raise a one-line :class:`CheckpointError` unless ``state`` fits the
    model state ``own``: ResNet depth, class count, every shape and, when
    ``strict``, the same names. Returns the missing and unexpected names.
    """
    depth = depth_mismatch(state, own)
    if depth:
        raise CheckpointError(f'{path}: {depth}')
    for key, settings, _ in _CLASSIFIERS:
        if key in state and key in own and \
                state[key].shape[0] != own[key].shape[0]:
            classes = state[key].shape[0]
            keys = ' '.join(f'{setting}={classes}' for setting in settings)
            raise CheckpointError(
                f'{path}: checkpoint has {classes} classes ({key} '
                f'{tuple(state[key].shape)}) but the config builds '
                f'{own[key].shape[0]} ({tuple(own[key].shape)}); set '
                f'{keys} and {_DATA_CLASSES}={classes} (--cfg-options '
                f'num_classes={classes} sets them all where the config has '
                'that switch)')
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f'{path}: architecture mismatch at {key}: checkpoint '
                f'{tuple(value.shape)} vs config {tuple(own[key].shape)}')
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f'{path}: does not match the config: {len(missing)} weights '
            f'missing (e.g. {missing[:2]}), {len(unexpected)} unexpected '
            f'(e.g. {unexpected[:2]}){_kind_hint(missing, unexpected)}')
    return missing, unexpected


def require_finite(state: Dict[str, torch.Tensor], path: str) -> None:
    """Raise a one-line :class:`CheckpointError` naming the first tensor
    that holds NaN or infinity (the weights of a diverged run)."""
    for key, value in state.items():
        if value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise CheckpointError(
                    f'{path}: {key} holds {bad} non-finite values (NaN or '
                    f'inf) of {value.numel()}: the weights of a diverged '
                    'run')


def load_model_weights(model: torch.nn.Module, path: str, trust: bool = False,
                       strict: bool = True,
                       submodule: Optional[str] = None) -> dict:
    """Load a checkpoint of either format into a model built from a config
    (MoPro or an mmpretrain classifier).

    Raises a one-line :class:`CheckpointError` when the checkpoint does not
    match the model (:func:`check_weights_match`: ResNet depth, class
    count, shapes; with ``strict`` also missing or unexpected weights) or
    holds non-finite weights. With ``strict=False`` (initialising from
    another model's checkpoint) the weights both have are loaded and a log
    line names what was left out.

    Args:
        model: the model.
        path: checkpoint file.
        trust: unpickle arbitrary objects (``--trust-checkpoint``).
        strict: every weight of the model (or sub-module) must be loaded.
        submodule: load only this child of the model (``'backbone'``: the
            encoder, for feature extraction) from the checkpoint's weights
            under ``'<submodule>.'``.

    Returns:
        The loaded checkpoint dict.
    """
    ckpt = load_checkpoint(path, trust=trust)
    state = mopro_state_dict(ckpt, path)
    target = getattr(model, submodule) if submodule else model
    prefix = f'{submodule}.' if submodule else ''
    state = {k: v for k, v in state.items() if k.startswith(prefix)}
    own = {prefix + k: v for k, v in target.state_dict().items()}
    missing, unexpected = check_weights_match(own, state, path, strict)
    if missing or unexpected:
        print_log(
            f'{path}: loaded non-strictly into {type(model).__name__}: '
            f'{len(missing)} of its weights keep their initialisation (e.g. '
            f'{missing[:2]}), {len(unexpected)} checkpoint weights unused '
            f'(e.g. {unexpected[:2]})', logger='current', level=30)
    require_finite(state, path)
    target.load_state_dict({
        k[len(prefix):]: v
        for k, v in state.items()
    }, strict=strict)
    return ckpt
