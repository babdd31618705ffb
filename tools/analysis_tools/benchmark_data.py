#!/usr/bin/env python
r"""Time the two-view data paths (per core, end to end) and the Runner loop.

    # per core: each pipeline and worker stage, the hand-over, operators
    # per batch, the GPU path's preprocessor with its threads
    python tools/analysis_tools/benchmark_data.py \
        configs/mopro_r50_webvision_v1.py --iters 4000 \
        --out benchmarks/data_stages_cpu.json
    # both data paths end to end through mmengine's Runner
    python tools/analysis_tools/benchmark_data.py \
        configs/mopro_r50_webvision_v1.py --runner --num-images 4096 \
        --batch-size 256 --runner-iters 40 --workers 15 --gpu-workers 4 \
        --out benchmarks/data_loading_h200.json
    # reading tar shards against one file per image, per worker
    python tools/analysis_tools/benchmark_data.py \
        configs/mopro_r50_webvision_v1.py --shards --num-images 1024 \
        --iters 2000 --out benchmarks/shards_cpu.json
    # the Runner loop's host ms per iteration and per hook, profiled
    python tools/analysis_tools/benchmark_data.py \
        configs/mopro_r50_webvision_v1.py --loop --loop-iters 500 \
        --profile-iters 100 --out benchmarks/runner_loop_cpu.json

The images are crops of scikit-learn's sample photos at WebVision's size,
or the JPEGs of ``--images DIR``; the GPU data path's config is
``--gpu-config``. ``mopro.analysis.data_benchmark`` says what each mode
times. It prints JSON (``--out`` also writes it). Speed is reported, never
asserted in tests.
"""
import argparse
import copy
import os.path as osp
from typing import Dict

from mopro.analysis.data_benchmark import (TARGET_IMG_PER_S,
                                           DataBenchmarkSettings,
                                           benchmark_data)
from mopro.analysis.timing import check_publish, publish
from mopro.config import config_files, load_config
from mopro.utils.cli import (ConfigOptionsAction, add_device_arg,
                             non_negative_int, positive_int,
                             settings_from_args, tool_parser)
from mopro.utils.errors import run_tool

GPU_CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'mopro_r50_webvision_v1_gpu_data.py')


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add = parser.add_argument
    add('config')
    add(
        '--images', help='a folder of JPEGs to use instead of crops of '
        'scikit-learn\'s sample photos')
    add('--num-images', type=positive_int, default=64,
        help='images to make (with --images: the most to use, in name order)')
    add('--iters', type=positive_int, default=200,
        help='timed images per pipeline')
    add('--warmup', type=non_negative_int, default=10)
    add('--block', type=positive_int, default=100,
        help='images per turn (the pipelines alternate)')
    add('--seed', type=non_negative_int, default=0)
    add('--out', help='also write the JSON here')
    add('--cfg-options', nargs='+', default=None, action=ConfigOptionsAction)
    add('--gpu-config', default=GPU_CONFIG,
        help='the config of the GPU data path')
    add('--gpu-cfg-options', nargs='+', default=None,
        action=ConfigOptionsAction)
    add_device_arg(
        parser, '; the GPU path\'s (--runner trains where mmengine\'s '
        'Runner does)')
    add(
        '--batch-size', type=positive_int, default=None,
        help='images per batch (default: with --runner or --loop the '
        'config\'s, else 256)')
    add('--gpu-img-per-s', type=positive_int, default=TARGET_IMG_PER_S,
        help='the step rate the cores per GPU are for')
    add('--runner', action='store_true',
        help='time both paths end to end through the Runner')
    add('--runner-iters', type=positive_int, default=20,
        help='timed Runner iterations per path')
    add('--loop', action='store_true',
        help='time the Runner loop and its hooks with a trivial model')
    add('--loop-iters', type=positive_int, default=200,
        help='timed iterations of --loop')
    add('--profile-iters', type=non_negative_int, default=50,
        help='iterations of --loop profiled after the timed ones')
    add(
        '--loop-history', type=non_negative_int, default=0,
        help='values in each logged scalar\'s history when --loop times '
        'the loop, as that many iterations into a run')
    add('--workers', type=non_negative_int, default=None,
        help='dataloader workers of the CPU path (default: the config\'s)')
    add('--gpu-workers', type=non_negative_int, default=None,
        help='dataloader workers of the GPU path (default: the config\'s)')
    add('--handover-batch', type=positive_int, default=256,
        help='images per batch of the worker hand-over measurement')
    add('--handover-repeats', type=positive_int, default=5,
        help='timed batches of the hand-over measurement')
    add('--shards', action='store_true',
        help='time reading tar shards against one file per image')
    add('--shard-records', type=positive_int, default=256,
        help='records per shard of --shards')
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    check_publish(
        args.out,
        inputs=config_files(args.config) + config_files(args.gpu_config))
    gpu_args = copy.copy(args)
    gpu_args.config, gpu_args.cfg_options = (args.gpu_config,
                                             args.gpu_cfg_options)
    results = benchmark_data(
        load_config(args), load_config(gpu_args),
        settings_from_args(DataBenchmarkSettings, args))
    return publish(results, args.out)


if __name__ == '__main__':
    run_tool(main)
