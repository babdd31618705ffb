"""Importing a checkpoint of the released MoPro code
(``tools/model_converters/convert_from_original.py``)."""
import os.path as osp

import torch

from ..checkpoint import (ORIGINAL_FORMAT, get_state_dict, load_checkpoint,
                          original_to_mopro, require_finite, require_format)
from ..utils.fileio import atomic_path
from ..utils.outputs import check_output_file


def convert_original(ckpt: dict, source: str) -> dict:
    """This project's checkpoint dict from a released-code checkpoint
    (finite weights only)."""
    require_format(ckpt, ORIGINAL_FORMAT, source)
    require_finite(get_state_dict(ckpt), source)
    return {
        'meta': {
            'epoch': int(ckpt.get('epoch', 0)),
            'converted_from': osp.abspath(source),
        },
        'state_dict': original_to_mopro(get_state_dict(ckpt)),
    }


def convert_original_checkpoint(source: str, output: str,
                                trust: bool = False) -> dict:
    """Write ``source`` (a released-code checkpoint: ``state_dict`` with
    ``module.encoder_q.*``, ``module.encoder_k.*``, ``module.queue``,
    ``module.queue_ptr``, ``module.prototypes``; ``epoch``) to ``output``
    in this project's format (``{'meta': {'epoch', 'converted_from'},
    'state_dict': ...}``), atomically, and return it.

    The output is checked (writable, not the input, room for the weights)
    before anything is written.
    """
    if not osp.isfile(source):
        raise FileNotFoundError(f'{source}: no such checkpoint file')
    check_output_file(output, inputs=[source])
    converted = convert_original(load_checkpoint(source, trust=trust), source)
    check_output_file(
        output, need_bytes=sum(v.numel() * v.element_size()
                               for v in converted['state_dict'].values()))
    with atomic_path(output) as tmp:
        torch.save(converted, tmp)
    return converted
