#!/usr/bin/env python
"""Train a model from a config with mmengine's Runner.

    python tools/train.py configs/mopro_r50_webvision_v1.py [--resume [CKPT]]
    tools/dist_train.sh configs/mopro_r50_webvision_v1.py 8
"""
import argparse

import mopro  # noqa: F401  (registers the project, safe unpickling)
from mmengine.runner import Runner

from mopro.utils.checkpoint import CheckpointError
from mopro.utils.runner import (add_config_args, adapt_to_device,  # noqa
                                load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from CKPT, or from the latest checkpoint of the work '
        'dir when given alone')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr to the actual total batch size')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')
    adapt_to_device(cfg, amp=args.amp)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
    except CheckpointError as err:  # init from a mismatched checkpoint
        raise SystemExit(f'error: {err}')


if __name__ == '__main__':
    main()
