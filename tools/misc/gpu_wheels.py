#!/usr/bin/env python
r"""Make the folder of wheels a GPU machine without network needs.

    python tools/misc/gpu_wheels.py .whl --build-python python3.12
    bash benchmarks/run_gpu_checks.sh --wheels .whl --out checks.json

The first runs where the package registry answers, the second on the GPU
machine. It downloads, for the GPU machine's Python (``--python-version``,
default 3.12) on x86-64 Linux, the wheels of the OpenMMLab packages and the
other requirements a GPU image with torch lacks, at the versions of
``constraints.txt`` (``mopro.analysis.gpu_checks``; those the registry has
only as sources are built with ``--build-python``), and copies this
environment's detectron2 Python package (not on the package registry) into
``DIR/site``.
"""
import argparse
import os.path as osp
from typing import List

from mopro.analysis.gpu_checks import download_wheels
from mopro.transfer.d2_compat import detectron2_dir
from mopro.utils.cli import tool_parser
from mopro.utils.errors import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('folder', help='where the wheels go')
    parser.add_argument('--python-version', default='3.12',
                        help="the GPU machine's Python, e.g. 3.12")
    parser.add_argument(
        '--build-python', default=None,
        help='a CPython of that version here, to build the wheels the '
        'registry has only as sources (default: python3.12 on PATH)')
    parser.add_argument('--no-detectron2', action='store_true',
                        help="leave detectron2's package out")
    return parser.parse_args(argv)


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    written = download_wheels(
        args.folder, osp.join(ROOT, 'constraints.txt'), args.python_version,
        args.build_python or f'python{args.python_version}',
        None if args.no_detectron2 else detectron2_dir())
    print(f'{len(written)} new files in {args.folder}')
    return written


if __name__ == '__main__':
    run_tool(main)
