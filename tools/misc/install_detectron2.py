r"""Install detectron2 into the running Python environment (idempotent).

Run with the environment's interpreter::

    python tools/misc/install_detectron2.py [--source auto|git|pypi]

A quick no-op when detectron2 is importable. Otherwise a full build from
its git repository when that is reachable, else the v0.6 Python sources of
the registry's ``pb1-detectron2`` sdist (no compiled ops; see
:mod:`mopro.transfer.d2_install` and :mod:`mopro.transfer.d2_compat`).
"""
import argparse
from typing import List, Optional

from mopro.transfer.d2_install import SOURCES, install
from mopro.utils.cli import tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument(
        '--source', choices=SOURCES, default='auto',
        help='auto: git build if the repository is reachable, else the '
        'Python sources from the registry; git/pypi force one')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> str:
    return install(parse_args(argv).source)


if __name__ == '__main__':
    run_tool(main)
