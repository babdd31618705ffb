"""The visual report of noise cleaning (paper Section 4.3, Figures 3-4).

Noise cleaning (:mod:`mopro.evaluation.noise_cleaning`) keeps, relabels or
drops (out-of-distribution, OOD) every training image. The report shows
random OOD images with their web labels (as the paper's Figure 3), random
relabelled images with ``original -> corrected`` labels (Figure 4), and a
chart of how many images each class lost and gained.
"""
import io
import os.path as osp
from typing import IO, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageOps

from ..datasets.image_list_dataset import ImageListDataset
from ..models.noise_correction import OOD_LABEL
from ._figure import new_figure, save_figure

# the class-change chart shows at most this many classes (those that
# changed most) so that their names stay readable
MAX_CHART_CLASSES = 30
CORRECT, WRONG = 'tab:green', 'tab:red'


def class_name(classes: Sequence[str], label: int) -> str:
    """Name of class ``label``, or the number where ``classes`` has none."""
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def _thumbnail(path: Union[str, IO[bytes]], size: int) -> np.ndarray:
    """A square crop of the image, scaled down to ``size`` pixels (never
    up: the figure scales small images, which keeps the file small)."""
    with Image.open(path) as img:
        side = min(size, img.width, img.height)
        return np.asarray(ImageOps.fit(img.convert('RGB'), (side, side)))


def save_sample_grid(image_paths: Sequence[str], titles: Sequence[str],
                     heading: str, path: str,
                     colors: Optional[Sequence[str]] = None, columns: int = 8,
                     size: int = 96) -> str:
    """Write a grid of images with a title each (and an optional title
    colour each) as the PNG ``path``; return ``path``."""
    cols = max(1, min(columns, len(image_paths)))
    rows = max(1, -(-len(image_paths) // cols))
    fig = new_figure((max(1.45 * cols, 4.0), 1.85 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    colors = colors or ['black'] * len(image_paths)
    for ax, image, title, color in zip(axes.flat, image_paths, titles, colors):
        ax.imshow(_thumbnail(image, size))
        ax.set_title(title, fontsize=8, color=color)
    if not len(image_paths):
        axes[0, 0].text(0.5, 0.5, 'none', ha='center', va='center')
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _chart_classes(per_class: dict, max_classes: int) -> np.ndarray:
    """The classes the chart shows: all, or the ``max_classes`` whose
    images changed most, in class order."""
    moved = (
        np.asarray(per_class['relabelled_away']) +
        np.asarray(per_class['relabelled_into']) +
        np.asarray(per_class['ood']))
    if len(moved) <= max_classes:
        return np.arange(len(moved))
    return np.sort(np.argsort(-moved, kind='stable')[:max_classes])


def class_changes_figure(summary: dict, classes: Sequence[str],
                         max_classes: int = MAX_CHART_CLASSES) -> Figure:
    """The per-class chart of a cleaning (:func:`summarize`'s
    ``per_class``): one group of bars per class (images relabelled away
    from it, declared OOD, relabelled into it), class names on the axis,
    integer counts."""
    per_class = summary['per_class']
    shown = _chart_classes(per_class, max_classes)
    bars = (('relabelled away', 'relabelled_away',
             'tab:orange'), ('declared OOD', 'ood', 'tab:gray'),
            ('relabelled into', 'relabelled_into', 'tab:blue'))
    width = 0.8 / len(bars)
    x = np.arange(len(shown))
    fig = new_figure((max(5.0, 0.6 * len(shown) + 1.5), 3.6))
    ax = fig.subplots()
    for i, (label, key, color) in enumerate(bars):
        ax.bar(x + (i - 1) * width,
               np.asarray(per_class[key])[shown], width, label=label,
               color=color)
    ax.set_xticks(x)
    ax.set_xticklabels([class_name(classes, int(c)) for c in shown],
                       rotation=45 if len(shown) > 10 else 0,
                       ha='right' if len(shown) > 10 else 'center')
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel('images')
    total = len(per_class['before'])
    ax.set_title(
        'noise cleaning per class' +
        (f' ({len(shown)} of {total} classes, those that changed most)'
         if len(shown) < total else ''), pad=22)
    ax.legend(fontsize=8, ncol=len(bars), frameon=False, loc='lower center',
              bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


def save_class_changes(summary: dict, classes: Sequence[str], path: str,
                       max_classes: int = MAX_CHART_CLASSES) -> str:
    """Write :func:`class_changes_figure` as the PNG ``path``; return
    ``path``."""
    return save_figure(
        class_changes_figure(summary, classes, max_classes), path)


def _pick(mask: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    where = np.flatnonzero(mask)
    return np.sort(rng.choice(where, min(num, len(where)),
                              replace=False)) if len(where) else where


def save_report(dataset: ImageListDataset, original: np.ndarray,
                pseudo: np.ndarray, summary: dict, out_dir: str,
                num_show: int = 16, seed: int = 0,
                truth: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Write the visual report (atomic PNGs) and return their paths:

    - ``ood_samples.png``: random OOD images with their web labels (Fig. 3);
    - ``relabelled_samples.png``: random relabelled images,
      ``original -> corrected`` (Fig. 4);
    - ``class_changes.png``: per class, images relabelled away, declared
      OOD, relabelled into (:func:`save_class_changes`).

    Labels are shown by the class names of ``dataset.metainfo['classes']``.
    ``truth``, where known (a dataset with known noise, e.g. the demo's),
    is the true class name of every image: each sample then shows it and
    is coloured green when the cleaning got it right (relabelled to the
    true class; OOD and truly of no class), red otherwise.
    """
    classes = list(dataset.metainfo.get('classes') or ())
    rng = np.random.default_rng(seed)
    ood = _pick(pseudo == OOD_LABEL, num_show, rng)
    moved = _pick((pseudo >= 0) & (pseudo != original), num_show, rng)

    def name(label) -> str:
        return class_name(classes, int(label))

    def image(i) -> Union[str, IO[bytes]]:
        # a shard record's image is its bytes (ShardDataset's img_bytes)
        info = dataset.get_data_info(int(i))
        if 'img_bytes' in info:
            return io.BytesIO(info['img_bytes'])
        return info['img_path']

    def captions(names: List[str], indices: np.ndarray,
                 is_right: Callable[[int], bool]):
        if truth is None:
            return names, None
        return ([f'{n}\n(true: {truth[i]})' for n, i in zip(names, indices)],
                [CORRECT if is_right(i) else WRONG for i in indices])

    paths = {
        k: osp.join(out_dir, f'{k}.png')
        for k in ('ood_samples', 'relabelled_samples', 'class_changes')
    }
    titles, colors = captions([f'web label: {name(original[i])}' for i in ood],
                              ood, lambda i: truth[i] not in classes)
    save_sample_grid([image(i) for i in ood], titles,
                     f'declared out-of-distribution ('
                     f'{summary["total"]["ood"]} images)',
                     paths['ood_samples'], colors)
    titles, colors = captions(
        [f'{name(original[i])} \u2192 {name(pseudo[i])}' for i in moved],
        moved, lambda i: truth[i] == name(pseudo[i]))
    save_sample_grid([image(i) for i in moved], titles,
                     f'relabelled, original \u2192 corrected ('
                     f'{summary["total"]["relabelled"]} images)',
                     paths['relabelled_samples'], colors)
    save_class_changes(summary, classes, paths['class_changes'])
    return paths
