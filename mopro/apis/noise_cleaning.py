"""Cleaning the noisy training set with a trained MoPro model (paper
Section 4.3; ``tools/noise_cleaning.py``)."""
import os
import os.path as osp
from typing import Iterable, Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

from ..checkpoint import load_model_weights
from ..config import config_files
from ..datasets.image_list_dataset import ImageListDataset, check_bad_fraction
from ..datasets.shards import ShardDataset
from ..datasets.shards.labels import group_by_shard
from ..engine.launch import check_launched_gpu, init_launched_group
from ..evaluation.noise_cleaning import (UNREADABLE_LABEL, Cleaning,
                                         clean_dataset, cleaned_list,
                                         summarize)
from ..utils.device import compile_only_on_cuda, default_device
from ..utils.errors import ConfigError
from ..utils.fileio import write_json
from ..utils.outputs import check_output_dir, check_output_file, files_read
from ..visualization import save_report

SUMMARY_NAME = 'noise_cleaning_summary.json'
Dataset = Union[ImageListDataset, ShardDataset]


def build_cleaning_dataset(cfg: Config, batch_size: int) -> Dataset:
    """The training set of the config, with the test (val) pipeline; over
    shards (``data_format=shards``) in test mode: every record once, in
    the index's order, in batches of ``batch_size``."""
    dataset_cfg = cfg.train_dataloader.dataset.copy()
    dataset_cfg.pipeline = cfg.val_dataloader.dataset.pipeline
    if dataset_cfg.get('type') == 'ShardDataset':
        dataset_cfg.update(test_mode=True, batch_size=batch_size)
    dataset = DATASETS.build(dataset_cfg)
    dataset.full_init()
    return dataset


def cleaned_labels(dataset: Dataset, cleaning: Cleaning) -> dict:
    """The ``--out`` file's object: ``{relative/path: label}`` of a list,
    by shard and record key over shards
    (:mod:`mopro.datasets.shards.labels`), the kept images only."""
    if not isinstance(dataset, ShardDataset):
        return cleaned_list(cleaning.keys, cleaning.pseudo)
    kept = np.flatnonzero(cleaning.pseudo >= 0)
    shards = [dataset.index.shards[dataset.shard_of(i)].name for i in kept]
    return group_by_shard(shards, [cleaning.keys[i] for i in kept],
                          cleaning.pseudo[kept])


def check_outputs(cfg: Config, checkpoint: str, out: str, num_images: int,
                  read: Iterable[str] = ()) -> None:
    """``out`` (about 100 bytes per image) and the work dir (summary and
    report) can be written, and neither is an input: the config and its
    bases, the checkpoint, or a file ``read`` to build the dataset (its
    image lists, class names)."""
    inputs = (*config_files(cfg.filename), checkpoint, *read)
    check_output_file(out, inputs=inputs, need_bytes=100 * num_images,
                      what='--out file')
    check_output_dir(cfg.work_dir, what='work dir')
    check_output_file(
        osp.join(cfg.work_dir, SUMMARY_NAME), inputs=(*inputs, out),
        what='summary')


def check_unreadable(dataset: Dataset, pseudo: np.ndarray) -> None:
    """The training set's limit on undecodable images,
    ``train_dataloader.dataset.max_bad_fraction`` (1 % by default), applied
    to the complete count of the pass: above it the data is broken rather
    than dirty, and a cleaned list of what was left would be a training set
    nobody asked for. Training stops there too, by the same check, which
    waits for 100 images there because it sees a running count.

    Raises:
        DataError: :func:`check_bad_fraction`'s one line.
    """
    check_bad_fraction(dataset.describe(),
                       int((pseudo == UNREADABLE_LABEL).sum()), len(pseudo),
                       dataset.max_bad_fraction,
                       'train_dataloader.dataset.max_bad_fraction',
                       min_attempts=1)


def _cleaning_device(device: Optional[str]) -> torch.device:
    """``device`` (default: CUDA when available); ``cuda`` without an index
    is the rank's GPU under a launcher."""
    device = default_device(device)
    if device.type != 'cuda':
        return device
    index = device.index
    if index is None:
        index = int(os.environ.get('LOCAL_RANK', 0))
    torch.cuda.set_device(index)
    return torch.device('cuda', torch.cuda.current_device())


def clean_noisy_dataset(cfg: Config, checkpoint: str, out: str,
                        batch_size: int = 256, num_workers: int = 8,
                        num_show: int = 16, device: Optional[str] = None,
                        trust_checkpoint: bool = False) -> dict:
    """Relabel or drop every training image of ``cfg`` with the MoPro model
    of ``checkpoint`` (the training-time rule, eq. 4-5) and return the
    summary.

    Writes ``out`` (``{relative/path: label}``, over shards
    ``{"shards": {shard: {record key: label}}}``, OOD and unreadable images
    removed: the training set of ``configs/crt_r50_webvision_v1.py``)
    and, in the work dir, ``noise_cleaning_summary.json`` (counts
    relabelled / OOD / kept, per class) and the PNG report (OOD samples,
    relabelled samples, per-class changes). Every output is checked before
    the pass, and none may be an input (config, checkpoint, the image lists
    and class names the dataset reads); more undecodable images than the
    training set tolerates (:func:`check_unreadable`) end it with nothing
    written; the cleaned list is written last, so a run that fails to write
    leaves none. Under a launcher (``cfg.launcher``) each rank takes a
    shard and rank 0 writes.
    """
    cfg = compile_only_on_cuda(cfg, device=device)
    if cfg.model.get('type') != 'MoPro':
        raise ConfigError(f'{cfg.filename}: noise cleaning needs a MoPro '
                          f'model config, got model.type='
                          f'{cfg.model.get("type")}')
    check_launched_gpu(cfg.get('launcher', 'none'), device)
    init_launched_group(cfg, device)
    init_default_scope('mmpretrain')
    logger = MMLogger.get_instance('noise_cleaning')
    model = MODELS.build(cfg.model)
    load_model_weights(model, checkpoint, trust=trust_checkpoint)
    with files_read() as lists:
        dataset = build_cleaning_dataset(cfg, batch_size)
    check_outputs(cfg, checkpoint, out, len(dataset), lists)
    device = _cleaning_device(device)
    model.to(device)
    logger.info(f'noise cleaning of {len(dataset)} images with '
                f'{checkpoint} (alpha={model.alpha}, '
                f'threshold={model.threshold})')
    cleaning = clean_dataset(model, dataset, batch_size, num_workers, device)
    pseudo, original = cleaning.pseudo, cleaning.original
    check_unreadable(dataset, pseudo)
    summary = summarize(original, pseudo, model.num_classes)
    if get_dist_info()[0] != 0:
        return summary
    summary_path = osp.join(cfg.work_dir, SUMMARY_NAME)
    write_json(summary_path, dict(checkpoint=checkpoint, out=out, **summary),
               indent=1)
    figures = save_report(dataset, original, pseudo, summary, cfg.work_dir,
                          num_show)
    write_json(out, cleaned_labels(dataset, cleaning), indent=None)
    total = summary['total']
    logger.info(f'{total["images"]} images: {total["kept"]} kept, '
                f'{total["relabelled"]} relabelled, {total["ood"]} OOD, '
                f'{total["unreadable"]} unreadable -> {out} '
                f'({total["cleaned"]} images); summary {summary_path}; '
                f'report {", ".join(figures.values())}')
    return summary
