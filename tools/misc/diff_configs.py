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
leave every run as it was.
"""
import argparse
import fnmatch
import glob
import os
import os.path as osp
import subprocess
import tarfile
import tempfile
from typing import Any, Iterator, List, Optional, Tuple

from mmengine.config import Config

from mopro.utils.cli import UserError, run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MISSING = '<absent>'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('base', help='git revision to compare against')
    parser.add_argument(
        '--rev', help='git revision to compare (default: '
        'the working tree)')
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


def config_names(config_dir: str) -> List[str]:
    """The configs below ``config_dir`` (relative paths), bases left out."""
    paths = glob.glob(osp.join(config_dir, '**', '*.py'), recursive=True)
    names = [osp.relpath(p, config_dir) for p in paths]
    return sorted(n for n in names if not n.startswith('_base_' + os.sep))


def short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


def differences(before: Any, after: Any,
                prefix: str = '') -> Iterator[Tuple[str, str, str]]:
    """``(dotted key, before, after)`` of every difference of two resolved
    configs; list items are keyed by index, a key present on one side
    only is one difference, and a tuple turned list is a difference."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            where = f'{prefix}.{key}' if prefix else str(key)
            if key not in after:
                yield where, short(before[key]), MISSING
            elif key not in before:
                yield where, MISSING, short(after[key])
            else:
                yield from differences(before[key], after[key], where)
    elif (isinstance(before, list) and isinstance(after, list)
          and len(before) == len(after)):
        for i, (old, new) in enumerate(zip(before, after)):
            yield from differences(old, new, f'{prefix}.{i}')
    elif type(before) is not type(after) or before != after:
        yield prefix, short(before), short(after)


def resolve(path: str) -> dict:
    cfg = Config.fromfile(path).to_dict()
    cfg.pop('filename', None)
    return cfg


def compare(base_dir: str, new_dir: str, allow: List[str]) -> int:
    """Print the differences; the number not matched by ``allow``."""
    base, new = set(config_names(base_dir)), set(config_names(new_dir))
    unexpected = 0
    for name in sorted(base - new):
        print(f'{name}: only at the base revision')
        unexpected += 1
    for name in sorted(new - base):
        print(f'{name}: new')
    for name in sorted(base & new):
        found = list(
            differences(
                resolve(osp.join(base_dir, name)),
                resolve(osp.join(new_dir, name))))
        if not found:
            print(f'{name}: identical')
            continue
        print(f'{name}: {len(found)} keys differ')
        for key, old, now in found:
            expected = any(fnmatch.fnmatchcase(key, p) for p in allow)
            unexpected += not expected
            mark = ' ' if expected else '!'
            print(f'  {mark} {key}: {old} -> {now}')
    return unexpected


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = export_configs(args.base, osp.join(tmp, 'base'))
        new_dir = (
            export_configs(args.rev, osp.join(tmp, 'new'))
            if args.rev else osp.join(ROOT, 'configs'))
        unexpected = compare(base_dir, new_dir, args.allow)
    print(f'{unexpected} unexpected differences'
          if unexpected else 'no unexpected differences')
    if unexpected:
        raise SystemExit(1)


if __name__ == '__main__':
    run_tool(main)
