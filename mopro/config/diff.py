"""Configs compared as they resolve, key by key.

A refactoring of the configs (``_base_`` files split or merged, keys moved
between them) must leave every run as it was; what counts is what
``Config.fromfile`` resolves, not the text of the files
(``tools/misc/diff_configs.py`` compares two revisions of ``configs/``).
"""
import fnmatch
import glob
import os
import os.path as osp
from typing import Any, Iterator, List, Sequence, Tuple

from mmengine.config import Config

MISSING = '<absent>'


def config_names(config_dir: str) -> List[str]:
    """The configs below ``config_dir`` (relative paths), bases left out."""
    paths = glob.glob(osp.join(config_dir, '**', '*.py'), recursive=True)
    names = [osp.relpath(p, config_dir) for p in paths]
    return sorted(n for n in names if not n.startswith('_base_' + os.sep))


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


def config_differences(before: Any, after: Any,
                       prefix: str = '') -> Iterator[Tuple[str, str, str]]:
    """``(dotted key, before, after)`` of every difference of two resolved
    configs; list items are keyed by index, a key present on one side only
    is one difference (its value on the other side :data:`MISSING`), and a
    tuple turned list is a difference."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            where = f'{prefix}.{key}' if prefix else str(key)
            if key not in after:
                yield where, _short(before[key]), MISSING
            elif key not in before:
                yield where, MISSING, _short(after[key])
            else:
                yield from config_differences(before[key], after[key], where)
    elif (isinstance(before, list) and isinstance(after, list)
          and len(before) == len(after)):
        for i, (old, new) in enumerate(zip(before, after)):
            yield from config_differences(old, new, f'{prefix}.{i}')
    elif type(before) is not type(after) or before != after:
        yield prefix, _short(before), _short(after)


def resolve_config(path: str) -> dict:
    """The config file ``path`` as a dict, its bases merged in."""
    cfg = Config.fromfile(path).to_dict()
    cfg.pop('filename', None)
    return cfg


DiffReport = Tuple[List[str], int]


def compare_config_dirs(base_dir: str, new_dir: str,
                        allow: Sequence[str] = ()) -> DiffReport:
    """The report of the differences between the configs of two folders,
    one line each, and how many are unexpected: a config gone, or a key
    that no ``allow`` pattern (``fnmatch``, e.g. ``model.*``) matches. A new
    config is reported, not counted."""
    base, new = set(config_names(base_dir)), set(config_names(new_dir))
    lines = [
        f'{name}: only at the base revision' for name in sorted(base - new)
    ]
    unexpected = len(lines)
    lines += [f'{name}: new' for name in sorted(new - base)]
    for name in sorted(base & new):
        found = list(
            config_differences(
                resolve_config(osp.join(base_dir, name)),
                resolve_config(osp.join(new_dir, name))))
        if not found:
            lines.append(f'{name}: identical')
            continue
        lines.append(f'{name}: {len(found)} keys differ')
        for key, old, now in found:
            expected = any(fnmatch.fnmatchcase(key, p) for p in allow)
            unexpected += not expected
            lines.append(f'  {" " if expected else "!"} {key}: {old} -> {now}')
    return lines, unexpected
