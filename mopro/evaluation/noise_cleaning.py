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
from typing import (Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.utils import ProgressBar
from mmpretrain.structures import DataSample
from torch.utils.data import (DataLoader, Dataset, IterableDataset,
                              get_worker_info)

from ..datasets.image_list_dataset import ImageListDataset
from ..datasets.shards import ShardDataset
from ..datasets.transforms import ImageDecodeError
from ..models.noise_correction import OOD_LABEL, correct_labels

# a training image that cannot be decoded gets this label (and is left out)
UNREADABLE_LABEL = -2


class Cleaning(NamedTuple):
    """The pass over a training set, by sample index: the corrected
    label (or ``OOD_LABEL``, ``UNREADABLE_LABEL``), the original label,
    and the image's key (its relative path in a list, its record key in
    shards)."""
    pseudo: np.ndarray
    original: np.ndarray
    keys: List[str]


def _load(dataset: Union[ImageListDataset, ShardDataset], info: dict,
          key: str) -> dict:
    """``info`` through the dataset's pipeline with its index, label and
    key; an undecodable image gives ``data=None``."""
    item = dict(idx=info['sample_idx'], label=info['gt_label'], key=key)
    try:
        item['data'] = dataset.pipeline(info)
    except ImageDecodeError:
        item['data'] = None
    return item


class _InferenceView(Dataset):
    """Test-transformed samples of an :class:`ImageListDataset`, by index
    (:func:`_load`)."""

    def __init__(self, dataset: ImageListDataset,
                 indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        idx = self.indices[i]
        return _load(self.dataset, self.dataset.get_data_info(idx),
                     self.dataset.images.path(idx))


class _ShardInferenceView(IterableDataset):
    """Test-transformed samples of a test-mode :class:`ShardDataset`:
    this rank's share of the records, in the index's order
    (:meth:`ShardDataset.test_infos`), split among the dataloader
    workers (:func:`_load`)."""

    def __init__(self, dataset: ShardDataset) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id,
                                                       info.num_workers)
        for sample in self.dataset.test_infos(worker, workers):
            yield _load(self.dataset, sample, sample['record_key'])


def _collate(items: List[dict]) -> dict:
    """The decoded samples (``good``) batched, and the index, label and
    key of every item, the decoded ones first."""
    good = [it for it in items if it['data'] is not None]
    bad = [it for it in items if it['data'] is None]
    return dict(
        idx=[it['idx']
             for it in good + bad], labels=[it['label'] for it in good + bad],
        keys=[it['key'] for it in good + bad], good=len(good),
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


def clean_dataset(model: torch.nn.Module, dataset: Union[ImageListDataset,
                                                         ShardDataset],
                  batch_size: int = 256, num_workers: int = 8,
                  device: Optional[torch.device] = None,
                  progress: bool = True) -> Cleaning:
    """Corrected label, original label and key of every training image
    (all ranks).

    Each rank processes its share (``rank::world_size`` of a list; of
    shards, a test-mode :class:`ShardDataset`'s consecutive share, which
    reads each shard on one rank); the shares are all-gathered, so every
    rank returns the whole pass: the new label, ``OOD_LABEL`` (-1) for
    out-of-distribution images, or ``UNREADABLE_LABEL`` (-2) for images
    that cannot be decoded. On GPU the encoder runs under bf16 autocast in
    channels-last layout; the correction itself is computed in float32.
    """
    rank, world_size = get_dist_info()
    device = device or next(model.parameters()).device
    model.eval()
    if device.type == 'cuda':
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    view = _ShardInferenceView(dataset) \
        if isinstance(dataset, ShardDataset) else \
        _InferenceView(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(view, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=device.type == 'cuda')
    bar = ProgressBar(len(dataset)) if progress and rank == 0 else None
    idx_out, label_out, original_out, key_out = [], [], [], []
    for item in loader:
        if item['batch'] is not None:
            label_out.append(correct_batch(model, item['batch'])[1])
        label_out.append(
            torch.full((len(item['idx']) - item['good'], ), UNREADABLE_LABEL))
        idx_out += item['idx']
        original_out += item['labels']
        key_out += item['keys']
        if bar is not None:
            bar.update(world_size * len(item['idx']))
    labels = torch.cat(label_out).numpy() if label_out else np.zeros(0)
    pseudo = np.full(len(dataset), UNREADABLE_LABEL, dtype=np.int64)
    original = np.zeros(len(dataset), dtype=np.int64)
    keys = [''] * len(dataset)
    gathered = all_gather_object(
        (np.asarray(idx_out, np.int64), labels.astype(np.int64),
         np.asarray(original_out, np.int64), key_out))
    for idx, lab, orig, rank_keys in gathered:
        pseudo[idx] = lab
        original[idx] = orig
        for i, key in zip(idx, rank_keys):
            keys[i] = key
    return Cleaning(pseudo, original, keys)


def cleaned_list(keys: Sequence[str], pseudo: np.ndarray) -> Dict[str, int]:
    """``{key: label}`` of the kept images (OOD and unreadable images
    removed): for a list, ``{relative path: label}``, the training list of
    classifier re-training."""
    return {key: int(lab) for key, lab in zip(keys, pseudo) if lab >= 0}


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
