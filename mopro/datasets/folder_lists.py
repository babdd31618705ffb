"""Image lists from a folder of class subfolders.

``root/<class name>/<image>`` (images may sit deeper below their class
folder) becomes the three files :class:`~mopro.datasets.CustomImageList`
reads (``configs/mopro_r50_custom.py``)::

    train.txt     "cat/001.jpg 0": path relative to the lists' folder, label
    val.txt       the held-out images, in the same format
    classes.txt   the class names, one a line, in label order

Classes are the subfolders in sorted order. Hidden files and folders
(``.name``: macOS's ``._x.jpg`` and ``.DS_Store``, ``.ipynb_checkpoints/``)
are left out and counted (:mod:`~mopro.datasets.hidden_names`). The
validation split is drawn per class with a seeded generator: a
``val_fraction`` of each class's images, rounded, at least one for every
class with two images or more and never all of them. Files that are not
images (by extension) are skipped and counted.
"""
import contextlib
import math
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..utils.errors import DataError, UserError
from ..utils.fileio import atomic_path
from ..utils.outputs import check_output_dir
from .hidden_names import HiddenNames
from .imagenet_variants import IMG_EXTENSIONS

LIST_FILES = ('train.txt', 'val.txt', 'classes.txt')

# (path relative to the lists' folder, label)
Entry = Tuple[str, int]


@dataclass
class ClassFolders:
    """What :func:`scan_class_folders` found below ``root``."""
    root: str
    classes: List[str]
    # per class, the images' paths relative to root, sorted
    images: List[List[str]]
    # files that are not images, or not in a class folder
    skipped: int = 0
    # hidden files and folders left out (a folder counts once)
    hidden: int = 0


@dataclass
class FolderLists:
    """The lists :func:`folder_to_lists` wrote, and what they hold."""
    out_dir: str
    files: Dict[str, str]
    num_classes: int
    num_train: int
    num_val: int
    skipped: int
    hidden: int
    # classes with a single image, hence none in val.txt
    without_val: List[str] = field(default_factory=list)


def _raise_unreadable(err: OSError) -> None:
    raise DataError(f'{err.filename}: cannot read the folder '
                    f'({err.strerror})')


def _listdir(path: str, hidden: HiddenNames) -> List[str]:
    try:
        return hidden.listdir(path)
    except OSError as err:
        _raise_unreadable(err)


def _check_name(path: str, what: str) -> None:
    """A name that survives the lists' one-entry-a-line format."""
    name = osp.basename(path)
    if '\n' in name or '\r' in name or name != name.strip():
        raise DataError(f'{path}: a {what} name with a line break or '
                        'leading or trailing blanks cannot be listed; '
                        'rename it')


def _images_below(folder: str, root: str,
                  hidden: HiddenNames) -> Tuple[List[str], int]:
    """Image paths (relative to ``root``, sorted) below ``folder`` and the
    number of other files; hidden files and folders are left out, counted
    in ``hidden``."""
    images, skipped = [], 0
    for top, dirs, files in os.walk(folder, onerror=_raise_unreadable):
        dirs[:] = hidden.visible(top, dirs)
        for name in hidden.visible(top, files):
            path = osp.join(top, name)
            if name.lower().endswith(IMG_EXTENSIONS):
                _check_name(path, 'file')
                images.append(osp.relpath(path, root).replace(os.sep, '/'))
            else:
                skipped += 1
    return images, skipped


