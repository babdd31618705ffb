"""What the tools say about checkpoints, as ``tools/train.py`` (in this
process, ``helpers.commands.call_tool``) meets them:

- ``--trust-checkpoint`` lets ``--resume`` and ``load_from`` unpickle
  objects outside torch's weights-only allow-list (a checkpoint re-saved
  with an object of its own in its meta); without it, one line says so.
  The flag did not exist (exit 2), so such a checkpoint could not be
  resumed at all;
- a checkpoint cut short is named as truncated (it was "not a
  checkpoint");
- ``--resume`` on a file without the ``message_hub`` that mmengine's
  resume reads is one line (it was a ``KeyError`` traceback);
- the architecture and class-count messages list every key to change,
  and setting those keys, as the message says, loads the checkpoint (the
  depth alone used to end in a second error, about the classifier).
"""
import argparse
import os.path as osp
import re

import pytest
import torch
from mmengine.config import DictAction
from mmpretrain.registry import MODELS

from mopro.checkpoint import (CheckpointError, load_checkpoint,
                              load_model_weights)
from helpers import ROOT
from helpers.commands import call_tool, tool_module
from helpers.configs import tiny_mopro_options, tool_config
from helpers.data import make_webvision

K = 4
V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
CE = osp.join(ROOT, 'configs', 'ce_r18_demo.py')


def _tiny(root: str, work, **extra) -> dict:
    options = tiny_mopro_options(root, str(work), K)
    options.update({
        'visualizer.vis_backends': None,
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None,
        'train_cfg.val_interval': 100,
    })
    options.update(extra)
    return options


def _train(root, work, capsys, monkeypatch, *flags, **extra):
    options = _tiny(root, work, **{'train_cfg.max_epochs': 1, **extra})
    return call_tool(
        tool_module('train'), [
            V1, '--cfg-options', *[f'{k}={v}'
                                   for k, v in options.items()], *flags
        ], capsys, monkeypatch)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A data root and one epoch's checkpoint of the tiny v1 run."""
    tmp = tmp_path_factory.mktemp('run')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    cfg = tool_config(V1,
                      _tiny(root, tmp / 'work', **{'train_cfg.max_epochs': 1}))
    from mopro.apis import train_model
    train_model(cfg)
    return root, str(tmp / 'work' / 'epoch_1.pth')


@pytest.fixture
def resaved(run, tmp_path) -> str:
    """The checkpoint as ``torch.save`` re-saves it with an object of the
    user's own in its meta."""
    ckpt = torch.load(run[1], weights_only=False)
    ckpt['meta']['note'] = argparse.Namespace(reason='moved to /scratch')
    path = str(tmp_path / 'resaved.pth')
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_trust_checkpoint_loads_what_the_allow_list_refuses(
        run, resaved, tmp_path, capsys, monkeypatch, how):
    root, _ = run
    flags = ['--resume', resaved] if how == 'resume' else []
    extra = {
        'train_cfg.max_epochs': 2
    } if how == 'resume' else {
        'load_from': resaved
    }
    refused = _train(root, tmp_path / 'refused', capsys, monkeypatch, *flags,
                     **extra)
    assert refused.error == (
        f'error: {resaved}: holds objects outside the weights-only '
        'allow-list (argparse.Namespace); pass --trust-checkpoint only if '
        'you trust its source')
    work = tmp_path / 'trusted'
    trusted = _train(root, work, capsys, monkeypatch, *flags,
                     '--trust-checkpoint', **extra)
    assert trusted.code == 0, trusted.stderr[-3000:]
    last = 'epoch_2.pth' if how == 'resume' else 'epoch_1.pth'
    assert load_checkpoint(str(work / last))['meta']['epoch'] == int(last[6])


