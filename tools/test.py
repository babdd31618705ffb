#!/usr/bin/env python
"""Evaluate a checkpoint on the config's validation and test sets.

    python tools/test.py configs/mopro_r50_webvision_v1.py CKPT
    (WebVision val top-1/top-5, then ImageNet val top-1/top-5)
    tools/dist_test.sh configs/mopro_r50_webvision_v1.py CKPT 8

The checkpoint is loaded strictly into the model the config builds (MoPro
or a classifier): another depth, class count or format is an error that
says what does not match. Without ``--sets``, every set the config has is
evaluated (the demo configs have no test set).
"""
import argparse

from mopro.apis import evaluate_checkpoint
from mopro.apis.evaluate import SETS
from mopro.config import load_config
from mopro.utils.cli import add_checkpoint_args, add_config_args, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_config_args(parser)
    add_checkpoint_args(parser)
    parser.add_argument(
        '--sets', nargs='+', choices=SETS,
        help='which of val_dataloader / test_dataloader '
        '(default: those the config has)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    return evaluate_checkpoint(
        load_config(args), args.checkpoint, args.sets,
        trust_checkpoint=args.trust_checkpoint)


if __name__ == '__main__':
    run_tool(main)
