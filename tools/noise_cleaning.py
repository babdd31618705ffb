#!/usr/bin/env python
r"""Clean the noisy training set with a trained MoPro model (Section 4.3).

    python tools/noise_cleaning.py configs/mopro_r50_webvision_v1.py CKPT \
        --out work_dirs/cleaning/pseudo_label.json
    torchrun --nproc_per_node 8 tools/noise_cleaning.py CONFIG CKPT \
        --out ... --launcher pytorch

Writes ``--out`` (``{relative/path: label}``; with ``--cfg-options
data_format=shards shard_root=...`` ``{"shards": {shard: {record key:
label}}}``; OOD images removed; the training set of
``configs/crt_r50_webvision_v1.py``), and, in the work dir,
``noise_cleaning_summary.json`` (counts relabelled / OOD / kept, per class)
and the PNG report (OOD samples, relabelled samples, per-class changes):
``mopro.apis.clean_noisy_dataset``.
"""
import argparse

from mopro.apis import clean_noisy_dataset
from mopro.config import load_config
from mopro.utils.cli import (add_checkpoint_args, add_config_args,
                             add_device_arg, non_negative_int, positive_int,
                             tool_parser)
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add_config_args(parser)
    add_checkpoint_args(parser)
    parser.add_argument(
        '--out', required=True,
        help='cleaned labels (JSON {relative/path: label}, or by '
        'shard and record key over shards)')
    parser.add_argument('--batch-size', type=positive_int, default=256,
                        help='images per batch and GPU')
    parser.add_argument('--num-workers', type=non_negative_int, default=8)
    parser.add_argument('--num-show', type=positive_int, default=16,
                        help='images per sample grid of the report')
    add_device_arg(parser, '; under a launcher: the rank\'s GPU')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    return clean_noisy_dataset(
        load_config(args), args.checkpoint, args.out,
        batch_size=args.batch_size, num_workers=args.num_workers,
        num_show=args.num_show, device=args.device,
        trust_checkpoint=args.trust_checkpoint)


if __name__ == '__main__':
    run_tool(main)