def test_a_checkpoint_cut_short_is_named_truncated(run, tmp_path, capsys,
                                                   monkeypatch):
    data = open(run[1], 'rb').read()
    cut = tmp_path / 'epoch_1.pth'
    cut.write_bytes(data[:len(data) // 2])
    result = _train(run[0], tmp_path / 'work', capsys, monkeypatch, '--resume',
                    cut)
    assert result.error == (
        f'error: {cut}: truncated or corrupt checkpoint (a zip archive '
        'without its end, as a copy cut short leaves it)')


def test_resume_without_message_hub_is_one_line(run, tmp_path, capsys,
                                                monkeypatch):
    ckpt = torch.load(run[1], weights_only=False)
    path = tmp_path / 'weights_and_meta.pth'
    torch.save(dict(meta=ckpt['meta'], state_dict=ckpt['state_dict']), path)
    result = _train(run[0], tmp_path / 'work', capsys, monkeypatch, '--resume',
                    path)
    assert result.error == (
        f'error: {path}: not a checkpoint of a training run (no '
        'message_hub): --resume continues a run of tools/train.py; to start '
        f'from its weights pass --cfg-options load_from={path}')
    assert not (tmp_path / 'work').exists()


def _advice(message: str) -> dict:
    """The ``KEY=VALUE`` settings after ``set`` in a message, as
    ``--cfg-options`` takes them."""
    advice = message.split(': set ' if ': set ' in message else '; set ')[-1]
    return {
        key: DictAction._parse_iterable(value)
        for key, value in (item.split('=')
                           for item in re.findall(r'[\w.]+=\d+', advice))
    }


CASES = {
    # config, options of the model the checkpoint is of, the message
    'mopro_depth': (V1, {
        'model.backbone.depth': 50,
        'model.feat_dim': 2048
    }, 'checkpoint is a ResNet-50 (backbone.layer1.0.conv3 present), the '
                    'config builds ResNet-18: set model.backbone.depth=50 '
                    'model.feat_dim=2048'),
    'classifier_depth':
    (CE, {
        'model.backbone.depth': 50,
        'model.head.in_channels': 2048
    }, 'checkpoint is a ResNet-50 (backbone.layer1.0.conv3 present), the '
     'config builds ResNet-18: set model.backbone.depth=50 '
     'model.head.in_channels=2048'),
    'mopro_classes':
    (V1, {
        'num_classes': 5
    }, 'checkpoint has 5 classes (classifier.weight (5, 512)) but the '
     'config builds 4 ((4, 512)); set model.num_classes=5 and each '
     "dataloader's dataset.num_classes=5 (--cfg-options num_classes=5 "
     'sets them all where the config has that switch)'),
    'classifier_classes':
    (CE, {
        'num_classes': 5
    }, 'checkpoint has 5 classes (head.fc.weight (5, 512)) but the config '
     'builds 4 ((4, 512)); set model.head.num_classes=5 '
     "model.data_preprocessor.num_classes=5 and each dataloader's "
     'dataset.num_classes=5 (--cfg-options num_classes=5 sets them all '
     'where the config has that switch)'),
}


def _model(config: str, root: str, **options):
    """The model ``config`` builds as the tools load it, for 4 classes of
    ``root``, with ``options``."""
    base = {'num_classes': K, 'data_root': root, 'val_evaluator.topk': [1]}
    if config == V1:
        base.update({  # the class count by the switch
            k: v
            for k, v in _tiny(root, '.').items()
            if k.startswith('model.') and k != 'model.num_classes'
        })
        base.update({
            'test_dataloader': None,
            'test_evaluator': None,
            'test_cfg': None
        })
    base.update(options)
    return MODELS.build(tool_config(config, base).model)


@pytest.mark.parametrize('case', list(CASES))
def test_a_mismatch_names_every_key_to_set(run, tmp_path, case):
    """The message lists every key; the config with those set (the class
    count by its switch, as the message says) loads the checkpoint."""
    config, theirs, message = CASES[case]
    root = run[0]
    path = str(tmp_path / 'other.pth')
    torch.save(
        dict(meta={}, state_dict=_model(config, root, **theirs).state_dict()),
        path)
    with pytest.raises(CheckpointError) as info:
        load_model_weights(_model(config, root), path)
    assert str(info.value) == f'{path}: {message}'
    advice = ({'num_classes': 5} if 'classes' in case else _advice(message))
    load_model_weights(_model(config, root, **advice), path)
