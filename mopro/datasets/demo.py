"""An offline, noisy "web" dataset made from scikit-learn's digits.

MoPro learns from web images whose labels are noisy in two ways (paper
Section 1): in-distribution label noise (an image of class A found under
query B) and out-of-distribution noise (an image of no target class at all).
This module builds a small dataset with both kinds of noise at known rates,
from the 1797 real 8x8 handwritten digits that scikit-learn ships, in the
WebVision layout so that :class:`~mopro.datasets.WebVision` reads it::

    out/
        google/q0003/0123.png          # training image 123, given label 3
        val_images_256/val0456.png     # clean held-out test image 456
        info/train_filelist_google.txt # "google/q0003/0123.png 3"
        info/train_filelist_flickr.txt # empty: everything is "google"
        info/val_filelist.txt          # "val0456.png 5"
        info/ground_truth.json         # meta + per training path: true
                                       # digit, given label, kind

- digits 0..K-1 (K=8) are the classes; ``test_per_class`` images of each
  form the clean test split, the rest are training images;
- exactly ``round(flip_rate * n)`` of the n in-distribution training images
  get a label flipped symmetrically (uniformly to another class): ``flipped``;
- every image of the digits >= K (8 and 9) is a training image with a
  uniformly random in-distribution label: ``ood``;
- the classes are named by their digit (:data:`DIGIT_NAMES`: ``'zero'`` ..
  ``'seven'``; the OOD images are ``'eight'`` and ``'nine'``), for reports
  and pictures (:func:`class_names`, a dataset's ``metainfo``).

The build is seeded and deterministic, written to a temporary folder and
renamed into place (a crash leaves no half-built dataset), and idempotent: a
complete dataset built with the same parameters is reused.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

from ..utils.errors import ConfigError, DataError
from ..utils.outputs import check_output_dir

GROUND_TRUTH = 'info/ground_truth.json'
KINDS = ('clean', 'flipped', 'ood')
FORMAT_VERSION = 1
DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
               'eight', 'nine')


def class_names(num_classes: int = 8) -> List[str]:
    """Names of the demo's classes, the digits ``0 .. num_classes - 1``."""
    return list(DIGIT_NAMES[:num_classes])


def _digits():
    """scikit-learn's bundled digits: (N x 8 x 8 values 0..16, N targets)."""
    from sklearn.datasets import load_digits  # only the builder needs it
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def _save_digit(pixels: np.ndarray, path: str, size: int) -> None:
    """Save an 8x8 digit (0..16, ink high) as a ``size`` px grey PNG,
    upscaled bilinearly."""
    grey = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)
    img = Image.fromarray(grey).resize((size, size), Image.BILINEAR)
    os.makedirs(osp.dirname(path), exist_ok=True)
    img.save(path)


def demo_meta(seed: int, num_classes: int, flip_rate: float,
              test_per_class: int, size: int, limit: Optional[int]) -> dict:
    """The parameters that define a demo dataset (stored in its ground
    truth; a dataset is reused only if they match)."""
    return dict(format_version=FORMAT_VERSION,
                source='sklearn.datasets.load_digits', seed=seed,
                num_classes=num_classes, flip_rate=flip_rate,
                test_per_class=test_per_class, size=size, limit=limit)


def plan_demo_dataset(targets: np.ndarray, seed: int = 0, num_classes: int = 8,
                      flip_rate: float = 0.3, test_per_class: int = 40,
                      limit: Optional[int] = None) -> Dict[str, list]:
    """Decide split, given labels and noise kind of every digit image.

    Args:
        targets: true digit of each source image.
        seed: seed of every random choice.
        num_classes: K; digits ``>= K`` are the OOD images.
        flip_rate: fraction of in-distribution training labels flipped.
        test_per_class: clean test images per class.
        limit: use at most this many images of each digit (small builds).

    Returns:
        ``train``: list of (source index, true digit, given label, kind);
        ``val``: list of (source index, digit).
    """
    if not 0.0 <= flip_rate <= 1.0:
        raise ConfigError(f'flip_rate must be in [0, 1], got {flip_rate}')
    if not 2 <= num_classes <= len(DIGIT_NAMES):
        raise ConfigError(f'num_classes must be in [2, 10], got '
                          f'{num_classes}')
    rng = np.random.default_rng(seed)
    train_idx, val = [], []
    for digit in range(int(targets.max()) + 1):
        idx = rng.permutation(np.flatnonzero(targets == digit))
        if limit is not None:
            idx = idx[:limit]
        if digit < num_classes:
            if len(idx) <= test_per_class:
                raise ConfigError(
                    f'digit {digit}: {len(idx)} images, not more than '
                    f'test_per_class={test_per_class}')
            val += [(int(i), digit) for i in idx[:test_per_class]]
            idx = idx[test_per_class:]
        train_idx += [int(i) for i in idx]
    train_idx = np.array(sorted(train_idx))
    true = targets[train_idx]
    given = true.copy()
    kind = np.where(true < num_classes, 'clean', 'ood').astype(object)
    ood = true >= num_classes
    given[ood] = rng.integers(0, num_classes, int(ood.sum()))
    in_dist = np.flatnonzero(~ood)
    num_flip = int(round(flip_rate * len(in_dist)))
    flip = rng.choice(in_dist, num_flip, replace=False)
    # symmetric flip: uniformly to one of the K - 1 other classes
    given[flip] = (true[flip] +
                   rng.integers(1, num_classes, num_flip)) % num_classes
    kind[flip] = 'flipped'
    train = [(int(i), int(t), int(g), str(k))
             for i, t, g, k in zip(train_idx, true, given, kind)]
    return dict(train=train, val=sorted(val))


