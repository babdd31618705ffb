"""Tiny image files and a fake WebVision tree in the official layout."""
import os
import os.path as osp

import numpy as np
from PIL import Image


def write_image(path: str, seed: int, size: int = 40) -> None:
    """A small random-colour JPEG with a class-dependent pattern."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def make_webvision(root: str, num_classes: int = 4, per_class: int = 8,
                   val_per_class: int = 2, size: int = 40) -> str:
    """A fake WebVision tree (google + flickr lists, val_images_256)."""
    os.makedirs(osp.join(root, 'info'), exist_ok=True)
    seed = 0
    for source in ('google', 'flickr'):
        lines = []
        for c in range(num_classes):
            for i in range(per_class // 2):
                rel = f'{source}/q{c:04d}/{i:03d}.jpg'
                write_image(osp.join(root, rel), seed, size)
                seed += 1
                lines.append(f'{rel} {c}')
        with open(osp.join(root, 'info', f'train_filelist_{source}.txt'),
                  'w') as f:
            f.write('\n'.join(lines) + '\n')
    lines = []
    for c in range(num_classes):
        for i in range(val_per_class):
            name = f'val{c:02d}{i:03d}.jpg'
            write_image(osp.join(root, 'val_images_256', name), seed, size)
            seed += 1
            lines.append(f'{name} {c}')
    with open(osp.join(root, 'info', 'val_filelist.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


def make_imagenet(root: str, wnids: list, per_class: int = 4,
                  val_per_class: int = 2) -> list:
    """A fake ImageNet tree (``train/<wnid>/<wnid>_<i>.JPEG``,
    ``val/<wnid>/v<i>.JPEG``); returns the training file names."""
    names = []
    seed = 100
    for wnid in wnids:
        for i in range(per_class):
            name = f'{wnid}_{i}.JPEG'
            write_image(osp.join(root, 'train', wnid, name), seed)
            names.append(name)
            seed += 1
        for i in range(val_per_class):
            write_image(osp.join(root, 'val', wnid, f'v{i}.JPEG'), seed)
            seed += 1
    return names