def scan_class_folders(root: str,
                       exclude: Optional[str] = None) -> ClassFolders:
    """The classes (sorted subfolders of ``root``) and their images.

    Args:
        root: the folder of class subfolders.
        exclude: a subfolder that is no class (the lists' output folder).

    Raises:
        DataError: ``root`` is no folder or has no class folders, a class
            folder holds no image, a folder cannot be read, a name cannot
            be listed; one line naming the folder.
    """
    if not osp.isdir(root):
        raise DataError(f'{root}: no such folder')
    hidden = HiddenNames()
    entries = _listdir(root, hidden)
    excluded = osp.realpath(exclude) if exclude else None
    classes, images, skipped = [], [], 0
    for name in entries:
        path = osp.join(root, name)
        if not osp.isdir(path):
            skipped += name not in LIST_FILES
            continue
        if osp.realpath(path) == excluded:
            continue
        _check_name(path, 'class folder')
        found, other = _images_below(path, root, hidden)
        if not found:
            raise DataError(
                f'{path}: no images ({", ".join(IMG_EXTENSIONS)}) in this '
                'class folder; add images or remove it')
        classes.append(name)
        images.append(found)
        skipped += other
    if not classes:
        raise DataError(f'{root}: no class folders; expected '
                        f'{root}/<class name>/<image>')
    return ClassFolders(root, classes, images, skipped, hidden.count)


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise UserError(f'--val-fraction must be in (0, 1), got '
                        f'{val_fraction}')


def split_per_class(images: List[List[str]], val_fraction: float,
                    seed: int = 0) -> Tuple[List[Entry], List[Entry]]:
    """Train and validation entries ``(path, label)``, drawn per class.

    Each class with ``n >= 2`` images gives ``round(val_fraction * n)`` of
    them, at least 1 and at most ``n - 1``, to validation; a class with a
    single image keeps it for training. Entries are sorted by label and
    path; the same ``seed`` draws the same split.
    """
    _check_fraction(val_fraction)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, paths in enumerate(images):
        n = len(paths)
        num_val = 0 if n < 2 else min(
            n - 1, max(1, math.floor(val_fraction * n + 0.5)))
        held_out = set(rng.permutation(n)[:num_val].tolist())
        for i, path in enumerate(paths):
            (val if i in held_out else train).append((path, label))
    return train, val


def _list_text(entries: List[Entry], root: str, out_dir: str) -> str:
    """``path label`` lines, paths relative to ``out_dir``."""
    if osp.realpath(root) == osp.realpath(out_dir):
        return ''.join(f'{path} {label}\n' for path, label in entries)
    lines = []
    for path, label in entries:
        relative = osp.relpath(osp.join(root, path), out_dir)
        lines.append(f'{relative.replace(os.sep, "/")} {label}\n')
    return ''.join(lines)


def folder_to_lists(root: str, out_dir: Optional[str] = None,
                    val_fraction: float = 0.1, seed: int = 0,
                    force: bool = False) -> FolderLists:
    """Write ``train.txt``, ``val.txt`` and ``classes.txt`` for the images
    of ``root/<class name>/`` into ``out_dir`` (default ``root``).

    The paths in the lists are relative to ``out_dir``: it is the
    ``data_root`` of :class:`~mopro.datasets.CustomImageList`. Nothing is
    written unless all three can be: existing lists are an error (unless
    ``force``), each file is written to a temporary and renamed.

    Raises:
        UserError: existing lists without ``force``, a ``val_fraction``
            outside (0, 1).
        DataError: see :func:`scan_class_folders`.
    """
    _check_fraction(val_fraction)
    out_dir = out_dir or root
    if out_dir != root or osp.isdir(root):  # else the scan names root
        check_output_dir(out_dir, what='list folder')
    targets = {name: osp.join(out_dir, name) for name in LIST_FILES}
    existing = [path for path in targets.values() if osp.exists(path)]
    if existing and not force:
        raise UserError(f'{existing[0]} exists; pass --force to overwrite '
                        'the lists')
    folders = scan_class_folders(root, exclude=out_dir)
    train, val = split_per_class(folders.images, val_fraction, seed)
    texts = {
        'train.txt': _list_text(train, root, out_dir),
        'val.txt': _list_text(val, root, out_dir),
        'classes.txt': ''.join(f'{name}\n' for name in folders.classes),
    }
    os.makedirs(out_dir, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for name, path in targets.items():
            tmp = stack.enter_context(atomic_path(path))
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(texts[name])
    return FolderLists(
        out_dir=out_dir, files=targets, num_classes=len(folders.classes),
        num_train=len(train), num_val=len(val), skipped=folders.skipped,
        hidden=folders.hidden, without_val=[
            name for name, paths in zip(folders.classes, folders.images)
            if len(paths) < 2
        ])
