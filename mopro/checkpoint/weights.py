"""Checkpoint weights loaded into a model built from a config (MoPro or an
mmpretrain classifier), strictly: a checkpoint of another depth, class
count or format, or with non-finite weights, is a one-line
:class:`~mopro.checkpoint.io.CheckpointError` that says what does not
match, where ``load_state_dict`` would raise a list of every key or, loading
non-strictly, leave part of the model untrained."""
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from .formats import mopro_state_dict
from .io import CheckpointError, load_checkpoint
from .resnet import RESNET_DEPTHS, RESNET_WIDTH, describe_resnet, resnet_layout

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
    if RESNET_WIDTH[theirs[0]] != RESNET_WIDTH[ours[0]]:
        keys += [
            f'{width}={RESNET_WIDTH[theirs[0]]}'
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
