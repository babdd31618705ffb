"""A tiny COCO-format dataset for smoke runs of the Detectron2 transfer.

``configs/detectron2/coco_R_50_FPN_smoke_cpu.yaml`` trains and evaluates on
:data:`SMOKE_DATASET`: small generated images, each with a red box
(category ``box``) and a green triangle (category ``triangle``) as polygon
instance annotations. ``tools/train_d2.py`` writes it under the run's
``OUTPUT_DIR`` and registers it like ``--register`` does, when a config
names it in ``DATASETS.TRAIN`` or ``DATASETS.TEST``. It exercises the whole
pipeline (loading, augmentation, box and mask losses, COCO evaluation), not
the accuracy of the protocol.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

SMOKE_DATASET = 'mopro_smoke_shapes'
CATEGORIES = ('box', 'triangle')


def _shapes_image(rng: np.random.Generator,
                  size: int) -> Tuple[Image.Image, list]:
    """A dark noise image with a box and a triangle; their polygons."""
    img = Image.fromarray(rng.integers(0, 60, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    x, y = (int(v) for v in rng.integers(5, size * 5 // 16, 2))
    w, h = size * 25 // 64, size * 5 // 16
    box = [x, y, x + w, y, x + w, y + h, x, y + h]
    x, y = (int(v) for v in rng.integers(size // 2 + 1, size * 2 // 3, 2))
    triangle = [
        x, y, x + size * 15 // 64, y + 5, x + size * 15 // 128,
        y + size * 5 // 16
    ]
    draw.polygon(box, fill=(220, 40, 40))
    draw.polygon(triangle, fill=(40, 220, 40))
    return img, [box, triangle]


def _write(root: str, num_images: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'))
    images, annotations = [], []
    for i in range(num_images):
        img, polygons = _shapes_image(rng, size)
        img.save(osp.join(root, 'images', f'{i}.png'))
        images.append(
            dict(id=i + 1, file_name=f'{i}.png', width=size, height=size))
        for category, polygon in enumerate(polygons, start=1):
            xs, ys = polygon[0::2], polygon[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            annotations.append(
                dict(
                    id=len(annotations) + 1, image_id=i + 1,
                    category_id=category, segmentation=[polygon], bbox=bbox,
                    area=bbox[2] * bbox[3] / category, iscrowd=0))
    categories = [
        dict(id=i, name=name) for i, name in enumerate(CATEGORIES, start=1)
    ]
    with open(osp.join(root, 'annotations.json'), 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)


def write_shapes_coco(root: str, num_images: int = 8, size: int = 128,
                      seed: int = 0) -> Tuple[str, str]:
    """Write the shapes dataset to ``root`` (seeded; written to a temporary
    folder and renamed into place; a complete one is reused) and return
    ``(annotations.json, image folder)``."""
    paths = osp.join(root, 'annotations.json'), osp.join(root, 'images')
    if osp.isfile(paths[0]):
        return paths
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{osp.basename(root)}.')
    try:
        _write(tmp, num_images, size, seed)
        os.chmod(tmp, 0o755)
        os.rename(tmp, root)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        # another process (a rank of the same run) renamed its copy first
        if not (isinstance(err, OSError) and osp.isfile(paths[0])):
            raise
    return paths
