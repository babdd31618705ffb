"""The image lists a conversion reads, from the project's datasets.

Each list is read by the dataset class that trains on it, with the same
checks (labels in range, duplicates, WebVision V2.0 lists trained as V1.0,
the V0.5 subset): the shards hold exactly the samples the list datasets
would load.
"""
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence

from ...utils.errors import ConfigError
from ..custom_list import CustomImageList, read_class_names
from ..file_list import ImageList
from ..webvision import TRAIN_SOURCES, ImageNetVal, WebVision

KINDS = ('webvision', 'imagenet-val', 'folder')


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


def read_source_lists(settings: ListSettings) -> List[SourceList]:
    """The lists ``settings`` names, read by their datasets."""
    readers = dict(webvision=_webvision, folder=_folder)
    readers['imagenet-val'] = _imagenet_val
    if settings.kind not in readers:
        raise ConfigError(f'unknown list kind {settings.kind!r}; choose from '
                          f'{KINDS}')
    return readers[settings.kind](settings)


def class_names(settings: ListSettings) -> List[str]:
    """The class names of an own-data folder (``classes.txt``), else
    none."""
    path = osp.join(settings.data_root, 'classes.txt')
    if settings.kind == 'folder' and osp.isfile(path):
        return read_class_names(path)
    return []
