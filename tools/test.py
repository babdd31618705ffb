#!/usr/bin/env python
"""Evaluate a checkpoint on the config's validation and test sets.

    python tools/test.py configs/mopro_r50_webvision_v1.py CKPT
    (WebVision val top-1/top-5, then ImageNet val top-1/top-5)

The checkpoint is loaded strictly into the model the config builds (MoPro
or a classifier): another depth, class count or format is an error that
says what does not match. Without ``--sets``, every set the config has is
evaluated (the demo configs have no test set).
"""
import argparse

import mopro  # noqa: F401
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mopro.utils.checkpoint import load_model_weights
from mopro.utils.cli import ConfigError, run_tool
from mopro.utils.outputs import check_output_dir
from mopro.utils.runner import add_config_args, adapt_to_device, load_config

SETS = ('val', 'test')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument('checkpoint', help='checkpoint of this project or '
                        'of the released MoPro code')
    parser.add_argument('--sets', nargs='+', choices=SETS,
                        help='which of val_dataloader / test_dataloader '
                        '(default: those the config has)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle arbitrary objects in the checkpoint')
    return parser.parse_args(argv)


def sets_to_run(cfg, requested=None) -> list:
    """The requested sets (all the config has when None); a requested set
    the config lacks is an error naming its key."""
    present = [name for name in SETS
               if cfg.get(f'{name}_dataloader') is not None]
    if requested is None:
        if not present:
            raise ConfigError(f'{cfg.filename}: neither val_dataloader nor '
                              'test_dataloader is set; nothing to evaluate')
        return present
    for name in requested:
        if name not in present:
            raise ConfigError(
                f'{cfg.filename}: --sets {name}: the config has no '
                f'{name}_dataloader (it has: {", ".join(present) or "none"})')
    return list(requested)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args)
    sets = sets_to_run(cfg, args.sets)
    check_output_dir(cfg.work_dir, what='work dir')
    # no training loop: mmpretrain's VisualizationHook asks the runner for
    # its epoch after every val iteration, which would build the training
    # dataloader (and read the training lists) otherwise
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler'):
        cfg[key] = None
    adapt_to_device(cfg)
    cfg.load_from = None
    runner = Runner.from_cfg(cfg)
    model = runner.model
    load_model_weights(model.module if is_model_wrapper(model) else model,
                       args.checkpoint, trust=args.trust_checkpoint)
    metrics = {}
    for name in sets:
        result = runner.val() if name == 'val' else runner.test()
        metrics.update({f'{name}/{k}': v for k, v in result.items()})
    return metrics


if __name__ == '__main__':
    run_tool(main)
