"""Strict checkpoint loading (``mopro.checkpoint.load_model_weights``)
for MoPro and the classifiers, and ``tools/test.py``'s work
(``mopro.apis.evaluate_checkpoint``) on a config without a test set
(``tests/test_tools/test_tool_errors.py`` runs the tools as processes)."""
import os.path as osp

import numpy as np
import pytest
import torch
import torchvision
from mmpretrain.registry import MODELS

from mopro.apis import evaluate_checkpoint
from mopro.checkpoint import CheckpointError, load_model_weights
from helpers import ROOT
from helpers.commands import call_tool
from helpers.configs import tiny_mopro_cfg, tool_config
from helpers.data import make_webvision
from helpers.log_records import log_messages

K = 4


def classifier(depth=18, num_classes=K):
    return MODELS.build(
        dict(
            type='CompilableImageClassifier',
            backbone=dict(type='ResNet',
                          depth=depth), neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=512 if depth < 50 else 2048)))


def mopro(**overrides):
    return MODELS.build(tiny_mopro_cfg(**{'num_classes': K, **overrides}))


def save(path, model_or_state):
    state = model_or_state if isinstance(model_or_state, dict) else \
        model_or_state.state_dict()
    torch.save({'meta': {}, 'state_dict': state}, path)
    return str(path)


@pytest.fixture(scope='module')
def r50_checkpoint(tmp_path_factory):
    """A ResNet-50 MoPro-format checkpoint (encoder and classifier)."""
    backbone = MODELS.build(dict(type='ResNet', depth=50)).state_dict()
    state = {f'backbone.{k}': v for k, v in backbone.items()}
    state.update({
        'classifier.weight': torch.zeros(K, 2048),
        'classifier.bias': torch.zeros(K)
    })
    return save(tmp_path_factory.mktemp('r50') / 'r50.pth', state)


def test_depth_mismatch_names_the_depths(r50_checkpoint):
    with pytest.raises(CheckpointError) as err:
        load_model_weights(mopro(), r50_checkpoint)
    assert str(err.value) == (
        f'{r50_checkpoint}: checkpoint is a ResNet-50 '
        '(backbone.layer1.0.conv3 present), the config builds ResNet-18: '
        'set model.backbone.depth=50 model.feat_dim=2048')
    # the encoder alone (feature extraction) says the same
    with pytest.raises(CheckpointError, match='checkpoint is a ResNet-50'):
        load_model_weights(classifier(), r50_checkpoint, submodule='backbone')


def test_class_count_mismatch_names_the_key(tmp_path):
    path = save(tmp_path / 'five.pth', mopro(num_classes=5))
    with pytest.raises(
            CheckpointError, match=r'checkpoint has 5 classes '
            r'\(classifier.weight \(5, 512\)\) but the config '
            r'builds 4 \(\(4, 512\)\); set model.num_classes=5'):
        load_model_weights(mopro(), path)
    path = save(tmp_path / 'ce.pth', classifier(num_classes=5))
    with pytest.raises(CheckpointError, match='set model.head.num_classes=5'):
        load_model_weights(classifier(), path)


def test_other_formats_say_what_they_are(tmp_path):
    tv = str(tmp_path / 'resnet18.pth')
    torch.save(torchvision.models.resnet18().state_dict(), tv)
    with pytest.raises(
            CheckpointError, match='got a bare ResNet state dict '
            r'\(conv1.weight at the top level'):
        load_model_weights(classifier(), tv)
    ours = save(tmp_path / 'mopro.pth', mopro())
    with pytest.raises(
            CheckpointError, match='it is a MoPro checkpoint: '
            'evaluate it with a MoPro config'):
        load_model_weights(classifier(), ours)
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(np.random.default_rng(1).bytes(1000))
    with pytest.raises(CheckpointError) as err:
        load_model_weights(classifier(), str(noise))
    assert 'not a checkpoint' in str(err.value)
    assert 'trust' not in str(err.value)


def test_non_finite_weights_are_refused(tmp_path):
    model = classifier()
    state = model.state_dict()
    state['head.fc.weight'][1, 7] = float('nan')
    path = save(tmp_path / 'nan.pth', state)
    with pytest.raises(
            CheckpointError, match=r'head.fc.weight holds 1 '
            r'non-finite values \(NaN or inf\) of 2048'):
        load_model_weights(classifier(), path)


def test_loose_loading_is_logged(tmp_path):
    source = classifier()
    path = save(tmp_path / 'ce.pth', {
        k: v
        for k, v in source.state_dict().items() if not k.startswith('head.')
    })
    target = classifier()
    with pytest.raises(CheckpointError, match='2 weights missing'):
        load_model_weights(target, path)
    with log_messages() as logged:
        load_model_weights(target, path, strict=False)
    assert any('loaded non-strictly into CompilableImageClassifier: 2 of '
               "its weights keep their initialisation (e.g. "
               "['head.fc.weight', 'head.fc.bias'])" in m for m in logged)
    torch.testing.assert_close(target.backbone.conv1.weight,
                               source.backbone.conv1.weight)


# ----------------------------------------------------------------------
# tools/test.py
DEMO = osp.join(ROOT, 'configs', 'ce_r18_demo.py')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """A 4-class dataset in the demo's layout, the demo CE config's options
    for it, and a checkpoint of that model."""
    tmp = tmp_path_factory.mktemp('demo')
    root = make_webvision(str(tmp / 'data'), num_classes=K, size=32)
    options = {
        'model.head.num_classes': K,
        'model.data_preprocessor.num_classes': K,
        'val_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.num_classes': K,
    }
    torch.manual_seed(0)
    ckpt = save(tmp / 'ce.pth', classifier())
    return root, options, ckpt, tmp


def test_config_without_test_set_evaluates_val(demo, tmp_path, capsys,
                                               monkeypatch):
    _, options, ckpt, _ = demo

    def evaluate(sets=None):
        cfg = tool_config(DEMO, options, work_dir=str(tmp_path / 'work'))
        return call_tool(lambda: evaluate_checkpoint(cfg, ckpt, sets), None,
                         capsys, monkeypatch)

    result = evaluate()
    assert result.code == 0, result.stderr
    assert set(result.value) == {'val/accuracy/top1'}
    assert 0 <= result.value['val/accuracy/top1'] <= 100
    asked = evaluate(['test'])
    assert asked.error == (f'error: {DEMO}: --sets test: the config has no '
                           'test_dataloader (it has: val)')
