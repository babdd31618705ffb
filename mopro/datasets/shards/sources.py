"""The image lists a conversion reads, from the project's datasets.

Each list is read by the dataset class that trains on it, with the same
checks (labels in range, duplicates, WebVision V2.0 lists trained as V1.0,
the V0.5 subset): the shards hold exactly the samples the list datasets
would load. The splits of the low-shot SVM benchmark (``voc07``,
``places205``) are read by the benchmark's own readers
(:mod:`mopro.datasets.lowshot`), so their shards hold exactly the images
``tools/svm_eval.py`` would open.
"""
import os.path as osp
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ...utils.errors import ConfigError, DataError
from ..custom_list import CustomImageList, read_class_names
from ..file_list import ImageList
from ..lowshot import (PLACES205_LIST_DIR, PLACES205_SPLITS, VOC07_CLASSES,
                       VOC07_SPLITS, image_dir, read_places205, read_voc07,
                       relative_paths, voc2007_dir)
from ..webvision import TRAIN_SOURCES, ImageNetVal, WebVision

# kind -> the splits it has (``--split``)
SPLITS = {
    'webvision': ('train', 'val'),
    'imagenet-val': ('train', 'val'),
    'folder': ('train', 'val'),
    'voc07': VOC07_SPLITS,
    'places205': PLACES205_SPLITS,
}
KINDS = tuple(SPLITS)
# the label of a VOC07 record: no single class (see _voc07)
NO_CLASS = -1
PLACES205_CLASSES = 205


class SourceList(NamedTuple):
    """One image list: ``name`` (the records' key prefix and ``source``),
    the list file (or folder) it was read from, the images, and the folder
    their paths are relative to."""
    name: str
    origin: str
    images: ImageList
    image_root: str


class ListSettings(NamedTuple):
    """What to read (the converter's arguments)."""
    kind: str
    data_root: str
    split: str = 'train'
    sources: Sequence[str] = TRAIN_SOURCES
    num_classes: Optional[int] = None
    list_classes: Optional[int] = None
    subset_size: Optional[int] = None
    ann_file: Optional[str] = None


def _webvision(s: ListSettings) -> List[SourceList]:
    common = dict(data_root=s.data_root, split=s.split,
                  num_classes=s.num_classes or 1000,
                  list_classes=s.list_classes, lazy_init=True)
    if s.split == 'val' or s.subset_size is not None:
        dataset = WebVision(sources=s.sources, subset_size=s.subset_size,
                            **common)
        name = 'val' if s.split == 'val' else 'subset'
        origin = 'info/val_filelist.txt' if s.split == 'val' else \
            osp.relpath(dataset.subset_file, s.data_root)
        return [
            SourceList(name, origin, dataset.load_image_list(),
                       dataset.image_root())
        ]
    lists = []
    for source in s.sources:
        dataset = WebVision(sources=(source, ), **common)
        lists.append(
            SourceList(source, f'info/train_filelist_{source}.txt',
                       dataset.load_image_list(), dataset.image_root()))
    return lists


def _imagenet_val(s: ListSettings) -> List[SourceList]:
    dataset = ImageNetVal(s.data_root, ann_file=s.ann_file,
                          num_classes=s.num_classes or 1000, lazy_init=True)
    return [
        SourceList('imagenet_val', dataset.origin(), dataset.load_image_list(),
                   dataset.image_root())
    ]


def folder_num_classes(data_root: str, num_classes: Optional[int]) -> int:
    """``num_classes`` if given, else the lines of ``classes.txt``."""
    if num_classes is not None:
        return num_classes
    path = osp.join(data_root, 'classes.txt')
    if not osp.isfile(path):
        raise ConfigError(f'{path} not found: give --num-classes')
    return len(read_class_names(path))


