"""WebVision (Li et al. 2017), the noisy web training data of MoPro."""
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmpretrain.registry import DATASETS

from ..utils import atomic_path
from .file_list import ImageList, read_file_list
from .image_list_dataset import ImageListDataset

# WebVision V2 has 5000 classes: labels beyond are corrupt list lines
WEBVISION_MAX_CLASSES = 5000
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
        num_classes: keep classes ``< num_classes`` (1000 for V1.0 and the
            released code's "mini" settings, 5000 for V2.0).
        sources: training lists to read, of ``'google'``, ``'flickr'``.
        subset_size: train on a seeded random subset of this many images
            (WebVision V0.5: 1.28M images of V1.0). The subset's list is
            written to ``subset_file`` once and reused, so runs compare.
        subset_file: where the subset list lives (default
            ``info/train_subset_{subset_size}_seed{seed}.txt``).
        subset_seed: seed of the subset draw.
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 num_classes: int = 1000,
                 sources: Sequence[str] = TRAIN_SOURCES,
                 subset_size: Optional[int] = None,
                 subset_file: Optional[str] = None,
                 subset_seed: int = 0,
                 **kwargs) -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"WebVision: split must be 'train' or 'val', "
                             f'got {split!r}')
        unknown = set(sources) - set(TRAIN_SOURCES)
        if unknown:
            raise ValueError(f'WebVision: unknown sources {sorted(unknown)}; '
                             f'choose from {TRAIN_SOURCES}')
        self.split = split
        self.num_classes = num_classes
        self.sources = tuple(sources)
        self.subset_size = subset_size
        self.subset_seed = subset_seed
        self.subset_file = subset_file or osp.join(
            data_root, 'info',
            f'train_subset_{subset_size}_seed{subset_seed}.txt')
        kwargs.setdefault('metainfo',
                          dict(classes=[str(c) for c in range(num_classes)]))
        super().__init__(data_root=data_root, **kwargs)

    def image_root(self) -> str:
        if self.split == 'val':
            return osp.join(self.data_root, 'val_images_256')
        return self.data_root

    def _read(self, name: str) -> ImageList:
        return read_file_list(
            osp.join(self.data_root, 'info', name), self.num_classes,
            label_limit=WEBVISION_MAX_CLASSES)

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
            raise ValueError(
                f'WebVision: subset_size={self.subset_size} exceeds the '
                f'{len(images)} training images')
        rng = np.random.default_rng(self.subset_seed)
        chosen = np.sort(rng.choice(len(images), self.subset_size,
                                    replace=False))
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
    WordNet id (sorted wnids give the class index, as in ImageNet).

    Args:
        data_root: root folder.
        data_prefix: image folder below ``data_root`` (default ``val``).
        ann_file: optional list file below ``data_root``.
        num_classes: keep classes ``< num_classes``.
    """

    IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')

    def __init__(self,
                 data_root: str,
                 data_prefix: str = 'val',
                 ann_file: Optional[str] = None,
                 num_classes: int = 1000,
                 **kwargs) -> None:
        self.data_prefix_dir = data_prefix
        self.ann_file_name = ann_file
        self.num_classes = num_classes
        kwargs.setdefault('metainfo',
                          dict(classes=[str(c) for c in range(num_classes)]))
        super().__init__(data_root=data_root, **kwargs)

    def image_root(self) -> str:
        return osp.join(self.data_root, self.data_prefix_dir)

    def load_image_list(self) -> ImageList:
        if self.ann_file_name:
            return read_file_list(
                osp.join(self.data_root, self.ann_file_name),
                self.num_classes)
        root = self.image_root()
        if not osp.isdir(root):
            raise FileNotFoundError(f'{root}: ImageNet validation folder not '
                                    'found')
        folders = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d)))
        if folders and all(d.isdigit() for d in folders):
            index = {d: int(d) for d in folders}
        else:
            index = {d: i for i, d in enumerate(folders)}
        paths, labels = [], []
        for folder in folders:
            if index[folder] >= self.num_classes:
                continue
            for name in sorted(os.listdir(osp.join(root, folder))):
                if name.lower().endswith(self.IMG_EXTENSIONS):
                    paths.append(osp.join(folder, name))
                    labels.append(index[folder])
        return ImageList(paths, labels)
