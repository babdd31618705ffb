#!/usr/bin/env python
r"""Measure the bytes each collective of MoPro's training step moves per rank.

    python tools/analysis_tools/benchmark_comm.py \
        configs/mopro_r50_webvision_v1.py --world-sizes 2,4,8 \
        --out benchmarks/comm_gloo_cpu.json

For each world size, that many gloo processes on this machine train the
config's model (in DDP, as the Runner wraps it) and shuffle its batches;
the kernel's counters give the bytes each rank sent and received per step,
for each collective: the shuffle of the momentum encoder's batch (this
project's all-to-all and the released code's gather version), the queue's
key gather, the prototypes' update, the non-finite flag and DDP's gradient
all-reduce (also with its bf16 compression hook). ``projection`` extends
the figures to larger jobs with NCCL's ring arithmetic at
``--bandwidth-gbit-s`` per GPU (``mopro.analysis.comm_benchmark`` says
what each entry holds). It prints JSON (``--out`` also writes it). Bytes
do not depend on the machine; Linux only (/proc counters).
"""
import argparse
from typing import Dict

from mopro.analysis.comm_benchmark import CommBenchmarkSettings, benchmark_comm
from mopro.analysis.timing import check_publish, publish
from mopro.config import load_config
from mopro.utils.cli import (ConfigOptionsAction, non_negative_int,
                             positive_float, positive_int, positive_list,
                             settings_from_args, tool_parser)
from mopro.utils.errors import run_tool


def _world_sizes(text: str):
    sizes = positive_list(int)(text)
    if min(sizes) < 2:
        raise argparse.ArgumentTypeError(
            f'{text}: a collective needs at least 2 processes')
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('--world-sizes', type=_world_sizes, default=[2, 4, 8],
                        help='numbers of processes, e.g. 2,4,8')
    parser.add_argument('--batch-size', type=positive_int, default=32,
                        help='images per rank')
    parser.add_argument('--image-size', type=positive_int, default=224,
                        help="the shuffle's images")
    parser.add_argument(
        '--step-image-size', type=positive_int, default=32,
        help="the training step's views (only the shuffle "
        'depends on it)')
    parser.add_argument('--steps', type=positive_int, default=3)
    parser.add_argument('--warmup', type=non_negative_int, default=2)
    parser.add_argument('--project-to', type=positive_list(int),
                        default=[8, 64,
                                 512], help='world sizes of the projection')
    parser.add_argument('--bandwidth-gbit-s', type=positive_float,
                        default=400.0,
                        help='network bandwidth per GPU of the projection')
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        action=ConfigOptionsAction)
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    check_publish(args.out, inputs=(args.config, ))
    settings = settings_from_args(CommBenchmarkSettings, args)
    return publish(benchmark_comm(load_config(args), settings), args.out)


if __name__ == '__main__':
    run_tool(main)
