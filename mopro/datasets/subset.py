"""Low-resource ImageNet: 1% or 10% of the labelled training images.

Paper Section 5.2 follows SimCLR (Chen et al. 2020a), whose standard subset
files ``1percent.txt`` / ``10percent.txt`` list one training image file name
per line (``n01440764_10026.JPEG``; the wnid prefix names the class folder).
Without a subset file, a seeded random fraction of all training images is
drawn (as the released ``finetune_imagenet.py`` does, unseeded there).
"""
import os.path as osp
from typing import List, Optional

import numpy as np
from mmpretrain.registry import DATASETS

from ..utils.errors import ConfigError, DataError
from .file_list import ImageList, read_text_lines
from .hidden_names import HiddenNames
from .image_list_dataset import ImageListDataset
from .imagenet_variants import IMG_EXTENSIONS


def read_subset_file(path: str) -> List[str]:
    """Image file names of a SimCLR subset file, in file order."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: subset file not found')
    names = [line.strip() for _, line in read_text_lines(path) if line.strip()]
    if not names:
        raise DataError(f'{path}: subset file is empty')
    return names


@DATASETS.register_module()
class ImageNetSubset(ImageListDataset):
    """ImageNet training images ``data_root/data_prefix/<wnid>/<image>``,
    labelled by sorted wnid, restricted to a subset. Hidden files and
    folders are left out, with a log line counting them.

    Args:
        data_root: ImageNet root.
        data_prefix: training folder below it (``train``).
        subset_file: SimCLR subset file (takes precedence).
        fraction: else, keep this fraction of the images, drawn with
            ``seed``.
        seed: seed of the random fraction.
    """

    def __init__(self, data_root: str, data_prefix: str = 'train',
                 subset_file: Optional[str] = None,
                 fraction: Optional[float] = None, seed: int = 0,
                 **kwargs) -> None:
        if subset_file is None and not (fraction and 0 < fraction <= 1):
            raise ConfigError('ImageNetSubset: give subset_file or a fraction '
                              f'in (0, 1], got fraction={fraction!r}')
        self.data_prefix_dir = data_prefix
        self.subset_file = subset_file
        self.fraction = fraction
        self.seed = seed
        super().__init__(data_root=data_root, **kwargs)

    def image_root(self) -> str:
        return osp.join(self.data_root, self.data_prefix_dir)

    def origin(self) -> str:
        if self.subset_file:
            return self.subset_file
        return f'a random {self.fraction:g} of {self.data_prefix_dir}/'

    def _classes(self, hidden: HiddenNames) -> List[str]:
        root = self.image_root()
        if not osp.isdir(root):
            raise FileNotFoundError(f'{root}: ImageNet training folder not '
                                    'found')
        return [
            d for d in hidden.listdir(root) if osp.isdir(osp.join(root, d))
        ]

    def load_image_list(self) -> ImageList:
        hidden = HiddenNames()
        classes = self._classes(hidden)
        index = {wnid: i for i, wnid in enumerate(classes)}
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(classes)
        if self.subset_file:
            hidden.log(self.image_root())
            return self._from_subset_file(index)
        paths, labels = [], []
        for wnid in classes:
            for name in hidden.listdir(osp.join(self.image_root(), wnid)):
                if name.lower().endswith(IMG_EXTENSIONS):
                    paths.append(osp.join(wnid, name))
                    labels.append(index[wnid])
        hidden.log(self.image_root())
        keep = max(1, int(self.fraction * len(paths)))
        rng = np.random.default_rng(self.seed)
        chosen = np.sort(rng.choice(len(paths), keep, replace=False))
        return ImageList([paths[i] for i in chosen],
                         [labels[i] for i in chosen])

    def _from_subset_file(self, index: dict) -> ImageList:
        paths, labels = [], []
        for lineno, name in enumerate(read_subset_file(self.subset_file), 1):
            wnid = name.split('_', 1)[0]
            path = osp.join(wnid, name)
            if wnid not in index or not osp.isfile(
                    osp.join(self.image_root(), path)):
                raise FileNotFoundError(
                    f'{self.subset_file}:{lineno}: {name} not found under '
                    f'{self.image_root()}')
            paths.append(path)
            labels.append(index[wnid])
        return ImageList(paths, labels)
