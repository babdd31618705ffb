#!/usr/bin/env python
"""Compare the resolved configs of two revisions, key by key.

    python tools/misc/diff_configs.py BASE_REV [--rev REV] [--allow KEY ...]

Every ``configs/**/*.py`` outside ``_base_/`` is read with
``Config.fromfile(...).to_dict()`` as it is at ``BASE_REV`` and as it is in
the working tree (or at ``--rev``); the output lists, per config, the keys
(``model.head.num_classes``, ``param_scheduler.0.T_max``) added, removed or
changed (a tuple turned list counts), and the configs that exist on one
side only. Exit status 1 when a difference is not matched by an
``--allow`` pattern (``fnmatch`` on the key, e.g. ``--allow max_epochs
'model.compile'``), so a refactoring of the configs can be checked to
leave every run as it was (``mopro/config/diff.py``).
"""
import argparse
import os
import os.path as osp
import subprocess
import tarfile
import tempfile
from typing import List, Optional

from mopro.config.diff import compare_config_dirs
from mopro.utils.cli import tool_parser
from mopro.utils.errors import UserError, run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('base', help='git revision to compare against')
    parser.add_argument(
        '--rev', help='git revision to compare (default: the working tree)')
    parser.add_argument('--allow', nargs='+', default=[],
                        help='key patterns whose differences are expected')
    return parser.parse_args(argv)


def export_configs(rev: str, dest: str) -> str:
    """``configs/`` of ``rev`` extracted below ``dest``; its path."""
    os.makedirs(dest)
    archive = osp.join(dest, 'configs.tar')
    result = subprocess.run(
        ['git', '-C', ROOT, 'archive', '-o', archive, rev, 'configs'],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f'git archive {rev}: {result.stderr.strip()}')
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter='data')
    return osp.join(dest, 'configs')


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = export_configs(args.base, osp.join(tmp, 'base'))
        new_dir = (
            export_configs(args.rev, osp.join(tmp, 'new'))
            if args.rev else osp.join(ROOT, 'configs'))
        lines, unexpected = compare_config_dirs(base_dir, new_dir, args.allow)
    print('\n'.join(lines))
    print(f'{unexpected} unexpected differences'
          if unexpected else 'no unexpected differences')
    if unexpected:
        raise SystemExit(1)


if __name__ == '__main__':
    run_tool(main)
