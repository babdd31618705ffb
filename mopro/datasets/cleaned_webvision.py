"""The cleaned WebVision training set written by tools/noise_cleaning.py."""
import json
import os.path as osp

from mmpretrain.registry import DATASETS

from ..utils.errors import DataError
from .file_list import ImageList
from .image_list_dataset import ImageListDataset, indexed_metainfo


def read_pseudo_labels(path: str, num_classes: int) -> ImageList:
    """Read a cleaned list: ``{relative_path: label}`` (this project) or
    ``{'images': [...], 'labels': [...]}`` (the released code's
    ``pseudo_label.json``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, an unknown layout, or a label outside
            ``[0, num_classes)``, naming the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: pseudo-label file not found')
    try:
        with open(path, encoding='utf-8-sig') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DataError(f'{path}: not a JSON file ({err})') from None
    except UnicodeDecodeError as err:
        raise DataError(f'{path}: not UTF-8 text (byte '
                        f'0x{err.object[err.start]:02x} at offset '
                        f'{err.start}); save the file as UTF-8') from None
    if isinstance(data, dict) and set(data) == {'images', 'labels'}:
        paths, labels = data['images'], data['labels']
        if len(paths) != len(labels):
            raise DataError(f'{path}: {len(paths)} images but '
                            f'{len(labels)} labels')
    elif isinstance(data, dict):
        paths, labels = list(data), list(data.values())
    else:
        raise DataError(f'{path}: expected a JSON object '
                        '{"relative/path": label}')
    for img, label in zip(paths, labels):
        if not isinstance(label, int) or not 0 <= label < num_classes:
            raise DataError(f'{path}: label {label!r} of {img!r} is not a '
                            f'class index in [0, {num_classes})')
    return ImageList(paths, labels)


@DATASETS.register_module()
class CleanedWebVision(ImageListDataset):
    """WebVision training images with the labels of noise cleaning.

    Args:
        data_root: WebVision root (the listed paths are relative to it).
        pseudo_label_file: JSON written by ``tools/noise_cleaning.py``.
        num_classes: number of classes.
    """

    def __init__(self, data_root: str, pseudo_label_file: str,
                 num_classes: int = 1000, **kwargs) -> None:
        self.pseudo_label_file = pseudo_label_file
        self.num_classes = num_classes
        kwargs.setdefault('metainfo', indexed_metainfo(num_classes))
        super().__init__(data_root=data_root, **kwargs)

    def origin(self) -> str:
        return self.pseudo_label_file

    def load_image_list(self) -> ImageList:
        return read_pseudo_labels(self.pseudo_label_file, self.num_classes)
