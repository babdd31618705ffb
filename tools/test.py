#!/usr/bin/env python
"""Evaluate a checkpoint on the config's validation and test sets.

    python tools/test.py configs/mopro_r50_webvision_v1.py CKPT
    (WebVision val top-1/top-5, then ImageNet val top-1/top-5)
"""
import argparse

import mopro  # noqa: F401
from mmengine.runner import Runner

from mopro.utils.checkpoint import CheckpointError, load_model_weights  # noqa
from mopro.utils.runner import (add_config_args, adapt_to_device,  # noqa
                                load_config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument('checkpoint', help='checkpoint of this project or '
                        'of the released MoPro code')
    parser.add_argument('--sets', nargs='+', default=['val', 'test'],
                        choices=['val', 'test'],
                        help='which of val_dataloader / test_dataloader')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle arbitrary objects in the checkpoint')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        cfg = load_config(args)
        adapt_to_device(cfg)
        cfg.load_from = None
        runner = Runner.from_cfg(cfg)
        if cfg.model.type == 'MoPro':
            load_model_weights(runner.model, args.checkpoint,
                               trust=args.trust_checkpoint)
        else:
            runner.load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(f'error: {err}')
    metrics = {}
    for name in args.sets:
        result = runner.val() if name == 'val' else runner.test()
        metrics.update({f'{name}/{k}': v for k, v in result.items()})
    return metrics


if __name__ == '__main__':
    main()
