"""WebVision (Li et al. 2017), the noisy web training data of MoPro."""
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS

from ..utils.errors import ConfigError
from ..utils.fileio import atomic_path
from ..utils.validate import check_int
from .file_list import ImageList, read_file_list
from .hidden_names import HiddenNames
from .image_list_dataset import ImageListDataset, indexed_metainfo

TRAIN_SOURCES = ('google', 'flickr')


@DATASETS.register_module()
class WebVision(ImageListDataset):
    """WebVision V1.0 / V2.0, official layout::

        data_root/
            info/train_filelist_google.txt   # "relative/path label"
            info/train_filelist_flickr.txt
            info/val_filelist.txt            # paths under val_images_256/
            val_images_256/
            google/ flickr/ ...              # training images

    Args:
        data_root: WebVision root.
        split: ``'train'`` or ``'val'``.
        num_classes: the classes trained (1000 for V1.0, 5000 for V2.0):
            a list label outside ``[0, num_classes)`` is an error naming
            file and line, unless ``list_classes`` allows it.
        list_classes: the class count of the lists when they hold more
            than ``num_classes``: the V2.0 download's lists hold 5000
            classes, of which V1.0 (the released code's setting) keeps the
            first 1000; labels in ``[num_classes, list_classes)`` are then
            dropped, with a log line counting them. The V1.0 configs set
            5000; None (default): the lists hold ``num_classes`` classes.
        sources: training lists to read, of ``'google'``, ``'flickr'``.
        subset_size: train on a seeded random subset of this many images
            (WebVision V0.5: 1.28M images of V1.0). The subset's list is
            written to ``subset_file`` once and reused, so runs compare.
        subset_file: where the subset list lives (default
            ``info/train_subset_{subset_size}_seed{seed}.txt``).
        subset_seed: seed of the subset draw.
    """

    def __init__(self, data_root: str, split: str = 'train',
                 num_classes: int = 1000, list_classes: Optional[int] = None,
                 sources: Sequence[str] = TRAIN_SOURCES,
                 subset_size: Optional[int] = None,
                 subset_file: Optional[str] = None, subset_seed: int = 0,
                 **kwargs) -> None:
        if split not in ('train', 'val'):
            raise ConfigError(f"WebVision: split must be 'train' or 'val', "
                              f'got {split!r}')
        unknown = set(sources) - set(TRAIN_SOURCES)
        if unknown:
            raise ConfigError(f'WebVision: unknown sources {sorted(unknown)}; '
                              f'choose from {TRAIN_SOURCES}')
        check_int(num_classes, 'dataset num_classes')
        if list_classes is not None:
            check_int(list_classes, 'dataset list_classes', num_classes)
        if subset_size is not None:
            check_int(subset_size, 'dataset subset_size')
        self.split = split
        self.num_classes = num_classes
        self.list_classes = list_classes
        self.sources = tuple(sources)
        self.subset_size = subset_size
        self.subset_seed = subset_seed
        self.subset_file = subset_file or osp.join(
            data_root, 'info',
            f'train_subset_{subset_size}_seed{subset_seed}.txt')
        kwargs.setdefault('metainfo', indexed_metainfo(num_classes))
        super().__init__(data_root=data_root, **kwargs)

    def image_root(self) -> str:
        if self.split == 'val':
            return osp.join(self.data_root, 'val_images_256')
        return self.data_root

    def describe(self) -> str:
        return f'WebVision {self.split} at {self.data_root}'

    def origin(self) -> str:
        if self.split == 'val':
            return 'val_filelist.txt'
        sources = ', '.join(self.sources)
        if self.subset_size is None:
            return sources
        return f'{sources} (subset {osp.basename(self.subset_file)})'

    def _read(self, name: str) -> ImageList:
        path = osp.join(self.data_root, 'info', name)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{path}: WebVision list not found; data_root '
                f'({self.data_root}) must be the WebVision download: '
                'info/ with the official train_filelist_google.txt, '
                'train_filelist_flickr.txt and val_filelist.txt beside the '
                'images. For a folder of your own images use '
                'configs/mopro_r50_custom.py (configs/README.md)')
        return read_file_list(path, self.num_classes, self.list_classes)

    def load_image_list(self) -> ImageList:
        if self.split == 'val':
            return self._read('val_filelist.txt')
        if self.subset_size is not None and osp.isfile(self.subset_file):
            return read_file_list(self.subset_file, self.num_classes)
        images = ImageList.concat(
            [self._read(f'train_filelist_{s}.txt') for s in self.sources])
        if self.subset_size is None:
            return images
        return self._draw_subset(images)

    def _draw_subset(self, images: ImageList) -> ImageList:
        if self.subset_size > len(images):
            raise ConfigError(
                f'WebVision: subset_size={self.subset_size} exceeds the '
                f'{len(images)} training images')
        rng = np.random.default_rng(self.subset_seed)
        chosen = np.sort(
            rng.choice(len(images), self.subset_size, replace=False))
        subset = images.subset(chosen)
        # every rank draws the same subset; the rename makes the write atomic
        with atomic_path(self.subset_file) as tmp, open(tmp, 'w') as f:
            for i in range(len(subset)):
                f.write(f'{subset.path(i)} {subset.labels[i]}\n')
        return subset


