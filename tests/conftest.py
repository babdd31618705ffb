"""Shared fixtures: tiny datasets in the official layouts, tiny configs."""
import logging
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import mopro  # noqa: E402,F401
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

# as a Runner does: nested transforms (MultiView) resolve in mmpretrain
init_default_scope('mmpretrain')


def pytest_configure(config) -> None:
    config.addinivalue_line(
        'markers', 'gpu: needs a CUDA device (make test-gpu runs only '
        'these); skipped without one')


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the ``gpu`` tests cleanly where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def log_to_a_live_stream():
    """An mmengine logger made in a test that captured ``sys.stdout``
    (``capsys``) writes to that test's stream, closed when it ended: its
    next line would end in a logging error on stderr, in whatever test
    logs next. Such handlers are pointed at the current ``sys.stdout``."""
    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(
                    handler.stream, 'closed', False):
                # (setStream would flush the closed one)
                handler.stream = sys.stdout
    yield


def write_image(path: str, seed: int, size: int = 40) -> None:
    """A small random-colour JPEG with a class-dependent pattern."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def make_webvision(root: str, num_classes: int = 4, per_class: int = 8,
                   val_per_class: int = 2, size: int = 40) -> str:
    """A fake WebVision tree (google + flickr lists, val_images_256)."""
    os.makedirs(osp.join(root, 'info'), exist_ok=True)
    seed = 0
    for source in ('google', 'flickr'):
        lines = []
        for c in range(num_classes):
            for i in range(per_class // 2):
                rel = f'{source}/q{c:04d}/{i:03d}.jpg'
                write_image(osp.join(root, rel), seed, size)
                seed += 1
                lines.append(f'{rel} {c}')
        with open(osp.join(root, 'info', f'train_filelist_{source}.txt'),
                  'w') as f:
            f.write('\n'.join(lines) + '\n')
    lines = []
    for c in range(num_classes):
        for i in range(val_per_class):
            name = f'val{c:02d}{i:03d}.jpg'
            write_image(osp.join(root, 'val_images_256', name), seed, size)
            seed += 1
            lines.append(f'{name} {c}')
    with open(osp.join(root, 'info', 'val_filelist.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


@pytest.fixture
def webvision_root(tmp_path) -> str:
    return make_webvision(str(tmp_path / 'webvision'))


def tiny_mopro_cfg(**overrides) -> dict:
    """A CPU-sized MoPro model config (ResNet-18 encoder), ``overrides``
    replacing top-level keys."""
    cfg = dict(
        type='MoPro',
        backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='MoProHead', temperature=0.1),
        num_classes=3,
        feat_dim=512,
        embed_dim=8,
        proj_hidden_dim=16,
        queue_len=16,
        data_preprocessor=dict(
            type='MoProDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True))
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
        # eager on every machine (tests/test_compile.py tests the switch)
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


def tool_config(config: str, cfg_options: dict = None, **args):
    """``config`` as the tools load it (:func:`mopro.utils.runner.load_config`
    with ``--cfg-options`` and the other flags ``args``: ``work_dir``,
    ``launcher``)."""
    import argparse
    from mopro.utils.runner import load_config
    flags = dict(work_dir=None, launcher='none', local_rank=0)
    flags.update(args)
    return load_config(argparse.Namespace(
        config=str(config), cfg_options=cfg_options, **flags))


def load_tool(name: str):
    """Import ``tools/<name>.py`` (``name`` may hold a tool group, e.g.
    ``analysis_tools/benchmark``) as a module (tools are scripts, not a
    package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'tools_' + name.replace('/', '_'),
        osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
