"""A folder of images as macOS and Jupyter leave it: the hidden files that
come along when it is copied to a cluster."""
import os
import os.path as osp
import shutil
from typing import List

# an AppleDouble file: its magic number and version, then a resource fork
# header; named ``._x.jpg``, it is no image
APPLE_DOUBLE = (b'\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        '
                b'\x00\x02' + b'\x00' * 60)
# the start of a Finder ``.DS_Store``
DS_STORE = b'\x00\x00\x00\x01Bud1' + b'\x00' * 100


def _write(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def add_macos_leftovers(root: str) -> List[str]:
    """Beside every image below ``root``'s class folders an AppleDouble
    ``._<name>``, a ``.DS_Store`` in ``root`` and in every class folder, an
    AppleDouble ``._<class>`` in ``root`` for every class folder, and in
    the first class folder a ``.ipynb_checkpoints/`` holding a copy of one
    of its images. Returns the hidden entries made, as paths relative to
    ``root`` (a hidden folder once, not what it holds)."""
    made = []
    classes = sorted(
        d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
    for name in classes:
        folder = osp.join(root, name)
        for top, _, files in os.walk(folder):
            for file in files:
                _write(osp.join(top, '._' + file), APPLE_DOUBLE)
                made.append(osp.relpath(osp.join(top, '._' + file), root))
        _write(osp.join(folder, '.DS_Store'), DS_STORE)
        _write(osp.join(root, '._' + name), APPLE_DOUBLE)
        made += [osp.join(name, '.DS_Store'), '._' + name]
    _write(osp.join(root, '.DS_Store'), DS_STORE)
    made.append('.DS_Store')
    first = osp.join(root, classes[0])
    image = sorted(
        f for f in os.listdir(first)
        if f.lower().endswith(('.jpg', '.jpeg')) and not f.startswith('.'))[0]
    checkpoints = osp.join(first, '.ipynb_checkpoints')
    os.makedirs(checkpoints)
    stem, ext = osp.splitext(image)
    shutil.copy(
        osp.join(first, image), osp.join(checkpoints,
                                         f'{stem}-checkpoint{ext}'))
    made.append(osp.join(classes[0], '.ipynb_checkpoints'))
    return sorted(made)
