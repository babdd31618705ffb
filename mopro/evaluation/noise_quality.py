"""How well MoPro's noise correction finds and fixes known label noise.

MoPro's pseudo-labels (paper Section 3.2, eq. 4-5) either keep the web label,
relabel the sample to another class (a confident prediction), or declare it
out-of-distribution (OOD). With the ground truth of the demo dataset
(:mod:`mopro.datasets.demo`: every training sample is ``clean``, ``flipped``
or ``ood``) these functions measure that cleaning, as in the paper's
Section 4.4 analysis of the cleaned WebVision data.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.utils import ProgressBar

from ..models.noise_correction import OOD_LABEL
from .noise_cleaning import correct_batch


def _ratio(num: int, den: int) -> Optional[float]:
    return float(num) / den if den else None


def noise_quality(pseudo_labels: Sequence[int], labels: Sequence[int],
                  true_labels: Sequence[int],
                  kinds: Sequence[str]) -> Dict[str, object]:
    """Score pseudo-labels against the known noise.

    A sample is *flagged* when its pseudo-label differs from its web label
    (relabelled, or OOD = -1); the truly noisy samples are the ``flipped``
    and ``ood`` ones.

    Args:
        pseudo_labels: corrected labels, ``-1`` for OOD.
        labels: the given (web) labels.
        true_labels: the true class (for OOD samples any value outside the
            classes, e.g. the true digit 8 or 9).
        kinds: ``'clean'``, ``'flipped'`` or ``'ood'`` per sample.

    Returns:
        A dict of counts and rates (``None`` where a rate has no samples):
        ``noise_precision`` / ``noise_recall`` of flagged vs truly noisy;
        ``ood_recall`` (true OOD declared OOD) and ``ood_precision``;
        ``flipped_relabelled`` (fraction of flipped samples relabelled);
        ``flipped_correction_acc`` (relabelled to the true class, among the
        relabelled flipped samples); ``relabel_acc`` (relabelled to the true
        class, among all relabelled samples); ``flipped_fixed`` (fraction of
        all flipped samples relabelled to their true class); ``clean_kept``
        (fraction of clean samples that keep their label).
    """
    pseudo = np.asarray(pseudo_labels, dtype=np.int64)
    given = np.asarray(labels, dtype=np.int64)
    true = np.asarray(true_labels, dtype=np.int64)
    kinds = np.asarray(kinds)
    if not (len(pseudo) == len(given) == len(true) == len(kinds)):
        raise ValueError('noise_quality: inputs differ in length '
                         f'({len(pseudo)}, {len(given)}, {len(true)}, '
                         f'{len(kinds)})')
    unknown = set(kinds.tolist()) - {'clean', 'flipped', 'ood'}
    if unknown:
        raise ValueError(f'noise_quality: unknown kinds {sorted(unknown)}')
    is_ood = pseudo == OOD_LABEL
    relabelled = (pseudo != given) & ~is_ood
    flagged = relabelled | is_ood
    clean, flipped, ood = (kinds == k for k in ('clean', 'flipped', 'ood'))
    noisy = flipped | ood
    right = pseudo == true
    return dict(
        num_samples=int(len(pseudo)),
        num_clean=int(clean.sum()),
        num_flipped=int(flipped.sum()),
        num_ood=int(ood.sum()),
        num_relabelled=int(relabelled.sum()),
        num_declared_ood=int(is_ood.sum()),
        noise_precision=_ratio((flagged & noisy).sum(), flagged.sum()),
        noise_recall=_ratio((flagged & noisy).sum(), noisy.sum()),
        ood_recall=_ratio((is_ood & ood).sum(), ood.sum()),
        ood_precision=_ratio((is_ood & ood).sum(), is_ood.sum()),
        flipped_relabelled=_ratio((relabelled & flipped).sum(), flipped.sum()),
        flipped_correction_acc=_ratio((relabelled & flipped & right).sum(),
                                      (relabelled & flipped).sum()),
        relabel_acc=_ratio((relabelled & right).sum(), relabelled.sum()),
        flipped_fixed=_ratio((flipped & right).sum(), flipped.sum()),
        clean_kept=_ratio((clean & (pseudo == given)).sum(), clean.sum()),
    )


@torch.no_grad()
def mopro_pseudo_labels(
        model, dataloader, show_progress: bool = True
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass of a trained MoPro model over a dataset: the pseudo-labels
    that the training-time rule (eq. 4-5, with the model's prototypes,
    ``alpha`` and ``threshold``) gives each sample, batch by batch as the
    noise-cleaning pass computes them
    (:func:`mopro.evaluation.noise_cleaning.correct_batch`).

    Use a test-style pipeline (no augmentation); this is the pass the
    released ``noise_cleaning.py`` makes before classifier re-training.

    Returns:
        (sample indices, given labels, pseudo-labels), in loader order.
    """
    model.eval()
    indices, labels, pseudo = [], [], []
    bar = ProgressBar(len(dataloader.dataset)) if show_progress else None
    for data in dataloader:
        samples, batch = correct_batch(model, data)
        indices += [int(s.sample_idx) for s in samples]
        labels.append(torch.cat([s.gt_label for s in samples]).long().cpu())
        pseudo.append(batch)
        if bar is not None:
            for _ in samples:
                bar.update()
    return (np.asarray(indices, dtype=np.int64), torch.cat(labels).numpy(),
            torch.cat(pseudo).numpy())