def train_path(index: int, label: int) -> str:
    """Relative path of a training image: folder = the "query" (label)."""
    return f'google/q{label:04d}/{index:04d}.png'


def _write_lines(path: str, lines: List[str]) -> None:
    with open(path, 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def _write_dataset(root: str, images: np.ndarray, plan: Dict[str, list],
                   meta: dict, size: int) -> None:
    os.makedirs(osp.join(root, 'info'))
    records, lines = [], []
    for index, true, given, kind in plan['train']:
        rel = train_path(index, given)
        _save_digit(images[index], osp.join(root, rel), size)
        lines.append(f'{rel} {given}')
        records.append(dict(path=rel, true_digit=true, label=given, kind=kind))
    _write_lines(osp.join(root, 'info', 'train_filelist_google.txt'), lines)
    _write_lines(osp.join(root, 'info', 'train_filelist_flickr.txt'), [])
    val_lines = []
    for index, digit in plan['val']:
        name = f'val{index:04d}.png'
        _save_digit(images[index], osp.join(root, 'val_images_256', name),
                    size)
        val_lines.append(f'{name} {digit}')
    _write_lines(osp.join(root, 'info', 'val_filelist.txt'), val_lines)
    counts = {k: sum(r['kind'] == k for r in records) for k in KINDS}
    summary = dict(num_train=len(records), num_val=len(val_lines), **counts)
    with open(osp.join(root, GROUND_TRUTH), 'w') as f:
        json.dump(dict(meta=meta, summary=summary, train=records), f, indent=1)


def load_ground_truth(root: str) -> dict:
    """Read ``info/ground_truth.json`` of a demo dataset."""
    path = osp.join(root, GROUND_TRUTH)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path}: ground truth not found (build the dataset with '
            'tools/dataset_converters/make_demo_dataset.py)')
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f'{path}: not valid JSON ({err})') from None


def _check_complete(root: str, meta: dict) -> dict:
    """Return the summary of a complete dataset at ``root`` built with
    ``meta``; raise DataError naming what differs or is missing."""
    truth = load_ground_truth(root)
    if truth.get('meta') != meta:
        raise DataError(f'{root}: a demo dataset with other parameters '
                        f'exists ({truth.get("meta")}); remove it or choose '
                        'another --out')
    with open(osp.join(root, 'info', 'val_filelist.txt')) as f:
        val = [
            osp.join('val_images_256',
                     line.split()[0]) for line in f if line.strip()
        ]
    for rel in [r['path'] for r in truth['train']] + val:
        if not osp.isfile(osp.join(root, rel)):
            raise DataError(f'{root}: incomplete demo dataset, {rel} is '
                            'missing; remove the folder to rebuild it')
    return truth['summary']


def build_demo_dataset(out: str, seed: int = 0, num_classes: int = 8,
                       flip_rate: float = 0.3, test_per_class: int = 40,
                       size: int = 32, limit: Optional[int] = None) -> dict:
    """Build the noisy digits dataset at ``out`` (see the module docstring)
    unless a complete one with the same parameters is there.

    Returns:
        The summary: ``num_train``, ``num_val`` and the count of each kind,
        plus ``built`` (False when an existing dataset was reused).
    """
    out = osp.abspath(out)
    if not osp.isdir(out):  # a file, or a folder to write
        check_output_dir(out, what='dataset folder')
    meta = demo_meta(seed, num_classes, flip_rate, test_per_class, size, limit)
    if osp.exists(out):
        return dict(_check_complete(out, meta), built=False)
    images, targets = _digits()
    plan = plan_demo_dataset(targets, seed, num_classes, flip_rate,
                             test_per_class, limit)
    os.makedirs(osp.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(
        dir=osp.dirname(out), prefix=f'.{osp.basename(out)}.')
    try:
        _write_dataset(tmp, images, plan, meta, size)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(load_ground_truth(out)['summary'], built=True)
