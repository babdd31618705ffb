"""Fixed-representation feature extraction (paper Sec. 5.1 and App. C).

The representation of an image is the encoder's global-average-pooled
output v (``MoPro.extract_feat``, 2048-d for ResNet-50) of the image resized
to 256 pixels on the short side and center-cropped to 224 x 224; the
model's data preprocessor does the ImageNet normalisation. On a GPU the
encoder runs in channels-last memory format under bf16 autocast, in large
batches. Used by :mod:`mopro.evaluation.low_shot` and the speed
benchmarks.
"""
import os
import zipfile
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.utils import ProgressBar
from mmpretrain.registry import MODELS, TRANSFORMS
from torch.utils.data import DataLoader, Dataset

from ..datasets.shards.lookup import ShardImage
from ..utils.device import compile_only_on_cuda, default_device
from ..utils.errors import ConfigError, DataError
from ..utils.fileio import atomic_path
from .svm import require_finite_features


def feature_pipeline(resize: int = 256, crop: int = 224) -> List[dict]:
    """Test-time transforms: short side to ``resize``, center ``crop``.

    Images are decoded by ``LoadWebImage``: an empty, undecodable or
    oversized file is an error naming it.
    """
    return [
        dict(type='LoadWebImage'),
        dict(type='ResizeEdge', scale=resize, edge='short'),
        dict(type='CenterCrop', crop_size=crop),
        dict(type='PackInputs'),
    ]


# an image file's path, or an image read already (a shard record)
ImageInput = Union[str, ShardImage]


class ImageDataset(Dataset):
    """Images through an mmpretrain transform pipeline: files by path, or
    the bytes of shard records, which ``LoadWebImage`` decodes from
    ``img_bytes`` as it decodes a file (as ``ShardDataset`` feeds it)."""

    def __init__(self, images: Sequence[ImageInput],
                 pipeline: Sequence[dict]) -> None:
        self.images = list(images)
        self.pipeline = Compose([TRANSFORMS.build(t) for t in pipeline])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if isinstance(image, str):
            return self.pipeline(dict(img_path=image, sample_idx=index))
        return self.pipeline(
            dict(img_path=image.name, img_bytes=bytearray(image.data),
                 sample_idx=index))


def check_image_files(paths: Sequence[str]) -> None:
    """Every image exists and is not empty, before any is decoded: else a
    one-line :class:`DataError` naming the first bad file."""
    for problem, bad in (('no such image', [
            p for p in paths if not os.path.isfile(p)
    ]), ('empty image file (0 bytes)',
         [p for p in paths if os.path.isfile(p) and os.path.getsize(p) == 0])):
        if bad:
            raise DataError(f'{bad[0]}: {problem} ({len(bad)} of '
                            f'{len(paths)} images)')


def build_feature_model(config: Union[str, Config],
                        cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build the model of an mmengine config (``model``), options merged;
    ``model.compile`` only where CUDA is available."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise ConfigError(f'{cfg.filename}: the config has no model')
    compile_only_on_cuda(cfg)
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'extract_feat'):
        raise ConfigError(f'{cfg.filename}: model {type(model).__name__} has '
                          'no extract_feat')
    return model


def prepare_for_inference(model: torch.nn.Module,
                          device: torch.device) -> torch.nn.Module:
    """The model on ``device`` in eval mode; channels-last on a GPU."""
    model = model.to(device).eval()
    if device.type == 'cuda':
        model = model.to(memory_format=torch.channels_last)
    return model


