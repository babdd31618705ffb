"""The ``data_format`` switch of the WebVision and own-data configs."""
import os.path as osp

import pytest

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


def test_test_tool_over_shards_equals_lists(tmp_path, capsys, monkeypatch):
    """tools/test.py on the held-out split of a folder, from its list and
    from its shards (shard_indexes.val, 2 workers): every image scored
    once, alike, and the same metrics."""
    from mopro.datasets.folder_lists import folder_to_lists
    from helpers.commands import call_tool, tool_module
    from helpers.configs import untrained_checkpoint
    from helpers.data import write_image
    from helpers.shards import make_shards
    root = str(tmp_path / 'images')
    for label, name in enumerate(['bird', 'cat', 'dog']):
        for i in range(10):
            write_image(osp.join(root, name, f'{i}.jpg'), 10 * label + i)
    folder_to_lists(root, val_fraction=0.5, seed=0)
    shards = make_shards(root, str(tmp_path / 'shards'), 'folder', 3,
                         split='val')
    small = {
        'model.backbone.depth': 18,
        'model.feat_dim': 512,
        'model.proj_hidden_dim': 64,
        'model.embed_dim': 16,
        'model.queue_len': 32,
        'val_dataloader.num_workers': 2,
        'val_dataloader.batch_size': 4,
        'val_dataloader.dataset.pipeline.1.scale': 32,
        'val_dataloader.dataset.pipeline.2.crop_size': 32,
        'visualizer.vis_backends': None,
    }
    checkpoint = untrained_checkpoint(CUSTOM,
                                      dict(small, **{'model.num_classes': 3}),
                                      str(tmp_path / 'untrained.pth'))
    from mmpretrain.evaluation import Accuracy
    process = Accuracy.process
    scored = []

    def recording(self, data_batch, data_samples):
        scored.extend((int(s['gt_label']), s['pred_score'].tolist())
                      for s in data_samples)
        return process(self, data_batch, data_samples)

    monkeypatch.setattr(Accuracy, 'process', recording)
    metrics, scores = {}, {}
    for source, extra in (('lists', []), ('shards', [
            'data_format=shards', f'shard_root={shards}',
            'shard_indexes.val=val-index.json'
    ])):
        scored.clear()
        options = [f'{k}={v}' for k, v in small.items()
                   ] + [f'data_root={root}', 'num_classes=3', *extra]
        result = call_tool(
            tool_module('test'), [
                CUSTOM, checkpoint, '--work-dir',
                str(tmp_path / source), '--cfg-options', *options
            ], capsys, monkeypatch)
        assert result.code == 0, result.stderr
        metrics[source] = result.value
        scores[source] = sorted(scored)
    # the 15 held-out images, each scored alike (in another order)
    assert len(scores['lists']) == 15
    assert scores['shards'] == scores['lists']
    assert metrics['shards'] == metrics['lists']
    assert set(metrics['lists']) == {'val/accuracy/top1'}
