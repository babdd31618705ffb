"""ImageNet-R and ImageNet-A, the robustness benchmarks of paper Section 5.4.

Both hold 200 of ImageNet's 1000 classes, one folder per WordNet id
(``root/<wnid>/<image>``). Sorted wnids give ImageNet's class order, so the
i-th sorted folder is the i-th of the class indices below, and a 1000-way
model is evaluated on the 200 classes by restricting its logits to them
(done by :class:`mopro.evaluation.CalibratedAccuracy`).

The index lists (``imagenet_variants.json``, package data) are the
ImageNet-1k indices of the classes of the public releases
(hendrycks/imagenet-r, hendrycks/natural-adv-examples).
"""
import json
import os.path as osp
from typing import Dict, Optional, Tuple

from mmpretrain.registry import DATASETS

from ..utils.errors import ConfigError, DataError
from .file_list import ImageList
from .hidden_names import HiddenNames
from .image_list_dataset import ImageListDataset


def _class_subsets() -> Dict[str, Tuple[int, ...]]:
    """The ImageNet-1k class indices of each variant, read from
    ``imagenet_variants.json`` beside this module (ascending; 200 each)."""
    with open(osp.splitext(__file__)[0] + '.json') as f:
        return {name: tuple(indices) for name, indices in json.load(f).items()}


CLASS_SUBSETS = _class_subsets()
IMAGENET_R_INDICES = CLASS_SUBSETS['imagenet-r']
IMAGENET_A_INDICES = CLASS_SUBSETS['imagenet-a']

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


@DATASETS.register_module()
class ImageNet200(ImageListDataset):
    """A 200-class ImageNet variant in the folder layout ``root/<wnid>/``.

    Labels are 0..199 in sorted wnid order, i.e. the position of the class
    in ``CLASS_SUBSETS[variant]``. The folder must hold exactly the 200
    class folders of the release (empty folders count); hidden files and
    folders (``.DS_Store``, ``._x.jpg``) are left out, with a log line
    counting them.

    Args:
        data_root: the dataset folder (``imagenet-r/`` or ``imagenet-a/``).
        variant: ``'imagenet-r'`` or ``'imagenet-a'``.
    """

    def __init__(self, data_root: str, variant: str = 'imagenet-r',
                 metainfo: Optional[dict] = None, **kwargs) -> None:
        if variant not in CLASS_SUBSETS:
            raise ConfigError(f'ImageNet200: variant must be one of '
                              f'{sorted(CLASS_SUBSETS)}, got {variant!r}')
        self.variant = variant
        indices = CLASS_SUBSETS[variant]
        metainfo = metainfo or dict(classes=[str(i) for i in indices])
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    def describe(self) -> str:
        return f'{self.variant} at {self.data_root}'

    def load_image_list(self) -> ImageList:
        root = self.data_root
        if not osp.isdir(root):
            raise FileNotFoundError(f'{root}: {self.variant} folder not found')
        hidden = HiddenNames()
        folders = [
            d for d in hidden.listdir(root) if osp.isdir(osp.join(root, d))
        ]
        expected = len(CLASS_SUBSETS[self.variant])
        if len(folders) != expected:
            raise DataError(f'{root}: {self.variant} has {expected} class '
                            f'folders, found {len(folders)}')
        paths, labels = [], []
        for label, folder in enumerate(folders):
            for name in hidden.listdir(osp.join(root, folder)):
                if name.lower().endswith(IMG_EXTENSIONS):
                    paths.append(osp.join(folder, name))
                    labels.append(label)
        hidden.log(root)
        return ImageList(paths, labels)