@torch.inference_mode()
def encode_batch(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Pooled features v (float32, on the device) of a normalised batch;
    channels-last under bf16 autocast on a GPU."""
    on_gpu = inputs.is_cuda
    if on_gpu:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16,
                        enabled=on_gpu):
        return model.extract_feat(inputs)[-1].float()


@torch.inference_mode()
def extract_features(model: torch.nn.Module, images: Sequence[ImageInput],
                     pipeline: Sequence[dict], batch_size: int = 256,
                     num_workers: int = 8, device: Optional[str] = None,
                     progress: bool = True) -> np.ndarray:
    """Pooled encoder features of images, ``N x D`` float32, in order.

    Args:
        model: a model with ``data_preprocessor`` and ``extract_feat``.
        images: image files, or images read from shards
            (:func:`~mopro.datasets.shards.lookup.read_images_by_path`).
        pipeline: transforms (:func:`feature_pipeline`).
        batch_size: images per forward pass.
        num_workers: data loading processes.
        device: ``'cuda'``, ``'cpu'``...; CUDA when available if None.
        progress: show a progress bar.
    """
    if not images:
        raise DataError('no images to extract features from')
    device = default_device(device)
    on_gpu = device.type == 'cuda'
    model = prepare_for_inference(model, device)
    loader = DataLoader(
        ImageDataset(images, pipeline), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=default_collate, pin_memory=on_gpu)
    bar = ProgressBar(len(images)) if progress else None
    chunks = []
    for batch in loader:
        inputs = model.data_preprocessor(batch, False)['inputs']
        feats = encode_batch(model, inputs)
        chunks.append(feats.cpu().numpy())
        if bar is not None:
            bar.update(len(feats))
    if bar is not None:
        bar.file.write('\n')
    return np.concatenate(chunks)


# ----------------------------------------------------------------------
# feature files (.npz) of the low-shot benchmark
LABEL_KEYS = ('train_labels', 'test_labels')
FEATURE_FILE_KEYS = ('dataset', 'train_feats', 'train_index', 'train_labels',
                     'test_feats', 'test_labels')


def save_feature_file(path: str, arrays: dict) -> None:
    """Write the arrays of :data:`FEATURE_FILE_KEYS` (plus an optional
    ``meta`` JSON string) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        np.savez(f, **arrays)


def load_feature_file(path: str, dataset: str,
                      label_columns: Optional[int] = None) -> dict:
    """Read and validate a feature file written by :func:`save_feature_file`.

    Layout: ``train_feats`` (n x D) are the features of the training-list
    images ``train_index`` (n, increasing); ``train_labels`` label the whole
    training list (N x C multi-label or N class indices), ``test_feats``
    (M x D) and ``test_labels`` (M x C or M) the test set.

    Args:
        path: the .npz file.
        dataset: the dataset the features must be of.
        label_columns: C for multi-label data; None for class indices.

    Raises:
        FileNotFoundError, DataError: one line naming the file and key
            (also for NaN or infinite features).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such features file')
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f'{path}: not a readable .npz features file '
                        f'({str(err).splitlines()[0]})') from None
    missing = [key for key in FEATURE_FILE_KEYS if key not in data]
    if missing:
        raise DataError(f'{path}: missing keys {missing} (expected '
                        f'{list(FEATURE_FILE_KEYS)})')
    if str(data['dataset']) != dataset:
        raise DataError(f'{path}: holds {str(data["dataset"])!r} features, '
                        f'not {dataset!r}')
    want = 1 if label_columns is None else 2
    for split in ('train', 'test'):
        feats, labels = data[f'{split}_feats'], data[f'{split}_labels']
        if feats.ndim != 2 or 0 in feats.shape or \
                not np.issubdtype(feats.dtype, np.floating):
            raise DataError(f'{path}: {split}_feats must be a non-empty '
                            f'float N x D array (N, D >= 1), got '
                            f'{feats.dtype} {feats.shape}')
        if labels.ndim != want or (want == 2
                                   and labels.shape[1] != label_columns):
            shape = 'N' if want == 1 else f'N x {label_columns}'
            raise DataError(f'{path}: {split}_labels must be {shape}, got '
                            f'shape {labels.shape}')
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f'{path}: {split}_labels must be integers, got '
                            f'{labels.dtype}')
    for split in ('train', 'test'):
        require_finite_features(data[f'{split}_feats'],
                                f'{path}: {split}_feats')
    if data['train_feats'].shape[1] != data['test_feats'].shape[1]:
        raise DataError(f'{path}: train_feats are '
                        f'{data["train_feats"].shape[1]}-d, test_feats '
                        f'{data["test_feats"].shape[1]}-d')
    if len(data['test_labels']) != len(data['test_feats']):
        raise DataError(f'{path}: {len(data["test_feats"])} test_feats but '
                        f'{len(data["test_labels"])} test_labels')
    index = data['train_index']
    if index.shape != (len(data['train_feats']), ) or \
            not np.issubdtype(index.dtype, np.integer):
        raise DataError(f'{path}: train_index must hold one integer per '
                        f'train_feats row ({len(data["train_feats"])}), '
                        f'got {index.dtype} {index.shape}')
    if (np.diff(index) <= 0).any() or index[0] < 0 or \
            index[-1] >= len(data['train_labels']):
        raise DataError(f'{path}: train_index must increase within '
                        f'[0, {len(data["train_labels"])})')
    check_split_labels(data['train_labels'], data['test_labels'], label_columns
                       is not None, path)
    return data


def check_split_labels(train_labels: np.ndarray, test_labels: np.ndarray,
                       multi_label: bool, source: str,
                       names: Sequence[str] = LABEL_KEYS) -> None:
    """Labels a low-shot benchmark can score, else a one-line
    :class:`DataError` starting with ``source`` and naming the split as
    ``names`` (training, test): a test class without training images would
    count as wrong on every image (0 % accuracy) and a class without test
    positives has no AP.

    - class indices (Places205): at least 0, at least 2 training classes,
      every test class among the training classes;
    - ``N x C`` labels (VOC07): values in {1, 0 (difficult), -1}, every
      class with a positive (1) in both splits.
    """
    train_name, test_name = names
    if multi_label:
        for name, labels in ((train_name, train_labels), (test_name,
                                                          test_labels)):
            bad = np.unique(labels[~np.isin(labels, (-1, 0, 1))])
            if bad.size:
                raise DataError(f'{source}: {name} hold {_some(bad)}; VOC07 '
                                'labels are 1, 0 (difficult) or -1')
            missing = np.flatnonzero(~(labels == 1).any(axis=0))
            if missing.size:
                raise DataError(f'{source}: {name} have no positive (1) of '
                                f'class {_some(missing)}; every class needs '
                                'one in both splits')
        return
    for name, labels in ((train_name, train_labels), (test_name, test_labels)):
        if (labels < 0).any():
            raise DataError(f'{source}: {name} hold negative class indices '
                            f'{_some(np.unique(labels[labels < 0]))}; class '
                            'indices must be >= 0')
    classes = np.unique(train_labels)
    if classes.size < 2:
        raise DataError(f'{source}: {train_name} hold {classes.size} class; '
                        'the benchmark needs at least 2')
    unseen = np.setdiff1d(np.unique(test_labels), classes)
    if unseen.size:
        raise DataError(f'{source}: {test_name} hold classes '
                        f'{_some(unseen)} that {train_name} lack; every test '
                        'class must occur in training (no SVM scores it)')


def _some(values: np.ndarray, shown: int = 5) -> str:
    """``1, 2, 3`` or ``1, 2, 3, 4, 5 ... (12 in all)``."""
    text = ', '.join(str(v) for v in values[:shown].tolist())
    if len(values) > shown:
        text += f' ... ({len(values)} in all)'
    return text
