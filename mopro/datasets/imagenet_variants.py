"""ImageNet-R and ImageNet-A, the robustness benchmarks of paper Section 5.4.

Both hold 200 of ImageNet's 1000 classes, one folder per WordNet id
(``root/<wnid>/<image>``). Sorted wnids give ImageNet's class order, so the
i-th sorted folder is the i-th of the class indices below, and a 1000-way
model is evaluated on the 200 classes by restricting its logits to them
(done by :class:`mopro.evaluation.CalibratedAccuracy`).

The index lists are the ImageNet-1k indices of the classes of the public
releases (hendrycks/imagenet-r, hendrycks/natural-adv-examples).
"""
import os
import os.path as osp
from typing import Optional, Tuple

from mmpretrain.registry import DATASETS

from ..utils.cli import ConfigError, DataError
from .file_list import ImageList
from .image_list_dataset import ImageListDataset

IMAGENET_R_INDICES: Tuple[
    int, ...] = (1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71,
                 76, 79, 84, 90, 94, 96, 97, 99, 100, 105, 107, 113, 122, 125,
                 130, 132, 144, 145, 147, 148, 150, 151, 155, 160, 161, 162,
                 163, 171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231,
                 232, 234, 235, 242, 245, 247, 250, 251, 254, 259, 260, 263,
                 265, 267, 269, 276, 277, 281, 288, 289, 291, 292, 293, 296,
                 299, 301, 308, 309, 310, 311, 314, 315, 319, 323, 327, 330,
                 334, 335, 337, 338, 340, 341, 344, 347, 353, 355, 361, 362,
                 365, 366, 367, 368, 372, 388, 390, 393, 397, 401, 407, 413,
                 414, 425, 428, 430, 435, 437, 441, 447, 448, 457, 462, 463,
                 469, 470, 471, 472, 476, 483, 487, 515, 546, 555, 558, 570,
                 579, 583, 587, 593, 594, 596, 609, 613, 617, 621, 629, 637,
                 657, 658, 701, 717, 724, 763, 768, 774, 776, 779, 780, 787,
                 805, 812, 815, 820, 824, 833, 847, 852, 866, 875, 883, 889,
                 895, 907, 928, 931, 932, 933, 934, 936, 937, 943, 945, 947,
                 948, 949, 951, 953, 954, 957, 963, 965, 967, 980, 981, 983,
                 988)

IMAGENET_A_INDICES: Tuple[
    int, ...] = (6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70,
                 71, 76, 79, 89, 90, 94, 96, 97, 99, 105, 107, 108, 110, 113,
                 124, 125, 130, 132, 143, 144, 150, 151, 207, 234, 235, 254,
                 277, 283, 287, 291, 295, 298, 301, 306, 307, 308, 309, 310,
                 311, 313, 314, 315, 317, 319, 323, 324, 326, 327, 330, 334,
                 335, 336, 347, 361, 363, 372, 378, 386, 397, 400, 401, 402,
                 404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438, 445,
                 456, 457, 461, 462, 470, 472, 483, 486, 488, 492, 496, 514,
                 516, 528, 530, 539, 542, 543, 549, 552, 557, 561, 562, 569,
                 572, 573, 575, 579, 589, 606, 607, 609, 614, 626, 627, 640,
                 641, 642, 643, 658, 668, 677, 682, 684, 687, 701, 704, 719,
                 736, 746, 749, 752, 758, 763, 765, 768, 773, 774, 776, 779,
                 780, 786, 792, 797, 802, 803, 804, 813, 815, 820, 823, 831,
                 833, 835, 839, 845, 847, 850, 859, 862, 870, 879, 880, 888,
                 890, 897, 900, 907, 913, 924, 932, 933, 934, 937, 943, 945,
                 947, 951, 954, 956, 957, 959, 971, 972, 980, 981, 984, 986,
                 987, 988)

CLASS_SUBSETS = {
    'imagenet-r': IMAGENET_R_INDICES,
    'imagenet-a': IMAGENET_A_INDICES,
}

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


@DATASETS.register_module()
class ImageNet200(ImageListDataset):
    """A 200-class ImageNet variant in the folder layout ``root/<wnid>/``.

    Labels are 0..199 in sorted wnid order, i.e. the position of the class
    in ``CLASS_SUBSETS[variant]``. The folder must hold exactly the 200
    class folders of the release (empty folders count).

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
        folders = sorted(
            d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
        expected = len(CLASS_SUBSETS[self.variant])
        if len(folders) != expected:
            raise DataError(f'{root}: {self.variant} has {expected} class '
                            f'folders, found {len(folders)}')
        paths, labels = [], []
        for label, folder in enumerate(folders):
            for name in sorted(os.listdir(osp.join(root, folder))):
                if name.lower().endswith(IMG_EXTENSIONS):
                    paths.append(osp.join(folder, name))
                    labels.append(label)
        return ImageList(paths, labels)