def _folder(s: ListSettings) -> List[SourceList]:
    ann_file = s.ann_file or f'{s.split}.txt'
    dataset = CustomImageList(
        s.data_root, ann_file=ann_file,
        num_classes=folder_num_classes(s.data_root,
                                       s.num_classes), lazy_init=True)
    name = osp.splitext(osp.basename(ann_file))[0].replace('.', '_')
    return [
        SourceList(name, ann_file, dataset.load_image_list(),
                   dataset.image_root())
    ]


def _lowshot_split(s: ListSettings,
                   reader: Callable) -> Tuple[List[str], np.ndarray, str]:
    """A split of a low-shot benchmark dataset as the benchmark's
    ``reader`` reads it: its image paths relative to the dataset's image
    folder, its labels, and that folder."""
    paths, labels = reader(s.data_root, s.split)
    folder = image_dir(s.kind, s.data_root)
    return relative_paths(paths, folder), labels, folder


def _voc07(s: ListSettings) -> List[SourceList]:
    """A VOC2007 split. Its labels are 20 columns of 1, 0 (difficult) and
    -1 per image, which no single class index holds: every record's label
    is :data:`NO_CLASS` (-1), so that a reader that trains on ``.cls``
    refuses the records rather than learning a made-up class, and the
    labels stay in the VOC class files, which ``tools/svm_eval.py`` reads
    from ``--data-root`` as it does without shards."""
    paths, _, folder = _lowshot_split(s, read_voc07)
    main = osp.relpath(
        osp.join(voc2007_dir(s.data_root), 'ImageSets', 'Main'), s.data_root)
    return [
        SourceList(s.split, osp.join(main, f'{{class}}_{s.split}.txt'),
                   ImageList(paths, [NO_CLASS] * len(paths)), folder)
    ]


def _places205(s: ListSettings) -> List[SourceList]:
    """A Places205 split; a record's label is the image's class index."""
    paths, labels, folder = _lowshot_split(s, read_places205)
    origin = osp.join(PLACES205_LIST_DIR, f'{s.split}_places205.csv')
    num_classes = index_num_classes(s)
    if labels.max() >= num_classes:
        raise DataError(f'{osp.join(s.data_root, origin)}: class index '
                        f'{labels.max()} is not below {num_classes}; give '
                        '--num-classes')
    return [SourceList(s.split, origin, ImageList(paths, labels), folder)]


def read_source_lists(settings: ListSettings) -> List[SourceList]:
    """The lists ``settings`` names, read by their datasets."""
    readers = dict(webvision=_webvision, folder=_folder, voc07=_voc07,
                   places205=_places205)
    readers['imagenet-val'] = _imagenet_val
    if settings.kind not in readers:
        raise ConfigError(f'unknown list kind {settings.kind!r}; choose from '
                          f'{KINDS}')
    if settings.split not in SPLITS[settings.kind]:
        raise ConfigError(f'--split {settings.split}: the {settings.kind} '
                          f'splits are {", ".join(SPLITS[settings.kind])}')
    return readers[settings.kind](settings)


def index_num_classes(settings: ListSettings) -> int:
    """The classes an index records: ``num_classes`` if given, else the
    lines of an own-data folder's ``classes.txt``, the 20 VOC2007 classes
    (the columns of its class files), 205 for Places205, else 1000."""
    if settings.kind == 'folder':
        return folder_num_classes(settings.data_root, settings.num_classes)
    if settings.kind == 'voc07':
        if settings.num_classes not in (None, len(VOC07_CLASSES)):
            raise ConfigError(f'--num-classes {settings.num_classes}: '
                              f'VOC2007 has {len(VOC07_CLASSES)} classes')
        return len(VOC07_CLASSES)
    if settings.num_classes is not None:
        return settings.num_classes
    return PLACES205_CLASSES if settings.kind == 'places205' else 1000


def class_names(settings: ListSettings) -> List[str]:
    """The class names of an own-data folder (``classes.txt``) or of
    VOC2007, else none."""
    path = osp.join(settings.data_root, 'classes.txt')
    if settings.kind == 'folder' and osp.isfile(path):
        return read_class_names(path)
    if settings.kind == 'voc07':
        return list(VOC07_CLASSES)
    return []
