#!/usr/bin/env python
r"""Time MoPro's training step against the supervised bounds, on one device.

    python tools/analysis_tools/benchmark.py \
        configs/mopro_r50_webvision_v1.py --batch-sizes 256 32 --iters 50 \
        --out benchmarks/mopro_step_h200.json

Times, at each batch size (``--batch-sizes``: 256, the paper's batch on one
GPU, and 32, the per-GPU batch of the 8-GPU configs, by default) and in
each mode (``--modes``: eager, compiled with ``model.compile``, and
reduce-overhead, the same with torch.compile's CUDA graphs; all three on
CUDA, eager only elsewhere; CUDA graphs are reported as not applicable off
CUDA), the MoPro step, the supervised step and the supervised-plus-forward
bound, the same step in the Runner loop the configs train with, and the
noise-cleaning and SVM feature batches, with the graphs torch.compile
built for each (``mopro.analysis.step_benchmark`` says what each entry
holds). It prints JSON (``--out`` also writes it). Speed is reported here,
never asserted in tests. Variants are one ``--cfg-options`` away, e.g.
``optim_wrapper.optimizer.fused=True``. Data loading is timed separately:
``tools/analysis_tools/benchmark_data.py``.
"""
import argparse
from typing import Dict

from mopro.analysis.step_benchmark import (MODES, StepBenchmarkSettings,
                                           benchmark_step)
from mopro.analysis.timing import check_publish, publish
from mopro.config import config_files, load_config
from mopro.utils.cli import (ConfigOptionsAction, add_device_arg,
                             non_negative_int, positive_int,
                             settings_from_args, tool_parser)
from mopro.utils.errors import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('--iters', type=positive_int, default=50)
    parser.add_argument('--warmup', type=non_negative_int, default=10)
    parser.add_argument(
        '--batch-sizes', type=positive_int, nargs='+', default=[256, 32],
        help='training batches (one device), each timed (default: 256 32)')
    parser.add_argument('--eval-batch-size', type=positive_int, default=512,
                        help='noise-cleaning and feature-extraction batch')
    parser.add_argument('--image-size', type=positive_int, default=224)
    add_device_arg(parser)
    parser.add_argument(
        '--modes', nargs='+', choices=MODES, default=None,
        help='what to time: the eager model, the compiled one, the '
        'compiled one with CUDA graphs (default: all on CUDA, eager '
        'elsewhere)')
    parser.add_argument(
        '--compile-backend', default=None,
        help="torch.compile backend (default: the config's, "
        "inductor); 'aot_eager' builds in seconds on a CPU")
    parser.add_argument(
        '--no-inference', dest='inference', action='store_false',
        help='leave out the noise-cleaning and feature-extraction batches')
    parser.add_argument('--out', help='also write the JSON here')
    parser.add_argument('--cfg-options', nargs='+', default=None,
                        action=ConfigOptionsAction)
    args = parser.parse_args(argv)
    for flag in ('batch_sizes', 'modes'):
        values = getattr(args, flag) or []
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            parser.error(f'argument --{flag.replace("_", "-")}: '
                         f'{" ".join(map(str, repeated))} given twice')
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    check_publish(args.out, inputs=config_files(args.config))
    settings = settings_from_args(StepBenchmarkSettings, args)
    return publish(benchmark_step(load_config(args), settings), args.out)


if __name__ == '__main__':
    run_tool(main)
