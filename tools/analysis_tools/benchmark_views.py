#!/usr/bin/env python
r"""Time the GPU data path's two views per batch, by each resampling.

    python tools/analysis_tools/benchmark_views.py \
        configs/mopro_r50_webvision_v1_gpu_data.py --batch-sizes 32,256 \
        --iters 20 --out benchmarks/views_h100.json

The preprocessor's work per batch on the training thread once the batch is
decoded, with the config's view settings and autocast, at each batch size,
by each resampling (``model.data_preprocessor.resample``: ``triton``,
CUDA only, and ``matmul``). ``mopro.analysis.views_benchmark`` says what
each entry holds. It prints JSON (``--out`` also writes it). Speed is
reported, never asserted in tests.
"""
import argparse
from typing import Dict

from mopro.analysis.timing import check_publish, publish
from mopro.analysis.views_benchmark import (ViewsBenchmarkSettings,
                                            benchmark_views)
from mopro.config import load_config
from mopro.utils.cli import (ConfigOptionsAction, add_device_arg,
                             non_negative_int, positive_int, positive_list,
                             settings_from_args, tool_parser)
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add = parser.add_argument
    add('config', help='a config of the GPU data path')
    add('--batch-sizes', type=positive_list(int), default=[32, 256],
        help='comma-separated images per batch (default: 32,256)')
    add('--iters', type=positive_int, default=20,
        help='timed batches per batch size and resampling')
    add('--warmup', type=non_negative_int, default=3,
        help='untimed batches first (torch.compile builds there)')
    add('--num-images', type=positive_int, default=64,
        help='distinct photos, cycled to fill a batch')
    add('--seed', type=non_negative_int, default=0)
    add('--out', help='also write the JSON here')
    add('--cfg-options', nargs='+', default=None, action=ConfigOptionsAction)
    add_device_arg(parser)
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    check_publish(args.out, inputs=(args.config, ))
    results = benchmark_views(
        load_config(args), settings_from_args(ViewsBenchmarkSettings, args))
    return publish(results, args.out)


if __name__ == '__main__':
    run_tool(main)
