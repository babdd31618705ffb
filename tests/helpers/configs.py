"""Tiny configs: a CPU-sized MoPro model, ``--cfg-options`` that shrink the
v1 config, and configs loaded as the tools load them."""
import argparse

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mopro.config import load_config


def tiny_mopro_cfg(**overrides) -> dict:
    """A CPU-sized MoPro model config (ResNet-18 encoder), ``overrides``
    replacing top-level keys."""
    cfg = dict(
        type='MoPro', backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='MoProHead', temperature=0.1), num_classes=3,
        feat_dim=512, embed_dim=8, proj_hidden_dim=16, queue_len=16,
        data_preprocessor=dict(type='MoProDataPreprocessor',
                               mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))
    cfg.update(overrides)
    return cfg


def tiny_mopro_options(data_root: str, work_dir: str,
                       num_classes: int = 4) -> dict:
    """``--cfg-options`` that shrink the v1 config to a CPU-sized run."""
    small = 32
    return {
        'model.backbone.depth': 18,
        'model.feat_dim': 512,
        'model.proj_hidden_dim': 64,
        'model.embed_dim': 16,
        'model.queue_len': 32,
        'model.num_classes': num_classes,
        'model.channels_last': False,
        # eager on every machine (tests/test_models/test_utils/
        # test_compile.py tests the switch)
        'model.compile': False,
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.dataset.num_classes': num_classes,
        'train_dataloader.batch_size': 4,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.pipeline.1.transforms.0.0.scale': small,
        'train_dataloader.dataset.pipeline.1.transforms.1.0.scale': small,
        'val_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.num_classes': num_classes,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_dataloader.dataset.pipeline.1.scale': small,
        'val_dataloader.dataset.pipeline.2.crop_size': small,
        'val_evaluator.topk': (1, ),
        'default_hooks.logger.interval': 1,
        'work_dir': work_dir,
    }


# configs/mopro_r50_custom.py shrunk by --cfg-options for the CI: a
# ResNet-18 on 32 px views, eager, in the main process
CUSTOM_SMALL = [
    'model.backbone.depth=18',
    'model.feat_dim=512',
    'model.proj_hidden_dim=64',
    'model.embed_dim=16',
    'model.queue_len=32',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'val_dataloader.dataset.pipeline.1.scale=32',
    'val_dataloader.dataset.pipeline.2.crop_size=32',
    'visualizer.vis_backends=None',
]


def custom_small_training(epochs: int) -> list:
    """``--cfg-options`` beside :data:`CUSTOM_SMALL` for a training run of
    ``epochs``, batches of 4, MoPro's noise correction from the second
    epoch, a log line every iteration."""
    return [
        f'max_epochs={epochs}',
        'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
        'train_dataloader.dataset.pipeline.1.transforms.1.0.scale=32',
        'custom_hooks.0.start_clean_epoch=1',
        'default_hooks.logger.interval=1',
    ]


def tool_config(config: str, cfg_options: dict = None, **args):
    """``config`` as the tools load it (:func:`mopro.config.load_config`
    with ``--cfg-options`` and the other flags ``args``: ``work_dir``,
    ``launcher``)."""
    flags = dict(work_dir=None, launcher='none', local_rank=0)
    flags.update(args)
    return load_config(
        argparse.Namespace(
            config=str(config), cfg_options=cfg_options, **flags))


def untrained_checkpoint(config: str, cfg_options: dict, path: str) -> str:
    """``path``, a checkpoint of the freshly built model of ``config`` with
    ``cfg_options`` merged (what the tools load, untrained)."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_options)
    torch.save({
        'meta': {},
        'state_dict': MODELS.build(cfg.model).state_dict()
    }, path)
    return path
