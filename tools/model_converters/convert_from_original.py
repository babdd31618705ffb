#!/usr/bin/env python
r"""Import a checkpoint of the released MoPro code into this project.

    python tools/model_converters/convert_from_original.py \
        released.pth.tar mopro_v1.pth

The released checkpoints (``state_dict`` with ``module.encoder_q.*``,
``module.encoder_k.*``, ``module.queue``, ``module.queue_ptr``,
``module.prototypes``; ``epoch``) become this project's format
(``{'meta': {'epoch', 'converted_from'}, 'state_dict': ...}``), which every
tool and config of the project loads (``mopro.apis.convert``).
"""
import argparse

from mopro.apis import convert_original_checkpoint
from mopro.utils.cli import add_checkpoint_args, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_checkpoint_args(parser, 'checkpoint of the released code')
    parser.add_argument('output', help='checkpoint to write')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    converted = convert_original_checkpoint(args.checkpoint, args.output,
                                            trust=args.trust_checkpoint)
    print(f'{args.checkpoint} -> {args.output}: '
          f'{len(converted["state_dict"])} tensors, epoch '
          f'{converted["meta"]["epoch"]}')


if __name__ == '__main__':
    run_tool(main)
