"""The v1 pretraining config shrunk to a CPU run through mmengine's
Runner."""
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from mopro.config.data_format import use_shards
from mopro.engine.launch import adapt_to_device
from . import ROOT
from .configs import tiny_mopro_options

V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def tiny_v1_cfg(data_root, work_dir, name, **extra) -> Config:
    """The v1 config shrunk by :func:`tiny_mopro_options` to a CPU run
    named ``name``, without test loop, ``extra`` merged."""
    cfg = Config.fromfile(V1)
    cfg.merge_from_dict(tiny_mopro_options(data_root, work_dir))
    cfg.merge_from_dict(extra)
    cfg.experiment_name = name
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.launcher = 'none'
    return adapt_to_device(cfg)


def train_v1(webvision_root, work_dir, name, max_epochs, resume=None,
             compile=False, shard_root=None, workers=0):
    """Train :func:`tiny_v1_cfg` for ``max_epochs`` (seeded, MoPro's
    phases from epoch 1), resuming from ``resume``, from the shards at
    ``shard_root`` if given, with ``workers`` persistent dataloader
    workers; return the Runner."""
    cfg = tiny_v1_cfg(webvision_root, work_dir, name)
    cfg.train_dataloader.num_workers = workers
    cfg.train_dataloader.persistent_workers = workers > 0
    cfg.model.compile = compile  # after adapt_to_device (off on CPU)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = 100
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.custom_hooks = [
        dict(type='MoProHook', start_proto_epoch=1, start_clean_epoch=1)
    ]
    if shard_root:
        use_shards(cfg, shard_root)
    if resume:
        cfg.resume, cfg.load_from = True, resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner
