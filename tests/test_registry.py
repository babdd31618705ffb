"""Every component the project registers builds from a config dict.

The list of registered components is read from the registries themselves,
so a new component without an entry in ``BUILD_CONFIGS`` fails here.
"""
import json
import os.path as osp

import pytest
import torch
from mmengine import registry as engine_registry
from mmengine.fileio import get_file_backend
from mmpretrain import registry as pretrain_registry
from mmpretrain.structures import DataSample

import mopro.models
from mopro.utils.fileio import AtomicLocalBackend
from helpers import ROOT
from helpers.configs import tiny_mopro_cfg
from helpers.data import make_webvision, write_image
from helpers.shards import make_shards


def registered_components():
    """(registry name, type name, class) of every class from ``mopro``."""
    found = {}
    for module in (engine_registry, pretrain_registry):
        for name in dir(module):
            registry = getattr(module, name)
            if not isinstance(registry, engine_registry.Registry):
                continue
            for key, cls in registry.module_dict.items():
                if getattr(cls, '__module__', '').startswith('mopro.'):
                    found[(registry.scope, registry.name, key)] = cls
    return found


def _data(tmp_path):
    root = make_webvision(
        str(tmp_path / 'webvision'), num_classes=3, per_class=2,
        val_per_class=1, size=16)
    cleaned = str(tmp_path / 'pseudo_label.json')
    with open(cleaned, 'w') as f:
        json.dump({'google/q0000/000.jpg': 1, 'flickr/q0002/000.jpg': 2}, f)
    for i in range(2):
        write_image(
            str(tmp_path / 'imagenet' / 'val' / str(i) / 'a.jpg'), i, 16)
        write_image(
            str(tmp_path / 'imagenet' / 'train' / f'n0000000{i}' /
                f'n0000000{i}_1.JPEG'), i, 16)
    ckpt = str(tmp_path / 'mopro.pth')
    torch.save({'state_dict': _tiny_mopro().state_dict()}, ckpt)
    custom = tmp_path / 'custom'
    for i, name in enumerate(('cat', 'dog')):
        write_image(str(custom / name / '0.jpg'), i, 16)
    (custom / 'train.txt').write_text('cat/0.jpg 0\ndog/0.jpg 1\n')
    (custom / 'classes.txt').write_text('cat\ndog\n')
    return root, cleaned, str(tmp_path / 'imagenet'), ckpt, str(custom)


def _tiny_mopro_cfg():
    return tiny_mopro_cfg(embed_dim=128, proj_hidden_dim=2048, queue_len=8)


def _tiny_mopro():
    return pretrain_registry.MODELS.build(_tiny_mopro_cfg())


def _sample(inputs, label, img_shape=None):
    meta = {} if img_shape is None else dict(img_shape=img_shape)
    return dict(inputs=inputs,
                data_samples=DataSample(metainfo=meta).set_gt_label(label))


