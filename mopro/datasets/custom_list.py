"""Your own images, as image lists beside the class names."""
import os.path as osp
from typing import List, Optional

from mmpretrain.registry import DATASETS

from ..utils.errors import DataError
from ..utils.validate import check_int
from .file_list import ImageList, read_file_list, read_text_lines
from .image_list_dataset import ImageListDataset, indexed_metainfo

CONVERTER = 'tools/dataset_converters/folder_to_lists.py'


def read_class_names(path: str) -> List[str]:
    """Class names, one a line in label order (``classes.txt``); blank
    lines at the end are ignored.

    Raises:
        DataError: a blank or duplicate name, naming file and line.
    """
    names = [line.rstrip('\r\n') for _, line in read_text_lines(path)]
    while names and not names[-1].strip():
        names.pop()
    first_line = {}
    for lineno, name in enumerate(names, 1):
        if not name.strip():
            raise DataError(f'{path}:{lineno}: blank class name (one name a '
                            'line, in label order)')
        if name in first_line:
            raise DataError(f'{path}:{lineno}: duplicate class name {name!r} '
                            f'(first at line {first_line[name]})')
        first_line[name] = lineno
    if not names:
        raise DataError(f'{path}: no class names')
    return names


@DATASETS.register_module()
class CustomImageList(ImageListDataset):
    """Images of your own, listed in a folder::

        data_root/
            train.txt       # "relative/path label", relative to data_root
            val.txt
            classes.txt     # optional: class names, one a line, label order
            <class name>/<image> ...

    ``tools/dataset_converters/folder_to_lists.py`` writes the three files
    from a folder of class subfolders (``configs/mopro_r50_custom.py``).
    The class names become the dataset's ``metainfo['classes']``, which the
    Runner hands to the evaluators and stores in the checkpoints' meta.

    Args:
        data_root: the folder of the lists.
        ann_file: the image list, relative to ``data_root`` (or absolute).
        num_classes: the classes: labels must lie in ``[0, num_classes)``,
            and ``classes_file``, where it exists, must name as many.
        classes_file: the class names, relative to ``data_root`` (or
            absolute); read when it exists, else the classes are named
            ``'0'``, ``'1'``, ...
    """

    def __init__(self, data_root: str, ann_file: str = 'train.txt',
                 num_classes: Optional[int] = None,
                 classes_file: str = 'classes.txt',
                 metainfo: Optional[dict] = None, **kwargs) -> None:
        check_int(num_classes, 'dataset num_classes')
        self.ann_file_path = osp.join(data_root, ann_file)
        self.num_classes = num_classes
        self.classes_path = osp.join(data_root, classes_file)
        if metainfo is None:
            metainfo = dict(classes=self._class_names())
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def _class_names(self) -> List[str]:
        if not osp.isfile(self.classes_path):
            return indexed_metainfo(self.num_classes)['classes']
        names = read_class_names(self.classes_path)
        if len(names) != self.num_classes:
            raise DataError(
                f'{self.classes_path}: {len(names)} class names but '
                f'num_classes={self.num_classes}; pass --cfg-options '
                f'num_classes={len(names)}')
        return names

    def origin(self) -> str:
        return osp.basename(self.ann_file_path)

    def load_image_list(self) -> ImageList:
        if not osp.isfile(self.ann_file_path):
            raise FileNotFoundError(
                f'{self.ann_file_path}: image list not found; data_root must '
                'be the folder of train.txt, val.txt and classes.txt, which '
                f'python {CONVERTER} <image folder> writes')
        return read_file_list(self.ann_file_path, self.num_classes)
