"""cRT (square-root sampler, frozen-encoder config) and low-resource
fine-tuning (ImageNet subsets, 1%/10% configs, V2 new classifier)."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS, MODELS

from conftest import (ROOT, make_webvision, tiny_mopro_options, tool_config,
                      write_image)
from mopro.apis import train_model
from mopro.datasets.samplers import SqrtBalancedSampler
from mopro.utils.checkpoint import CheckpointError, load_checkpoint

K = 4


class LabelledDataset:

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def get_gt_labels(self):
        return self.labels


def test_sqrt_sampler_frequencies():
    # class counts 400, 100, 25, 1 -> class mass sqrt: 20 : 10 : 5 : 1
    labels = np.repeat(np.arange(4), [400, 100, 25, 1])
    np.random.default_rng(0).shuffle(labels)
    ds = LabelledDataset(labels)
    sampler = SqrtBalancedSampler(ds, seed=3, num_samples=36000)
    assert len(sampler) == 36000
    drawn = np.array(list(sampler))
    freq = np.bincount(labels[drawn], minlength=4) / len(drawn)
    expected = np.array([20, 10, 5, 1]) / 36
    sigma = np.sqrt(expected * (1 - expected) / len(drawn))
    assert np.all(np.abs(freq - expected) < 4 * sigma), (freq, expected)
    # within a class, images are drawn uniformly: class 1's 100 images
    in_class = drawn[labels[drawn] == 1]
    counts = np.bincount(in_class, minlength=len(labels))[labels == 1]
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()
    # seeded per epoch: same epoch same draw, new epoch a new draw
    again = SqrtBalancedSampler(ds, seed=3, num_samples=36000)
    assert np.array_equal(np.array(list(again)), drawn)
    again.set_epoch(1)
    assert not np.array_equal(np.array(list(again)), drawn)


def test_sqrt_sampler_shards_across_ranks():
    # 75 samples, 2 ranks: 38 each; rank r takes draws r, r + 2, ...
    ds = LabelledDataset(np.repeat(np.arange(3), [50, 20, 5]))
    shards = []
    for rank in range(2):
        sampler = SqrtBalancedSampler(ds, seed=0)
        sampler.rank, sampler.world_size = rank, 2
        sampler.num_samples = -(-sampler.total // 2)
        sampler.set_epoch(4)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 38
    whole = sampler.draw(4)  # one seeded draw of the epoch, all ranks
    assert len(whole) == 76
    assert shards[0] == whole[0::2].tolist()
    assert shards[1] == whole[1::2].tolist()


def save_mopro_checkpoint(path, data_root, num_classes=K):
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'mopro_r50_webvision_v1.py'))
    cfg.merge_from_dict(tiny_mopro_options(data_root, '/tmp/unused',
                                           num_classes))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()},
               path)
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


def test_crt_trains_classifier_on_frozen_encoder(tmp_path):
    root = make_webvision(str(tmp_path / 'webvision'), num_classes=K)
    ckpt = str(tmp_path / 'mopro.pth')
    pretrained = save_mopro_checkpoint(ckpt, root)
    # a cleaned list: class 0 dominant, class 3 absent after cleaning
    cleaned = {f'google/q{c:04d}/{i:03d}.jpg': c
               for c in range(3) for i in range(4)}
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


def make_imagenet(root, wnids, per_class=4, val_per_class=2):
    names = []
    seed = 100
    for wnid in wnids:
        for i in range(per_class):
            name = f'{wnid}_{i}.JPEG'
            write_image(osp.join(root, 'train', wnid, name), seed)
            names.append(name)
            seed += 1
        for i in range(val_per_class):
            write_image(osp.join(root, 'val', wnid, f'v{i}.JPEG'), seed)
            seed += 1
    return names


def test_imagenet_subset(tmp_path):
    root = str(tmp_path / 'imagenet')
    names = make_imagenet(root, ['n02', 'n01', 'n03'], per_class=10)
    subset = str(tmp_path / '1percent.txt')
    with open(subset, 'w') as f:
        f.write('n03_4.JPEG\nn01_0.JPEG\n')
    ds = DATASETS.build(dict(type='ImageNetSubset', data_root=root,
                             subset_file=subset))
    assert [ds.get_data_info(i)['img_path'][len(root) + 1:]
            for i in range(2)] == ['train/n03/n03_4.JPEG',
                                   'train/n01/n01_0.JPEG']
    assert ds.get_gt_labels().tolist() == [2, 0]  # sorted wnid order
    frac = DATASETS.build(dict(type='ImageNetSubset', data_root=root,
                               subset_file=None, fraction=0.2, seed=1))
    again = DATASETS.build(dict(type='ImageNetSubset', data_root=root,
                                subset_file=None, fraction=0.2, seed=1))
    assert len(frac) == 6 == len(again)
    paths = [frac.get_data_info(i)['img_path'] for i in range(6)]
    assert paths == [again.get_data_info(i)['img_path'] for i in range(6)]
    assert len(names) == 30
    with open(subset, 'a') as f:
        f.write('n09_1.JPEG\n')
    with pytest.raises(FileNotFoundError, match=r'1percent.txt:3: n09_1'):
        DATASETS.build(dict(type='ImageNetSubset', data_root=root,
                            subset_file=subset)).full_init()


@pytest.fixture(scope='module')
def finetune_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('finetune')
    root = str(tmp / 'imagenet')
    names = make_imagenet(root, [f'n0{c}' for c in range(K)])
    with open(osp.join(root, '1percent.txt'), 'w') as f:
        f.write('\n'.join(names[::2]) + '\n')
    ckpt4 = str(tmp / 'mopro_v1.pth')
    ckpt5 = str(tmp / 'mopro_v2.pth')
    webvision = make_webvision(str(tmp / 'webvision'), num_classes=2,
                               per_class=2, val_per_class=1)
    return (root, ckpt4, save_mopro_checkpoint(ckpt4, webvision),
            ckpt5, save_mopro_checkpoint(ckpt5, webvision, num_classes=5))


def _finetune_options(root, ckpt, work):
    options = classifier_options(ckpt, work)
    options.update({
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.subset_file':
        osp.join(root, '1percent.txt'),
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.num_classes': K,
        'val_dataloader.dataset.pipeline.1.scale': 32,
        'val_dataloader.dataset.pipeline.2.crop_size': 32,
        # tiny steps: the trained weights stay close to the loaded ones
        'optim_wrapper.optimizer.lr': 1e-5,
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
    cfg = Config.fromfile(osp.join(ROOT, 'configs',
                                   'finetune_r50_imagenet_v2_10pct.py'))
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
