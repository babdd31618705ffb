#!/usr/bin/env python
"""Import a checkpoint of the released MoPro code into this project.

    python tools/model_converters/convert_from_original.py released.pth.tar mopro_v1.pth

The released checkpoints (``state_dict`` with ``module.encoder_q.*``,
``module.encoder_k.*``, ``module.queue``, ``module.queue_ptr``,
``module.prototypes``; ``epoch``) become this project's format
(``{'meta': {'epoch', 'converted_from'}, 'state_dict': ...}``), which every
tool and config of the project loads.
"""
import argparse
import os.path as osp

import torch

from mopro.utils import atomic_path
from mopro.utils.checkpoint import (ORIGINAL_FORMAT, get_state_dict,
                                    load_checkpoint, original_to_mopro,
                                    require_finite, require_format)
from mopro.utils.cli import run_tool
from mopro.utils.outputs import check_output_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('input', help='checkpoint of the released code')
    parser.add_argument('output', help='checkpoint to write')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle arbitrary objects in the input (only '
                        'for files from a source you trust)')
    return parser.parse_args(argv)


def convert(ckpt: dict, source: str) -> dict:
    """This project's checkpoint dict from a released-code checkpoint
    (finite weights only)."""
    require_format(ckpt, ORIGINAL_FORMAT, source)
    require_finite(get_state_dict(ckpt), source)
    state = original_to_mopro(get_state_dict(ckpt))
    return {
        'meta': {
            'epoch': int(ckpt.get('epoch', 0)),
            'converted_from': osp.abspath(source),
        },
        'state_dict': state,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if not osp.isfile(args.input):
        raise FileNotFoundError(f'{args.input}: no such checkpoint file')
    check_output_file(args.output, inputs=[args.input])
    ckpt = load_checkpoint(args.input, trust=args.trust_checkpoint)
    converted = convert(ckpt, args.input)
    check_output_file(args.output, need_bytes=sum(
        v.numel() * v.element_size()
        for v in converted['state_dict'].values()))
    with atomic_path(args.output) as tmp:
        torch.save(converted, tmp)
    print(f'{args.input} -> {args.output}: '
          f'{len(converted["state_dict"])} tensors, epoch '
          f'{converted["meta"]["epoch"]}')


if __name__ == '__main__':
    run_tool(main)
