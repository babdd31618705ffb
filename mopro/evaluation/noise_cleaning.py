"""Noise cleaning of the training set with a trained MoPro model.

Paper Section 4.3, step (2): one pass over the (noisy) training set with the
pretrained model, applying the same correction rule as training
(:func:`mopro.models.noise_correction.correct_labels`, eq. 4-5: soft label
from classifier and prototypes, relabel above the threshold T, keep the
original label above 1/K, otherwise out-of-distribution). The result is a
cleaned training list for classifier re-training (cRT).

This module holds the reusable parts: the distributed inference pass and
the summary (counts per class); the visual report (paper Figures 3 and 4)
is :func:`mopro.visualization.save_report`.
"""
import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.utils import ProgressBar
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from ..datasets.image_list_dataset import ImageListDataset
from ..datasets.transforms import ImageDecodeError
from ..models.noise_correction import OOD_LABEL, correct_labels

# a training image that cannot be decoded gets this label (and is left out)
UNREADABLE_LABEL = -2


class _InferenceView(Dataset):
    """Test-transformed samples of an :class:`ImageListDataset`, by index;
    an undecodable image gives ``None`` instead of another sample."""

    def __init__(self, dataset: ImageListDataset,
                 indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        idx = self.indices[i]
        try:
            data = self.dataset.pipeline(self.dataset.get_data_info(idx))
        except ImageDecodeError:
            return dict(idx=idx, data=None)
        return dict(idx=idx, data=data)


def _collate(items: List[dict]) -> dict:
    good = [it for it in items if it['data'] is not None]
    return dict(
        idx=[it['idx'] for it in good],
        bad=[it['idx'] for it in items if it['data'] is None],
        batch=default_collate([it['data'] for it in good]) if good else None)


@torch.no_grad()
def correct_inputs(model: torch.nn.Module, inputs: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """Corrected labels (eq. 4-5) of normalised images on the model's device.

    On GPU the encoder runs under bf16 autocast (channels-last when the
    model is set so, see :func:`clean_dataset`); the correction itself is
    computed in float32.
    """
    amp = torch.autocast('cuda', dtype=torch.bfloat16) \
        if inputs.is_cuda else contextlib.nullcontext()
    with amp:
        _, cls_logits, embed = model.encode(inputs)
    proto_logits = model.prototype_logits(embed.float())
    return correct_labels(cls_logits.float(), proto_logits, labels,
                          model.alpha, model.threshold)


def correct_batch(model: torch.nn.Module,
                  batch: dict) -> Tuple[List[DataSample], torch.Tensor]:
    """The noise-correction pass over one collated batch of test-transformed
    samples: the model's data preprocessor (the first view where there are
    two), then :func:`correct_inputs`. Returns the batch's data samples
    and their corrected labels (on the CPU)."""
    data = model.data_preprocessor(batch, False)
    inputs, samples = data['inputs'], data['data_samples']
    if isinstance(inputs, (list, tuple)):
        inputs = inputs[0]
    labels = torch.cat([ds.gt_label for ds in samples]).to(inputs.device)
    return samples, correct_inputs(model, inputs, labels).cpu()


def clean_dataset(model: torch.nn.Module, dataset: ImageListDataset,
                  batch_size: int = 256, num_workers: int = 8,
                  device: Optional[torch.device] = None,
                  progress: bool = True) -> np.ndarray:
    """Corrected label of every training image (all ranks).

    Each rank processes the shard ``rank::world_size``; the shards are
    all-gathered, so every rank returns the full array: the new label,
    ``OOD_LABEL`` (-1) for out-of-distribution images, or
    ``UNREADABLE_LABEL`` (-2) for files that cannot be decoded. On GPU the
    encoder runs under bf16 autocast in channels-last layout; the
    correction itself is computed in float32.
    """
    rank, world_size = get_dist_info()
    device = device or next(model.parameters()).device
    model.eval()
    if device.type == 'cuda':
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    shard = range(rank, len(dataset), world_size)
    loader = DataLoader(
        _InferenceView(dataset,
                       shard), batch_size=batch_size, num_workers=num_workers,
        collate_fn=_collate, pin_memory=device.type == 'cuda')
    bar = ProgressBar(len(dataset)) if progress and rank == 0 else None
    idx_out, label_out = [], []
    for item in loader:
        if item['batch'] is not None:
            idx_out.extend(item['idx'])
            label_out.append(correct_batch(model, item['batch'])[1])
        idx_out.extend(item['bad'])
        label_out.append(torch.full((len(item['bad']), ), UNREADABLE_LABEL))
        if bar is not None:
            bar.update(world_size * (len(item['idx']) + len(item['bad'])))
    labels = torch.cat(label_out).numpy() if label_out else np.zeros(0)
    pseudo = np.full(len(dataset), UNREADABLE_LABEL, dtype=np.int64)
    gathered = all_gather_object(
        (np.asarray(idx_out, np.int64), labels.astype(np.int64)))
    for idx, lab in gathered:
        pseudo[idx] = lab
    return pseudo


def cleaned_list(dataset: ImageListDataset,
                 pseudo: np.ndarray) -> Dict[str, int]:
    """``{relative path: label}`` of the kept images (OOD and unreadable
    images removed), the training list of classifier re-training."""
    return {
        dataset.images.path(i): int(lab)
        for i, lab in enumerate(pseudo) if lab >= 0
    }


def summarize(original: np.ndarray, pseudo: np.ndarray,
              num_classes: int) -> dict:
    """Counts: kept with the original label, relabelled, OOD, unreadable;
    per class: images before/after, kept, relabelled away/into, OOD."""
    original = np.asarray(original, dtype=np.int64)
    pseudo = np.asarray(pseudo, dtype=np.int64)
    kept = pseudo == original
    ood = pseudo == OOD_LABEL
    unreadable = pseudo == UNREADABLE_LABEL
    relabelled = (pseudo >= 0) & ~kept

    def per_class(mask, labels):
        return np.bincount(labels[mask], minlength=num_classes).tolist()

    return dict(
        total=dict(
            images=int(len(original)), kept=int(kept.sum()),
            relabelled=int(relabelled.sum()), ood=int(ood.sum()),
            unreadable=int(unreadable.sum()), cleaned=int((pseudo
                                                           >= 0).sum())),
        per_class=dict(
            before=per_class(np.ones_like(kept), original),
            after=per_class(pseudo >= 0,
                            np.where(pseudo >= 0, pseudo,
                                     0)), kept=per_class(kept, original),
            relabelled_away=per_class(relabelled, original),
            relabelled_into=per_class(relabelled, pseudo.clip(0)),
            ood=per_class(ood, original)))