def build_configs(tmp_path):
    root, cleaned, imagenet, ckpt, custom = _data(tmp_path)
    webvision = dict(type='WebVision', data_root=root, num_classes=3)
    return {
        'MoPro': (pretrain_registry.MODELS, _tiny_mopro_cfg(),
                  lambda m: m.prototypes.shape == (3, 128)),
        'CompilableImageClassifier':
        (pretrain_registry.MODELS,
         dict(type='CompilableImageClassifier', compile=False,
              backbone=dict(type='ResNet',
                            depth=18), neck=dict(type='GlobalAveragePooling'),
              head=dict(type='LinearClsHead', num_classes=3,
                        in_channels=512)), lambda m: m.head.num_classes == 3),
        'MoProHead': (pretrain_registry.MODELS,
                      dict(type='MoProHead',
                           temperature=0.2), lambda h: h.temperature == 0.2),
        'MoProDataPreprocessor':
        (pretrain_registry.MODELS,
         dict(type='MoProDataPreprocessor', mean=[1, 2, 3], std=[1, 1, 1],
              to_rgb=True),
         lambda p: p._channel_conversion and p._non_blocking),
        'MoProGPUViewsPreprocessor':
        (pretrain_registry.MODELS,
         dict(type='MoProGPUViewsPreprocessor', mean=[1, 2, 3], std=[1, 1, 1],
              to_rgb=True, crop_size=32),
         lambda p: p.crop_size == 32 and p._channel_conversion),
        'DecodeAheadHook':
        (engine_registry.HOOKS, dict(type='DecodeAheadHook'),
         lambda h: h.priority == 'VERY_LOW'),
        'CopyAheadHook': (engine_registry.HOOKS, dict(type='CopyAheadHook'),
                          lambda h: h.priority == 'VERY_LOW'),
        'multiview_collate':
        (engine_registry.FUNCTIONS, None,
         lambda f: f([_sample([torch.zeros(3, 2, 2)] * 2, 2)] * 3)[
             'data_samples'].tolist() == [2] * 3),
        'packed_images_collate': (engine_registry.FUNCTIONS, None, lambda f: f(
            [_sample(torch.zeros(3, 2, 2, dtype=torch.uint8), 1,
                     (2, 2))])['inputs'].index.tolist() == [[0, 12, 2, 2, 1]]),
        'DeferredRuntimeInfoHook': (engine_registry.HOOKS,
                                    dict(type='DeferredRuntimeInfoHook'),
                                    lambda h: h.priority == 'VERY_HIGH'),
        'SafeCheckpointHook': (engine_registry.HOOKS,
                               dict(type='SafeCheckpointHook', interval=2,
                                    max_keep_ckpts=1), lambda h:
                               (h.interval, h.max_keep_ckpts) == (2, 1)),
        'MoProRunner':
        (engine_registry.RUNNERS,
         dict(runner_type='MoProRunner', model=_tiny_mopro_cfg(),
              work_dir=str(tmp_path / 'runner'), experiment_name='registry',
              default_scope='mmpretrain'),
         lambda r: r.model.prototypes.shape == (3, 128)),
        'DDPBF16CompressionHook': (engine_registry.HOOKS,
                                   dict(type='DDPBF16CompressionHook'),
                                   lambda h: h.priority == 'NORMAL'),
        'NonFiniteCheckHook': (engine_registry.HOOKS,
                               dict(type='NonFiniteCheckHook'),
                               lambda h: h.priority == 'NORMAL'),
        'MoProHook': (engine_registry.HOOKS,
                      dict(type='MoProHook', start_clean_epoch=3),
                      lambda h: h.phase(3)['correct_noise']),
        'WebVision': (pretrain_registry.DATASETS, webvision,
                      lambda d: len(d) == 6),
        'ImageNetVal': (pretrain_registry.DATASETS,
                        dict(type='ImageNetVal', data_root=imagenet,
                             num_classes=3), lambda d: len(d) == 2),
        'CleanedWebVision': (pretrain_registry.DATASETS,
                             dict(type='CleanedWebVision', data_root=root,
                                  pseudo_label_file=cleaned, num_classes=3),
                             lambda d: d.get_gt_labels().tolist() == [1, 2]),
        'ImageNetSubset': (pretrain_registry.DATASETS,
                           dict(type='ImageNetSubset', data_root=imagenet,
                                fraction=1.0), lambda d: len(d) == 2),
        'ImageNet200':
        None,  # needs the 200 class folders: test_calibration
        'CustomImageList':
        (pretrain_registry.DATASETS,
         dict(type='CustomImageList', data_root=custom,
              num_classes=2), lambda d:
         (list(d.metainfo['classes']), d.get_gt_labels().tolist()) ==
         (['cat', 'dog'], [0, 1])),
        'ShardDataset':
        (pretrain_registry.DATASETS,
         dict(type='ShardDataset',
              data_root=make_shards(custom, custom + '_shards', 'folder',
                                    2), batch_size=1, streams=2), lambda d:
         (list(d.metainfo['classes']), len(d)) == (['cat', 'dog'], 2)),
        'ShardEpochHook': (engine_registry.HOOKS, dict(type='ShardEpochHook'),
                           lambda h: h.priority == 'NORMAL'),
        'SqrtBalancedSampler':
        (pretrain_registry.DATA_SAMPLERS,
         dict(type='SqrtBalancedSampler', seed=0,
              dataset=pretrain_registry.DATASETS.build(webvision)),
         lambda s: len(list(iter(s))) == 6),
        'ResumableSampler':
        (pretrain_registry.DATA_SAMPLERS,
         dict(type='ResumableSampler', seed=0, shuffle=False,
              dataset=pretrain_registry.DATASETS.build(webvision)),
         lambda s: [(int(i), i.rng_key) for i in s] == [(p, (0, 0, p))
                                                        for p in range(6)]),
        'CalibratedAccuracy': (pretrain_registry.METRICS,
                               dict(type='CalibratedAccuracy',
                                    bin_size=10), lambda m: m.bin_size == 10),
        'LoadWebImage':
        (pretrain_registry.TRANSFORMS, dict(type='LoadWebImage'),
         lambda t: t(dict(img_path=osp.join(root, 'google/q0000/000.jpg')))[
             'img'].shape == (16, 16, 3)),
        'LoadWebImageBytes':
        (pretrain_registry.TRANSFORMS, dict(type='LoadWebImageBytes'),
         lambda t: t(dict(img_path=osp.join(root, 'google/q0000/000.jpg')))[
             'img'].ndim == 1),
        'MoProPretrained': (engine_registry.WEIGHT_INITIALIZERS,
                            dict(type='MoProPretrained', checkpoint=ckpt),
                            lambda i: i.checkpoint == ckpt),
    }


