#!/usr/bin/env python
"""Train a model from a config with mmengine's Runner.

    python tools/train.py configs/mopro_r50_webvision_v1.py [--resume [CKPT]]
    tools/dist_train.sh configs/mopro_r50_webvision_v1.py 8

``--resume`` alone continues from the work dir's latest checkpoint, or
starts from epoch 1 when there is none (one command for a requeued job).
Mistakes in the config, the hooks' arguments, ``--resume CKPT`` or
``load_from`` are one-line errors before training starts. Checkpoints load
with torch's weights-only unpickler; ``--trust-checkpoint`` allows other
objects in those of ``--resume`` and ``load_from``.
"""
import argparse

from mopro.apis import train_model
from mopro.config import load_config
from mopro.utils.cli import add_config_args, add_trust_arg, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_config_args(parser)
    parser.add_argument(
        '--resume', nargs='?', const='auto',
        help='resume from CKPT, or from the latest checkpoint of the work '
        'dir when given alone (from the start if it has none)')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr to the actual total batch size')
    add_trust_arg(parser, 'the checkpoint of --resume or load_from')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    train_model(
        load_config(args), resume=args.resume, amp=args.amp,
        auto_scale_lr=args.auto_scale_lr,
        trust_checkpoint=args.trust_checkpoint)


if __name__ == '__main__':
    run_tool(main)
