#!/usr/bin/env python
r"""Build the embedded noisy-digits "web" dataset in WebVision's layout.

    python tools/dataset_converters/make_demo_dataset.py \
        [--out data/demo_webvision] [--seed 0]

Digits 0-7 of scikit-learn's bundled handwritten digits are the 8 classes;
30% of their training labels are flipped to another class, and every 8 and 9
is an out-of-distribution image with a random label. A clean test split of
digits 0-7 goes to ``val_images_256``. See :mod:`mopro.datasets.demo`.
"""
import argparse
from typing import List, Optional

from mopro.datasets.demo import build_demo_dataset
from mopro.utils.cli import non_negative_int, positive_int, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('--out', default='data/demo_webvision',
                        help='dataset root to create')
    parser.add_argument('--seed', type=non_negative_int, default=0)
    parser.add_argument('--flip-rate', type=float, default=0.3,
                        help='fraction of in-distribution labels flipped')
    parser.add_argument('--test-per-class', type=positive_int, default=40,
                        help='clean test images per class')
    parser.add_argument('--size', type=positive_int, default=32,
                        help='side of the upscaled images in pixels')
    parser.add_argument('--limit', type=positive_int, default=None,
                        help='use at most this many images of each digit')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    summary = build_demo_dataset(args.out, seed=args.seed,
                                 flip_rate=args.flip_rate,
                                 test_per_class=args.test_per_class,
                                 size=args.size, limit=args.limit)
    verb = 'built' if summary['built'] else 'already complete, reused'
    print(f'{args.out}: {verb}: {summary["num_train"]} training images '
          f'({summary["clean"]} clean, {summary["flipped"]} flipped, '
          f'{summary["ood"]} OOD), {summary["num_val"]} clean test images')
    return summary


if __name__ == '__main__':
    run_tool(main)
