"""Image lists ``relative/path label`` parsed once into compact arrays.

WebVision V2 has 16M training images; a list of 16M Python dicts costs many
GB in every dataloader worker. :class:`ImageList` keeps all paths in one
bytes buffer with offsets and the labels in an int32 array: three numpy
objects, shared copy-on-write by the workers.
"""
import codecs
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from ..utils.errors import DataError


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
        return ImageList([self.path(i) for i in indices], self.labels[indices])

    @classmethod
    def concat(cls, lists: List['ImageList']) -> 'ImageList':
        return cls([lst.path(i) for lst in lists for i in range(len(lst))],
                   np.concatenate([lst.labels for lst in lists]))


def read_text_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, a leading byte-order
    mark (``utf-8-sig``, as some Windows editors write) removed.

    Raises:
        DataError: a line that is not UTF-8, naming file, line and byte.
    """
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield lineno, raw.decode('utf-8')
            except UnicodeDecodeError as err:
                raise DataError(
                    f'{path}:{lineno}: not UTF-8 text (byte '
                    f'0x{raw[err.start]:02x} at column {err.start + 1}); '
                    'save the file as UTF-8') from None


def _parse_line(line: str, where: str) -> Tuple[str, int]:
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise DataError(f'{where}: expected "relative/path label", got '
                        f'{line.strip()!r}')
    try:
        label = int(parts[1])
    except ValueError:
        raise DataError(f'{where}: label {parts[1]!r} is not an integer') \
            from None
    if label < 0:
        raise DataError(f'{where}: label {label} is negative')
    return parts[0], label


def read_file_list(list_file: str, num_classes: Optional[int] = None,
                   list_classes: Optional[int] = None) -> ImageList:
    """Read ``relative/path label`` lines (UTF-8) into an
    :class:`ImageList`.

    Args:
        list_file: the list file.
        num_classes: labels must lie in ``[0, num_classes)``.
        list_classes: the class count of the list when it holds more
            classes than are trained (WebVision's V2 lists hold 5000, of
            which V1 training keeps the first 1000): labels in
            ``[num_classes, list_classes)`` are dropped, with a log line
            counting them, and only labels ``>= list_classes`` are errors.

    Raises:
        FileNotFoundError: the list file is missing.
        DataError: a malformed or non-UTF-8 line, a label out of range or a
            duplicate path, naming file and line number.
    """
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f'{list_file}: file list not found')
    limit = list_classes or num_classes
    setting = 'list_classes' if list_classes else 'num_classes'
    paths, labels, first_line = [], [], {}
    dropped = 0
    for lineno, line in read_text_lines(list_file):
        if not line.strip():
            continue
        where = f'{list_file}:{lineno}'
        path, label = _parse_line(line, where)
        if limit is not None and label >= limit:
            raise DataError(f'{where}: label {label} is out of range '
                            f'[0, {limit}) (dataset {setting}={limit})')
        if path in first_line:
            raise DataError(f'{where}: duplicate path {path!r} (first at '
                            f'line {first_line[path]})')
        first_line[path] = lineno
        if num_classes is not None and label >= num_classes:
            dropped += 1
            continue
        paths.append(path)
        labels.append(label)
    if dropped:
        print_log(
            f'{list_file}: kept {len(paths)} images of classes '
            f'< num_classes={num_classes}; dropped {dropped} lines of '
            f'classes {num_classes}..{list_classes - 1} '
            f'(list_classes={list_classes})', logger='current')
    return ImageList(paths, labels)
