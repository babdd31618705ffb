"""The cRT config (a classifier retrained on the frozen encoder with the
square-root sampler) and low-resource fine-tuning (1%/10% configs, V2 new
classifier) through ``mopro.apis.train_model``."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mopro.apis import train_model
from mopro.checkpoint import CheckpointError, load_checkpoint
from helpers import ROOT
from helpers.configs import tiny_mopro_options, tool_config
from helpers.data import make_imagenet, make_webvision

K = 4


def save_mopro_checkpoint(path, data_root, num_classes=K):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'))
    cfg.merge_from_dict(
        tiny_mopro_options(data_root, '/tmp/unused', num_classes))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, path)
    return model.state_dict()


def classifier_options(ckpt, work_dir, num_classes=K):
    return {
        'model.init_cfg.checkpoint': ckpt,
        'model.backbone.depth': 18,
        'model.head.in_channels': 512,
        'model.head.num_classes': num_classes,
        'model.head.topk': (1, ),
        'model.data_preprocessor.num_classes': num_classes,
        'train_dataloader.batch_size': 4,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.pipeline.1.scale': 32,
        'val_dataloader.batch_size': 4,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'val_evaluator.topk': (1, ),
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'work_dir': work_dir,
    }


def _train(config, options):
    """tools/train.py's work (mopro.apis.train_model) on a config of
    configs/ with ``options``."""
    train_model(tool_config(osp.join(ROOT, 'configs', config), options))


@pytest.mark.slow
def test_crt_trains_classifier_on_frozen_encoder(tmp_path):
    root = make_webvision(str(tmp_path / 'webvision'), num_classes=K)
    ckpt = str(tmp_path / 'mopro.pth')
    pretrained = save_mopro_checkpoint(ckpt, root)
    # a cleaned list: class 0 dominant, class 3 absent after cleaning
    cleaned = {
        f'google/q{c:04d}/{i:03d}.jpg': c
        for c in range(3)
        for i in range(4)
    }
    cleaned.update({f'flickr/q0000/{i:03d}.jpg': 0 for i in range(4)})
    label_file = str(tmp_path / 'pseudo_label.json')
    with open(label_file, 'w') as f:
        json.dump(cleaned, f)
    work = str(tmp_path / 'crt')
    options = classifier_options(ckpt, work)
    options.update({
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.pseudo_label_file': label_file,
        'train_dataloader.dataset.num_classes': K,
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.num_classes': K,
        'val_dataloader.dataset.pipeline.1.scale': 32,
        'val_dataloader.dataset.pipeline.2.crop_size': 32,
    })
    _train('crt_r50_webvision_v1.py', options)
    state = load_checkpoint(osp.join(work, 'epoch_1.pth'))['state_dict']
    # the encoder (weights and BatchNorm statistics) is untouched ...
    for key in ('backbone.conv1.weight', 'backbone.layer4.1.bn2.weight',
                'backbone.layer4.1.bn2.running_mean'):
        torch.testing.assert_close(state[key], pretrained[key])
    # ... the classifier started from MoPro's and was trained
    assert state['head.fc.weight'].shape == (K, 512)
    assert not torch.equal(state['head.fc.weight'],
                           pretrained['classifier.weight'])
    assert (state['head.fc.weight'] -
            pretrained['classifier.weight']).abs().max() < 0.5


@pytest.fixture(scope='module')
def finetune_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('finetune')
    root = str(tmp / 'imagenet')
    names = make_imagenet(root, [f'n0{c}' for c in range(K)])
    with open(osp.join(root, '1percent.txt'), 'w') as f:
        f.write('\n'.join(names[::2]) + '\n')
    ckpt4 = str(tmp / 'mopro_v1.pth')
    ckpt5 = str(tmp / 'mopro_v2.pth')
    webvision = make_webvision(
        str(tmp / 'webvision'), num_classes=2, per_class=2, val_per_class=1)
    return (root, ckpt4, save_mopro_checkpoint(ckpt4, webvision), ckpt5,
            save_mopro_checkpoint(ckpt5, webvision, num_classes=5))


def _finetune_options(root, ckpt, work):
    options = classifier_options(ckpt, work)
    options.update({
        'train_dataloader.dataset.data_root':
        root,
        'train_dataloader.dataset.subset_file':
        osp.join(root, '1percent.txt'),
        'val_dataloader.dataset.data_root':
        root,
        'val_dataloader.dataset.num_classes':
        K,
        'val_dataloader.dataset.pipeline.1.scale':
        32,
        'val_dataloader.dataset.pipeline.2.crop_size':
        32,
        # tiny steps: the trained weights stay close to the loaded ones
        'optim_wrapper.optimizer.lr':
        1e-5,
    })
    return options


def test_finetune_v1_keeps_classifier(finetune_setup, tmp_path):
    root, ckpt4, pretrained, _, _ = finetune_setup
    work = str(tmp_path / 'ft')
    _train('finetune_r50_imagenet_1pct.py',
           _finetune_options(root, ckpt4, work))
    state = load_checkpoint(osp.join(work, 'epoch_1.pth'))['state_dict']
    # whole model fine-tuned (2 tiny steps): close to, not equal to, the
    # pretrained weights, classifier included
    for key, src in (('backbone.conv1.weight', 'backbone.conv1.weight'),
                     ('head.fc.weight', 'classifier.weight')):
        diff = (state[key] - pretrained[src]).abs().max()
        assert 0 < diff < 1e-3, key


def test_finetune_v2_new_classifier(finetune_setup, tmp_path):
    # a 5-class (V2-like) checkpoint: encoder loaded, new 4-way classifier
    root, _, _, ckpt5, pretrained5 = finetune_setup
    work = str(tmp_path / 'ft2')
    options = _finetune_options(root, ckpt5, work)
    _train('finetune_r50_imagenet_v2_1pct.py', options)
    state = load_checkpoint(osp.join(work, 'epoch_1.pth'))['state_dict']
    assert state['head.fc.weight'].shape == (K, 512)
    diff = (state['backbone.conv1.weight'] -
            pretrained5['backbone.conv1.weight']).abs().max()
    assert 0 < diff < 1e-3
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'finetune_r50_imagenet_v2_10pct.py'))
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.param_scheduler[0].milestones == [20, 40]
    assert cfg.train_dataloader.dataset.subset_file.endswith('10percent.txt')


def test_class_count_mismatch_is_one_line(finetune_setup, tmp_path):
    root, _, _, ckpt5, _ = finetune_setup
    options = _finetune_options(root, ckpt5, str(tmp_path / 'bad'))
    with pytest.raises(CheckpointError) as info:  # run_tool: one line
        _train('finetune_r50_imagenet_1pct.py', options)
    message = str(info.value)
    assert '\n' not in message
    assert 'classifier.weight has shape (5, 512)' in message
    assert 'head.fc.weight with (4, 512)' in message