@DATASETS.register_module()
class ImageNetVal(ImageListDataset):
    """ImageNet validation images, the second evaluation set of WebVision
    models (WebVision V1 shares ImageNet's 1000 classes and their order).

    Either ``ann_file`` (``path label`` lines, paths relative to
    ``data_prefix``) or the folder layout ``data_prefix/<class>/<image>``,
    where ``<class>`` is the class index (the released code's layout) or the
    WordNet id (sorted wnids give the class index, as in ImageNet); hidden
    files and folders are left out, with a log line counting them.

    Args:
        data_root: root folder.
        data_prefix: image folder below ``data_root`` (default ``val``).
        ann_file: optional list file below ``data_root``.
        num_classes: the classes evaluated: ``ann_file`` labels must lie in
            ``[0, num_classes)``; class folders beyond are left out, with a
            log line counting them.
    """

    IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')

    def __init__(self, data_root: str, data_prefix: str = 'val',
                 ann_file: Optional[str] = None, num_classes: int = 1000,
                 **kwargs) -> None:
        self.data_prefix_dir = data_prefix
        self.ann_file_name = ann_file
        self.num_classes = num_classes
        kwargs.setdefault('metainfo', indexed_metainfo(num_classes))
        super().__init__(data_root=data_root, **kwargs)

    def image_root(self) -> str:
        return osp.join(self.data_root, self.data_prefix_dir)

    def origin(self) -> str:
        return self.ann_file_name or f'{self.data_prefix_dir}/'

    def load_image_list(self) -> ImageList:
        if self.ann_file_name:
            return read_file_list(
                osp.join(self.data_root, self.ann_file_name), self.num_classes)
        root = self.image_root()
        if not osp.isdir(root):
            raise FileNotFoundError(f'{root}: ImageNet validation folder not '
                                    'found')
        hidden = HiddenNames()
        folders = [
            d for d in hidden.listdir(root) if osp.isdir(osp.join(root, d))
        ]
        if folders and all(d.isdigit() for d in folders):
            index = {d: int(d) for d in folders}
        else:
            index = {d: i for i, d in enumerate(folders)}
        skipped = [d for d in folders if index[d] >= self.num_classes]
        if skipped:
            print_log(
                f'{root}: left out {len(skipped)} class folders of '
                f'classes >= num_classes={self.num_classes} (e.g. '
                f'{skipped[0]})', logger='current')
        paths, labels = [], []
        for folder in folders:
            if index[folder] >= self.num_classes:
                continue
            for name in hidden.listdir(osp.join(root, folder)):
                if name.lower().endswith(self.IMG_EXTENSIONS):
                    paths.append(osp.join(folder, name))
                    labels.append(index[folder])
        hidden.log(root)
        return ImageList(paths, labels)
