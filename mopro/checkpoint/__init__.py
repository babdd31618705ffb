"""Checkpoints: files read under the weights-only unpickler and its
allow-list (:mod:`.io`), the released code's format converted
(:mod:`.formats`), the ResNet a checkpoint holds (:mod:`.resnet`) and
weights loaded strictly into a model (:mod:`.weights`)."""
from .formats import (MOPRO_FORMAT, ORIGINAL_FORMAT, checkpoint_format,
                      encoder_state_dict, get_state_dict, mopro_state_dict,
                      original_to_mopro, require_format)
from .io import CheckpointError, load_checkpoint
from .resnet import RESNET_DEPTHS, describe_resnet, resnet_layout
from .weights import (check_weights_match, depth_mismatch, load_model_weights,
                      require_finite)

__all__ = [
    'CheckpointError', 'MOPRO_FORMAT', 'ORIGINAL_FORMAT', 'RESNET_DEPTHS',
    'check_weights_match', 'checkpoint_format', 'depth_mismatch',
    'describe_resnet', 'encoder_state_dict', 'get_state_dict',
    'load_checkpoint', 'load_model_weights', 'mopro_state_dict',
    'original_to_mopro', 'require_finite', 'require_format', 'resnet_layout'
]
