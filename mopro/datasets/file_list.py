"""Image lists ``relative/path label`` parsed once into compact arrays.

WebVision V2 has 16M training images; a list of 16M Python dicts costs many
GB in every dataloader worker. :class:`ImageList` keeps all paths in one
bytes buffer with offsets and the labels in an int32 array: three numpy
objects, shared copy-on-write by the workers.
"""
import os
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np


class ImageList:
    """Paths (one UTF-8 buffer + offsets) and integer labels."""

    def __init__(self, paths: Sequence[str], labels: Sequence[int]) -> None:
        encoded = [p.encode('utf-8') for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in encoded], out=self._offsets[1:])
        self._buffer = np.frombuffer(b''.join(encoded), dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, idx: int) -> str:
        start, end = self._offsets[idx], self._offsets[idx + 1]
        return self._buffer[start:end].tobytes().decode('utf-8')

    def subset(self, indices: Iterable[int]) -> 'ImageList':
        indices = list(indices)
        return ImageList([self.path(i) for i in indices],
                         self.labels[indices])

    @classmethod
    def concat(cls, lists: List['ImageList']) -> 'ImageList':
        return cls([lst.path(i) for lst in lists for i in range(len(lst))],
                   np.concatenate([lst.labels for lst in lists]))


def _parse_line(line: str, where: str) -> Tuple[str, int]:
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise ValueError(f'{where}: expected "relative/path label", got '
                         f'{line.strip()!r}')
    try:
        label = int(parts[1])
    except ValueError:
        raise ValueError(f'{where}: label {parts[1]!r} is not an integer') \
            from None
    if label < 0:
        raise ValueError(f'{where}: label {label} is negative')
    return parts[0], label


def read_file_list(list_file: str,
                   num_classes: Optional[int] = None,
                   label_limit: Optional[int] = None) -> ImageList:
    """Read ``relative/path label`` lines into an :class:`ImageList`.

    Args:
        list_file: the list file.
        num_classes: keep only labels ``< num_classes`` (WebVision's lists
            hold all 5000 V2 classes; V1 training keeps the first 1000).
        label_limit: labels ``>= label_limit`` are an error (out of range).

    Raises:
        FileNotFoundError: the list file is missing.
        ValueError: a malformed line, a label out of range or a duplicate
            path, naming file and line number.
    """
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f'{list_file}: file list not found')
    paths, labels, first_line = [], [], {}
    with open(list_file, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f'{list_file}:{lineno}'
            path, label = _parse_line(line, where)
            if label_limit is not None and label >= label_limit:
                raise ValueError(f'{where}: label {label} is out of range '
                                 f'[0, {label_limit})')
            if path in first_line:
                raise ValueError(f'{where}: duplicate path {path!r} (first '
                                 f'at line {first_line[path]})')
            first_line[path] = lineno
            if num_classes is None or label < num_classes:
                paths.append(path)
                labels.append(label)
    return ImageList(paths, labels)
