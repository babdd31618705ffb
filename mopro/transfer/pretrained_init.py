"""Initialise an mmpretrain classifier from a MoPro checkpoint.

Classifier re-training (paper Section 4.3) and low-resource fine-tuning
(Section 5.2) start from a pretrained MoPro encoder, in an mmpretrain
``ImageClassifier`` whose names differ from MoPro's: the encoder is
``backbone.*`` in both, but MoPro's ``classifier.*`` is the head's
``fc.*``. mmengine's ``Pretrained`` initialiser only strips a prefix and
silently skips weights it cannot match; this one renames, accepts both
checkpoint formats (this project's and the released code's) and fails with
a one-line error when the checkpoint does not fit the module.

Usage in a config::

    backbone=dict(..., init_cfg=dict(type='MoProPretrained',
                                     checkpoint=ckpt, prefix='backbone.'))
    head=dict(..., init_cfg=dict(type='MoProPretrained', checkpoint=ckpt,
                                 prefix='classifier.', target_prefix='fc.'))
"""
from typing import Dict

import torch
from mmengine.logging import print_log
from mmengine.registry import WEIGHT_INITIALIZERS

from ..utils.checkpoint import (CheckpointError, load_checkpoint,
                                mopro_state_dict)


def select_weights(state: Dict[str, torch.Tensor], prefix: str,
                   target_prefix: str = '') -> Dict[str, torch.Tensor]:
    """The weights under ``prefix``, renamed to start with
    ``target_prefix``."""
    return {
        target_prefix + key[len(prefix):]: value
        for key, value in state.items() if key.startswith(prefix)
    }


@WEIGHT_INITIALIZERS.register_module(name='MoProPretrained')
class MoProPretrainedInit:
    """Load ``prefix``-weights of a MoPro checkpoint into a module.

    Args:
        checkpoint: checkpoint of this project or of the released code.
        prefix: which weights (``'backbone.'`` or ``'classifier.'``).
        target_prefix: their names in the module (``'fc.'`` for an
            mmpretrain ``LinearClsHead``).
        trust: unpickle arbitrary objects (only for trusted files).
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: str = 'backbone.',
                 target_prefix: str = '',
                 trust: bool = False) -> None:
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.target_prefix = target_prefix
        self.trust = trust

    def __call__(self, module: torch.nn.Module) -> None:
        path = self.checkpoint
        ckpt = load_checkpoint(path, trust=self.trust)
        weights = select_weights(
            mopro_state_dict(ckpt, path), self.prefix, self.target_prefix)
        if not weights:
            raise CheckpointError(f'{path}: no {self.prefix}* weights')
        own = module.state_dict()
        for key, value in weights.items():
            if key in own and own[key].shape != value.shape:
                raise CheckpointError(
                    f'{path}: {self.prefix}{key[len(self.target_prefix):]} '
                    f'has shape {tuple(value.shape)} but the config builds '
                    f'{type(module).__name__}.{key} with '
                    f'{tuple(own[key].shape)} (class count or architecture '
                    'mismatch)')
        missing = sorted(set(own) - set(weights))
        unexpected = sorted(set(weights) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f'{path}: {self.prefix}* does not match the config\'s '
                f'{type(module).__name__}: {len(missing)} weights missing '
                f'(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. '
                f'{unexpected[:2]})')
        module.load_state_dict(weights, strict=True)
        print_log(f'loaded {len(weights)} {self.prefix}* weights from {path} '
                  f'into {type(module).__name__}', logger='current')

    def __repr__(self) -> str:
        return (f'MoProPretrained(checkpoint={self.checkpoint}, '
                f'prefix={self.prefix})')
