"""Initialise an mmpretrain classifier from a MoPro checkpoint.

Classifier re-training (paper Section 4.3) and low-resource fine-tuning
(Section 5.2) start from a pretrained MoPro encoder in an mmpretrain
``ImageClassifier``, whose names differ from MoPro's: the encoder is
``backbone.*`` in both, but MoPro's ``classifier.*`` is the head's
``head.fc.*``. mmengine's ``Pretrained`` initialiser only strips a prefix
and silently skips weights it cannot match; this one renames, accepts both
checkpoint formats (this project's and the released code's) and fails with a
one-line error when the checkpoint does not fit the model.

Usage in a config (on the whole model, so one key names the checkpoint)::

    model = dict(
        type='ImageClassifier',
        init_cfg=dict(type='MoProPretrained', checkpoint=CKPT,
                      mapping=[('backbone.', 'backbone.'),
                               ('classifier.', 'head.fc.')]),
        backbone=dict(..., init_cfg=None),  # nothing re-initialises
        head=dict(..., init_cfg=None))      # what was loaded

mmengine runs a model's own non-``Pretrained`` init_cfg before its
children's ``init_weights``, so the children whose weights are loaded need
``init_cfg=None``; a child left out of the mapping (a new classifier) keeps
its own initialisation.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS

from ..checkpoint import (CheckpointError, depth_mismatch, load_checkpoint,
                          mopro_state_dict, require_finite)

ENCODER_ONLY = (('backbone.', 'backbone.'), )
Mapping = Union[Dict[str, str], Sequence[Tuple[str, str]]]


def rename_weights(state: Dict[str, torch.Tensor],
                   mapping: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """Weights under each source prefix, renamed to the target prefix."""
    out = {}
    for src, dst in mapping.items():
        out.update({
            dst + key[len(src):]: value
            for key, value in state.items() if key.startswith(src)
        })
    return out


@WEIGHT_INITIALIZERS.register_module(name='MoProPretrained')
class MoProPretrainedInit:
    """Load renamed weights of a MoPro checkpoint into a model.

    Every target prefix must be filled exactly: same names, same shapes
    (a ResNet of another depth or a classifier of another class count is a
    one-line error naming both), finite values. What the mapping leaves out
    (a new classifier) keeps its initialisation, and the log line says so.

    Args:
        checkpoint: checkpoint of this project or of the released code.
        mapping: ``(source prefix in the checkpoint, prefix in the model)``
            pairs or a dict of them (default: the encoder only). A list
            replaces, rather than merges with, a base config's.
        trust: unpickle arbitrary objects (only for trusted files).
    """

    def __init__(self, checkpoint: str, mapping: Optional[Mapping] = None,
                 trust: bool = False) -> None:
        self.checkpoint = checkpoint
        self.mapping = dict(mapping or ENCODER_ONLY)
        self.trust = trust

    def __call__(self, module: torch.nn.Module) -> None:
        path = self.checkpoint
        state = mopro_state_dict(load_checkpoint(path, trust=self.trust), path)
        weights = rename_weights(state, self.mapping)
        own = module.state_dict()
        depth = depth_mismatch(weights, own)
        if depth:
            raise CheckpointError(f'{path}: {depth}')
        for src, dst in self.mapping.items():
            self._check(src, dst, weights, own)
        require_finite(weights, path)
        module.load_state_dict(weights, strict=False)
        kept = sorted({
            k.rsplit('.', 1)[0] + '.*'
            for k in own if not k.startswith(tuple(self.mapping.values()))
        })
        print_log(
            f'loaded {len(weights)} weights ({", ".join(self.mapping)})'
            f' from {path}' + (f'; not in the checkpoint mapping, '
                               f'kept at their initialisation: '
                               f'{", ".join(kept)}' if kept else ''),
            logger='current')

    def _check(self, src: str, dst: str, weights: dict, own: dict) -> None:
        path = self.checkpoint
        loaded = {k for k in weights if k.startswith(dst)}
        wanted = {k for k in own if k.startswith(dst)}
        if not loaded:
            raise CheckpointError(f'{path}: no {src}* weights to load into '
                                  f'{dst}*')
        # weights before biases: the message then shows both dimensions
        for key in sorted(loaded & wanted, key=lambda k:
                          (not k.endswith('weight'), k)):
            if weights[key].shape != own[key].shape:
                raise CheckpointError(
                    f'{path}: {src}{key[len(dst):]} has shape '
                    f'{tuple(weights[key].shape)} but the config builds '
                    f'{key} with {tuple(own[key].shape)} (class count or '
                    'architecture mismatch)')
        missing, unexpected = sorted(wanted - loaded), sorted(loaded - wanted)
        if missing or unexpected:
            raise CheckpointError(
                f'{path}: {src}* does not match the config\'s {dst}*: '
                f'{len(missing)} weights missing (e.g. {missing[:2]}), '
                f'{len(unexpected)} unexpected (e.g. {unexpected[:2]})')

    def __repr__(self) -> str:
        return (f'MoProPretrained(checkpoint={self.checkpoint}, '
                f'mapping={self.mapping})')