def test_every_registered_component_builds(tmp_path):
    configs = build_configs(tmp_path)
    names = {key for (_, _, key) in registered_components()}
    assert names == set(configs), 'add a build config for new components'
    for name, entry in configs.items():
        if entry is None:
            continue
        registry, cfg, check = entry
        if cfg is None:  # a function: the registered one, called
            assert check(registry.get(name)), name
            continue
        obj = registry.build(cfg)
        assert isinstance(obj, registry.get(name))
        assert check(obj), name


def test_hook_builds_in_both_scopes():
    for registry in (engine_registry.HOOKS, pretrain_registry.HOOKS):
        hook = registry.build(dict(type='MoProHook'))
        assert hook.start_clean_epoch == 11


def test_public_functions_are_exported():
    assert mopro.models.correct_labels.__module__ == \
        'mopro.models.noise_correction'
    assert callable(mopro.models.update_prototypes)


def test_atomic_checkpoint_backend_is_registered(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)


@pytest.mark.parametrize('config', [
    'mopro_r50_webvision_v1', 'mopro_r50_webvision_v05',
    'mopro_r50_webvision_v2', 'ce_r50_webvision_v1', 'ce_r50_webvision_v05',
    'ce_r50_webvision_v2'
])
def test_configs_read_like_the_paper(config):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{config}.py'))
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.1,
                                               momentum=0.9, weight_decay=1e-4)
    assert cfg.param_scheduler[0]['milestones'] == [40, 80]
    assert cfg.train_cfg.max_epochs == 90
    assert cfg.train_dataloader.batch_size == 32  # x 8 GPUs = 256
    assert cfg.auto_scale_lr.base_batch_size == 256
    if config.startswith('mopro'):
        model = cfg.model
        assert (model.queue_len, model.momentum, model.proto_momentum,
                model.alpha, model.head.temperature) == (8192, 0.999, 0.999,
                                                         0.5, 0.1)
        assert model.threshold == (0.6 if config.endswith('v2') else 0.8)
        assert cfg.custom_hooks[0].start_clean_epoch == 11
    # torch.compile on GPU, torch's defaults
    assert cfg.model.compile == dict(backend='inductor', mode=None,
                                     dynamic=None)
    classes = 5000 if config.endswith('v2') else 1000
    assert cfg.train_dataloader.dataset.num_classes == classes
