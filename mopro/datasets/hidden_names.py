"""Hidden files and folders, left out wherever a dataset lists a folder.

A folder copied from macOS carries an AppleDouble file ``._name`` beside
many files (their extended attributes, no image even when named
``._x.jpg``) and a ``.DS_Store`` in every folder; Jupyter leaves
``.ipynb_checkpoints/`` with copies of what it opened. Listed as images
they would train as undecodable or duplicate samples. The datasets that
list folders and :func:`~mopro.datasets.folder_to_lists` leave out every
name that starts with a dot, as ``ls`` does, and say how many.
"""
import os
import os.path as osp
from typing import Iterable, List, Optional

from mmengine.logging import print_log


def is_hidden(name: str) -> bool:
    """A file or folder name starting with a dot."""
    return name.startswith('.')


class HiddenNames:
    """The hidden entries a folder scan left out: how many, and the first
    one (an example for the log line)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Optional[str] = None

    def visible(self, folder: str, names: Iterable[str]) -> List[str]:
        """``names`` (entries of ``folder``) without the hidden ones,
        sorted; the hidden ones are counted."""
        kept = []
        for name in sorted(names):
            if not is_hidden(name):
                kept.append(name)
                continue
            self.count += 1
            if self.first is None:
                self.first = osp.join(folder, name)
        return kept

    def listdir(self, folder: str) -> List[str]:
        """The visible entries of ``folder``, sorted."""
        return self.visible(folder, os.listdir(folder))

    def describe(self) -> str:
        """``3 hidden files and folders skipped (names starting with '.',
        e.g. data/cat/._1.jpg)``."""
        return (f'{self.count} hidden files and folders skipped (names '
                f"starting with '.', e.g. {self.first})")

    def log(self, where: str) -> None:
        """One log line ``where: <describe>``, if any was left out."""
        if self.count:
            print_log(f'{where}: {self.describe()}', logger='current')
