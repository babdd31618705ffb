"""The ``data_format`` switch of the WebVision and own-data configs."""
import os.path as osp

import pytest

from mopro.apis.noise_cleaning import build_cleaning_dataset
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.configs import tool_config

CUSTOM = osp.join(ROOT, 'configs', 'mopro_r50_custom.py')
V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def custom_options(**extra):
    return dict(data_root='data/mine', num_classes=3, **extra)


def test_shards_switch_the_train_loader_only():
    lists = tool_config(CUSTOM, custom_options())
    cfg = tool_config(
        CUSTOM,
        custom_options(data_format='shards', shard_root='data/my shards',
                       **{'train_dataloader.batch_size': 16}))
    train = cfg.train_dataloader
    assert train.sampler is None
    assert dict(train.dataset,
                pipeline=None) == dict(type='ShardDataset',
                                       data_root='data/my shards',
                                       index='train-index.json', batch_size=16,
                                       num_classes=3, pipeline=None)
    assert train.dataset.pipeline == lists.train_dataloader.dataset.pipeline
    assert cfg.val_dataloader == lists.val_dataloader
    assert [h['type'] for h in cfg.custom_hooks] == \
        ['MoProHook', 'ShardEpochHook']
    # the default: lists
    assert lists.train_dataloader.dataset.type == 'CustomImageList'
    assert lists.train_dataloader.sampler.type == 'ResumableSampler'


def test_webvision_configs_switch_with_their_settings():
    cfg = tool_config(
        V1, {
            'data_format': 'shards',
            'shard_root': '/shards',
            'train_dataloader.dataset.streams': 16,
            'train_dataloader.dataset.shard_url': 'pipe:cat /s/{shard}'
        })
    dataset = cfg.train_dataloader.dataset
    assert (dataset.type, dataset.num_classes, dataset.batch_size,
            dataset.streams, dataset.shard_url) == \
        ('ShardDataset', 1000, 32, 16, 'pipe:cat /s/{shard}')
    assert cfg.val_dataloader.dataset.type == 'WebVision'


@pytest.mark.parametrize('options, message', [
    (dict(data_format='shards'), 'data_format=shards needs shard_root'),
    (dict(data_format='tar', shard_root='x'), "data_format='tar': choose"),
    (dict(shard_root='x'), 'but data_format=lists'),
])
def test_switch_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        tool_config(CUSTOM, custom_options(**options))


def test_noise_cleaning_refuses_shards():
    cfg = tool_config(CUSTOM,
                      custom_options(data_format='shards', shard_root='x'))
    with pytest.raises(ConfigError, match='noise cleaning reads the image '
                       'lists'):
        build_cleaning_dataset(cfg)
