#!/usr/bin/env python
"""Main job: MoPro vs cross-entropy on the embedded noisy digits (CPU).

    python tools/run_demo.py [--work-dir work_dirs/demo]
                             [--out-dir results/demo]
                             [--data-root data/demo_webvision] [--skip-ce]

Builds the noisy digits dataset if absent, trains MoPro
(configs/mopro_r18_demo.py), cleans its training set with the final model,
trains the cross-entropy baseline (configs/ce_r18_demo.py), and writes the
report (``demo_results.{json,md}`` and pictures) to ``--out-dir``. The
console shows a plan, one progress line and the results; each run's log
file (``--work-dir``) holds the rest. See :mod:`mopro.demo`.
"""
import argparse
import os.path as osp
from typing import List, Optional

from mopro.demo import run_demo
from mopro.utils.cli import (ConfigOptionsAction, non_negative_int,
                             positive_int, tool_parser)
from mopro.utils.errors import run_tool

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='runs: checkpoints and logs')
    parser.add_argument('--out-dir', default='results/demo',
                        help='the report: results and pictures')
    parser.add_argument('--data-root', default='data/demo_webvision')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='seed of the dataset and of training')
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='override the configs\' number of epochs')
    parser.add_argument('--skip-ce', action='store_true',
                        help='train MoPro only')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='overrides applied to both configs')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    return run_demo(
        osp.join(CONFIGS, 'mopro_r18_demo.py'),
        osp.join(CONFIGS, 'ce_r18_demo.py'), work_dir=args.work_dir,
        out_dir=args.out_dir, data_root=args.data_root, seed=args.seed,
        epochs=args.epochs, skip_ce=args.skip_ce, cfg_options=args.cfg_options)


if __name__ == '__main__':
    run_tool(main)
