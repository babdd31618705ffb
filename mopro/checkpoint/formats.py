"""The two checkpoint formats a model loads from: this project's (mmengine
Runner, ``state_dict`` with ``backbone.*``) and the released original
code's (``state_dict`` with ``module.encoder_q.*``), which
:func:`original_to_mopro` renames into this project's names."""
from collections import OrderedDict
from typing import Dict, Optional

import torch

from .io import CheckpointError

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
