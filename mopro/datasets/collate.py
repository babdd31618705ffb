"""Collate functions of MoPro's training batches: few tensors per batch.

A tensor that leaves a dataloader worker crosses to the main process as a
shared-memory file handle (and is pinned there, with ``pin_memory``); 256
small tensors per batch cost tens of ms of CPU, one tensor a few. So the
labels of a batch travel as one int64 tensor (MoPro's ``loss`` takes it in
place of the DataSamples), and the GPU data path's images (JPEG bytes, or
the pixels of the files the workers decoded) as one uint8 tensor with an
index.
"""
from typing import List, NamedTuple, Sequence

import torch
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS

# columns of PackedImages.index
OFFSET, NBYTES, HEIGHT, WIDTH, KIND = range(5)
JPEG, PIXELS = 0, 1  # KIND: bytes of a baseline JPEG, or 3 x H x W uint8


class PackedImages(NamedTuple):
    """The images of a GPU-data-path batch, in one tensor.

    Attributes:
        data: 1-D uint8, the entries back to back.
        index: N x 5 int64, per entry its offset and length in ``data``, the
            image's height and width (from the JPEG header, or the pixels'
            shape) and its kind (``JPEG``: the file's bytes; ``PIXELS``: an
            RGB image, 3 x H x W, decoded by the worker).
        paths: the files, for messages.
    """
    data: torch.Tensor
    index: torch.Tensor
    paths: List[str]


def batch_labels(data_samples: Sequence) -> torch.Tensor:
    """The ``gt_label`` of each DataSample as one int64 tensor."""
    return torch.tensor([int(ds.gt_label) for ds in data_samples],
                        dtype=torch.int64)


@FUNCTIONS.register_module()
def multiview_collate(samples: Sequence[dict]) -> dict:
    """``default_collate`` of ``MultiView`` + ``PackInputs`` samples, with
    the labels as one tensor: ``inputs`` is a list of N x C x H x W views,
    ``data_samples`` an N int64 tensor of the labels."""
    inputs = default_collate([sample['inputs'] for sample in samples])
    return dict(
        inputs=inputs, data_samples=batch_labels(
            [sample['data_samples'] for sample in samples]))


@FUNCTIONS.register_module()
def packed_images_collate(samples: Sequence[dict]) -> dict:
    """The batch of ``LoadWebImageBytes`` + ``PackInputs`` samples (with
    ``img_shape`` and ``img_path`` among the meta keys) as
    :class:`PackedImages` in ``inputs`` and the labels as an N int64 tensor
    in ``data_samples``."""
    entries, rows, paths = [], [], []
    offset = 0
    for sample in samples:
        entry, meta = sample['inputs'], sample['data_samples']
        if 'img_shape' not in meta:
            raise KeyError('packed_images_collate needs img_shape among '
                           "PackInputs' meta_keys")
        height, width = meta.img_shape
        kind = JPEG if entry.ndim == 1 else PIXELS
        entries.append(entry.reshape(-1))
        rows.append((offset, entry.numel(), height, width, kind))
        offset += entry.numel()
        paths.append(meta.get('img_path', ''))
    packed = PackedImages(torch.cat(entries), torch.tensor(rows), paths)
    return dict(
        inputs=packed, data_samples=batch_labels(
            [sample['data_samples'] for sample in samples]))
