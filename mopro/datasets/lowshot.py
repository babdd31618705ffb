"""Image-list readers of the low-shot SVM benchmark (paper Sec. 5.1, Table 2).

Two downstream datasets, read as (image paths, labels) without building a
training pipeline: the benchmark extracts features once and trains linear
SVMs on them (``mopro/evaluation/svm.py``, ``tools/svm_eval.py``).

PASCAL VOC2007 (standard VOCdevkit layout)::

    DATA_ROOT/                       # or DATA_ROOT/VOCdevkit/VOC2007, or
      VOC2007/                       #   DATA_ROOT itself being VOC2007/
        JPEGImages/000005.jpg ...
        ImageSets/Main/aeroplane_trainval.txt ... tvmonitor_test.txt

Each ``{class}_{split}.txt`` line is ``<image id> <label>`` with label 1
(present), -1 (absent) or 0 (present but only as "difficult" objects).

Places205 (layout of the released code's ``DataLoader/Places_dataset.py``)::

    DATA_ROOT/
      trainvalsplit_places205/train_places205.csv   # "<relative path> <label>"
      trainvalsplit_places205/val_places205.csv
      data/vision/torralba/deeplearning/images256/a/abbey/00000001.jpg ...

Image paths in the lists are relative to
``DATA_ROOT/data/vision/torralba/deeplearning/images256`` when that folder
exists, else to ``DATA_ROOT``; labels are integers 0..204.

:func:`image_dir` names, per dataset, the folder the images lie under: the
shards of a split (``lists_to_shards.py voc07|places205``) record each
image's path relative to it, and ``tools/svm_eval.py --shard-root`` finds
the images the readers name by that path.
"""
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from ..utils.errors import ConfigError, DataError
from .file_list import read_text_lines

VOC07_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
                 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
                 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
                 'train', 'tvmonitor')
VOC07_SPLITS = ('train', 'val', 'trainval', 'test')
PLACES205_SPLITS = ('train', 'val')
PLACES205_LIST_DIR = 'trainvalsplit_places205'
PLACES205_IMAGE_DIR = os.path.join('data', 'vision', 'torralba',
                                   'deeplearning', 'images256')


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{path}: no such {what} directory')


def voc2007_dir(data_root: str) -> str:
    """The ``VOC2007`` folder under ``data_root`` (see module docstring)."""
    _require_dir(data_root, 'data root')
    for candidate in (os.path.join(data_root, 'VOC2007'),
                      os.path.join(data_root, 'VOCdevkit',
                                   'VOC2007'), data_root):
        if os.path.isdir(os.path.join(candidate, 'ImageSets', 'Main')):
            return candidate
    raise FileNotFoundError(
        f'{data_root}: no VOC2007/ImageSets/Main below it (expected '
        'DATA_ROOT/VOC2007, DATA_ROOT/VOCdevkit/VOC2007 or DATA_ROOT being '
        'VOC2007)')


def _read_voc_class_file(path: str) -> Tuple[List[str], List[int]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such VOC label file')
    ids, labels = [], []
    for lineno, line in read_text_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ('1', '0', '-1'):
            raise DataError(
                f'{path}:{lineno}: expected "<image id> <1|0|-1>", got '
                f'{line.strip()!r}')
        ids.append(fields[0])
        labels.append(int(fields[1]))
    return ids, labels


def read_voc07(data_root: str, split: str) -> Tuple[List[str], np.ndarray]:
    """Read a VOC2007 classification split.

    Args:
        data_root: see the module docstring for the accepted layouts.
        split: ``'trainval'`` (low-shot training), ``'test'`` (evaluation),
            ``'train'`` or ``'val'``.

    Returns:
        Image paths (``JPEGImages/<id>.jpg``) and an ``N x 20`` int8 label
        matrix in {1, 0 (difficult), -1}, columns in :data:`VOC07_CLASSES`
        order, rows in the order of the class files.
    """
    if split not in VOC07_SPLITS:
        raise ConfigError(f'unknown VOC2007 split {split!r}; expected one of '
                          f'{VOC07_SPLITS}')
    root = voc2007_dir(data_root)
    main = os.path.join(root, 'ImageSets', 'Main')
    image_ids: List[str] = []
    columns = []
    for name in VOC07_CLASSES:
        path = os.path.join(main, f'{name}_{split}.txt')
        ids, labels = _read_voc_class_file(path)
        if not columns:
            image_ids = ids
        elif ids != image_ids:
            raise DataError(
                f'{path}: lists different images than '
                f'{VOC07_CLASSES[0]}_{split}.txt (all class files of a split '
                'must list the same images in the same order)')
        columns.append(labels)
    if not image_ids:
        raise DataError(f'{main}: the {split} split lists no images')
    images = voc07_image_dir(data_root)
    paths = [os.path.join(images, f'{i}.jpg') for i in image_ids]
    return paths, np.asarray(columns, dtype=np.int8).T.copy()


def voc07_image_dir(data_root: str) -> str:
    """The folder of the VOC2007 images (``VOC2007/JPEGImages``)."""
    return os.path.join(voc2007_dir(data_root), 'JPEGImages')


def places205_image_dir(data_root: str) -> str:
    """Folder the Places205 list paths are relative to."""
    released = os.path.join(data_root, PLACES205_IMAGE_DIR)
    return released if os.path.isdir(released) else data_root


def read_places205(data_root: str, split: str) -> Tuple[List[str], np.ndarray]:
    """Read a Places205 split list (``trainvalsplit_places205/``).

    Args:
        data_root: see the module docstring for the accepted layout.
        split: ``'train'`` (low-shot sampling pool) or ``'val'``
            (evaluation).

    Returns:
        Absolute image paths and an ``N`` int64 vector of class indices.
    """
    if split not in PLACES205_SPLITS:
        raise ConfigError(f'unknown Places205 split {split!r}; expected one '
                          f'of {PLACES205_SPLITS}')
    _require_dir(data_root, 'data root')
    path = os.path.join(data_root, PLACES205_LIST_DIR,
                        f'{split}_places205.csv')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such Places205 list file')
    image_dir = places205_image_dir(data_root)
    paths, labels = [], []
    for lineno, line in read_text_lines(path):
        fields = line.rsplit(maxsplit=1)
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(
                f'{path}:{lineno}: expected "<relative path> <class '
                f'index>", got {line.strip()!r}')
        paths.append(os.path.join(image_dir, fields[0]))
        labels.append(int(fields[1]))
    if not paths:
        raise DataError(f'{path}: lists no images')
    return paths, np.asarray(labels, dtype=np.int64)


# dataset -> the folder its image paths lie under
IMAGE_DIRS: Dict[str, Callable[[str], str]] = {
    'voc07': voc07_image_dir,
    'places205': places205_image_dir,
}


def image_dir(dataset: str, data_root: str) -> str:
    """The folder that ``dataset``'s image paths lie under."""
    return IMAGE_DIRS[dataset](data_root)


def relative_paths(paths: Sequence[str], folder: str) -> List[str]:
    """``paths`` relative to ``folder``: the image paths of a split as its
    shard records hold them (``path`` in their metadata), whatever
    spelling of the data root the reader was given."""
    folder = os.path.abspath(folder)
    return [os.path.relpath(p, folder) for p in paths]
