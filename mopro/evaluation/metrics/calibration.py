"""Accuracy and l2 calibration error (paper Section 5.4, Table 5).

The calibration error is the l2 error of Kumar et al. 2019 ("Verified
uncertainty calibration") with equal-mass (adaptive) binning of the top-1
confidence, as in the ImageNet-R / ImageNet-A evaluation code of Hendrycks
et al., whose numbers the paper reports:

- sort the N top-1 confidences; cut them into consecutive bins of
  ``bin_size`` samples (the last bin takes the remainder; one bin if
  N < ``bin_size``);
- ``CE = sqrt(sum_b (n_b / N) * (acc_b - conf_b)^2)``, with ``acc_b`` the
  accuracy and ``conf_b`` the mean confidence in bin b.

No debiasing (the plug-in estimator). Both numbers are reported in percent.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.visualization import Visualizer
from mmpretrain.registry import METRICS
from PIL import Image

from ...datasets.imagenet_variants import CLASS_SUBSETS
from ...utils.errors import ConfigError
from ...utils.fileio import atomic_path
from ...utils.validate import check_int


def equal_mass_bins(num: int, bin_size: int) -> List[Tuple[int, int]]:
    """``[start, end)`` ranges over ``num`` sorted samples, ``bin_size`` each,
    the last one extended to ``num``."""
    if num == 0:
        return []
    count = max(num // bin_size, 1)
    bins = [(i * bin_size, (i + 1) * bin_size) for i in range(count)]
    bins[-1] = (bins[-1][0], num)
    return bins


def calibration_error(confidence: np.ndarray, correct: np.ndarray,
                      bin_size: int = 100) -> Tuple[float, list]:
    """l2 calibration error (fraction, not percent) and the bins as
    ``(mean confidence, accuracy, count)`` tuples."""
    order = np.argsort(confidence, kind='stable')
    conf = np.asarray(confidence, dtype=np.float64)[order]
    corr = np.asarray(correct, dtype=np.float64)[order]
    total, bins = 0.0, []
    for start, end in equal_mass_bins(len(conf), bin_size):
        mean_conf = conf[start:end].mean()
        acc = corr[start:end].mean()
        total += (end - start) / len(conf) * (acc - mean_conf)**2
        bins.append((float(mean_conf), float(acc), end - start))
    return float(np.sqrt(total)), bins


def restrict_scores(scores: torch.Tensor,
                    class_indices: Optional[Sequence[int]]) -> torch.Tensor:
    """Scores over a class subset: softmax scores restricted and
    renormalised, which equals the softmax of the restricted logits."""
    if class_indices is None:
        return scores
    sub = scores[..., list(class_indices)]
    return sub / sub.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def reliability_diagram(bins: list, title: str) -> np.ndarray:
    """RGB image (H x W x 3, uint8) of accuracy vs confidence per bin."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    conf = [b[0] for b in bins]
    acc = [b[1] for b in bins]
    ax.plot([0, 1], [0, 1], '--', color='grey', label='perfect calibration')
    ax.plot(conf, acc, 'o-', color='tab:blue', markersize=3,
            label='equal-mass bins')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel('confidence (top-1)')
    ax.set_ylabel('accuracy')
    ax.set_title(title)
    ax.legend(loc='upper left')
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


@METRICS.register_module()
class CalibratedAccuracy(BaseMetric):
    """Top-1 accuracy and l2 calibration error, optionally on a class
    subset of the model's output (ImageNet-R/A: 200 of 1000 classes).

    The reliability diagram goes to the Runner's visualizer
    (``<work_dir>/<timestamp>/vis_data/vis_image/reliability_diagram_*.png``
    and TensorBoard) and, if ``out_dir`` is set, to
    ``out_dir/reliability_diagram.png``.

    Args:
        class_subset: ``'imagenet-r'``, ``'imagenet-a'``, a list of class
            indices, or None (all classes). Labels index the subset.
        bin_size: samples per equal-mass bin (100, as Hendrycks et al.).
        out_dir: optional folder for the reliability diagram PNG.
    """
    default_prefix = 'robustness'

    def __init__(self, class_subset: Union[str, Sequence[int],
                                           None] = None, bin_size: int = 100,
                 out_dir: Optional[str] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(class_subset, str):
            if class_subset not in CLASS_SUBSETS:
                raise ConfigError(f'CalibratedAccuracy: class_subset must be '
                                  f'one of {sorted(CLASS_SUBSETS)} or a list, '
                                  f'got {class_subset!r}')
            self.subset_name = class_subset
            class_subset = CLASS_SUBSETS[class_subset]
        else:
            self.subset_name = 'all classes' if class_subset is None \
                else f'{len(class_subset)} classes'
        check_int(bin_size, 'CalibratedAccuracy: bin_size')
        self.class_indices = None if class_subset is None else \
            [int(i) for i in class_subset]
        self.bin_size = bin_size
        self.out_dir = out_dir

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            scores = restrict_scores(sample['pred_score'].double().cpu(),
                                     self.class_indices)
            conf, pred = scores.max(dim=-1)
            label = int(sample['gt_label'].reshape(-1)[0])
            self.results.append((float(conf), int(pred) == label))

    def compute_metrics(self, results: list) -> dict:
        confidence = np.array([r[0] for r in results])
        correct = np.array([r[1] for r in results], dtype=np.float64)
        error, bins = calibration_error(confidence, correct, self.bin_size)
        metrics = {
            'top1': float(correct.mean() * 100),
            'calibration_error': error * 100,
        }
        self._save_diagram(bins, metrics)
        return metrics

    def _save_diagram(self, bins: list, metrics: dict) -> None:
        title = (f'{self.subset_name}: top-1 {metrics["top1"]:.1f}%, '
                 f'l2 CE {metrics["calibration_error"]:.1f}%')
        image = reliability_diagram(bins, title)
        try:  # the Runner's visualizer: work dir's vis_data, TensorBoard
            Visualizer.get_current_instance().add_image(
                'reliability_diagram', image)
        except RuntimeError:  # no Runner, no visualizer
            pass
        if self.out_dir:
            path = osp.join(self.out_dir, 'reliability_diagram.png')
            with atomic_path(path) as tmp:
                Image.fromarray(image).save(tmp, format='PNG')
            print_log(f'reliability diagram: {path}', logger='current')
