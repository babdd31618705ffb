#!/usr/bin/env python
r"""Run the GPU checks of docs/speed.md and write one JSON.

    bash benchmarks/run_gpu_checks.sh --out benchmarks/gpu_checks_h200.json
    bash benchmarks/run_gpu_checks.sh --wheels .whl --out gpu_checks.json

One after the other on one GPU: the training step at batch 256 and 32
(eager, compiled, in the Runner loop), both data paths end to end through
the Runner at both batches, and the CUDA tests (``pytest -m gpu``); then
the goals of docs/speed.md judged against them
(``mopro.analysis.gpu_checks``). A failed stage is reported with the end
of its output and the others still run; the stages' logs are kept beside
the JSON. ``benchmarks/run_gpu_checks.sh`` installs a folder of wheels
first on a machine without network (``tools/misc/gpu_wheels.py`` makes
it).
"""
import argparse
from typing import Dict

from mopro.analysis.gpu_checks import GpuCheckSettings, run_gpu_checks
from mopro.analysis.timing import check_publish, publish
from mopro.utils.cli import (non_negative_int, positive_int,
                             settings_from_args, tool_parser)
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add = parser.add_argument
    add('--out', required=True, help='the JSON to write')
    add('--step-iters', type=positive_int, default=30,
        help='timed steps of each step benchmark section')
    add('--runner-iters', type=positive_int, default=30,
        help='timed Runner iterations of each end-to-end path')
    add('--warmup', type=non_negative_int, default=10)
    add('--num-images', type=positive_int, default=2048,
        help='distinct JPEGs of the end-to-end runs')
    add('--workers', type=positive_int, default=15,
        help='dataloader workers of the CPU data path (the control)')
    add('--gpu-workers', type=positive_int, default=4,
        help='dataloader workers of the GPU data path')
    add('--test-workers', type=positive_int, default=4,
        help='pytest processes of the CUDA tests')
    add(
        '--skip', nargs='+', default=(), metavar='STAGE',
        help='stages to leave out (step_256, step_32, end_to_end_256, '
        'end_to_end_32, gpu_tests)')
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    check_publish(args.out)
    settings = settings_from_args(GpuCheckSettings, args)
    return publish(run_gpu_checks(settings), args.out)


if __name__ == '__main__':
    run_tool(main)
