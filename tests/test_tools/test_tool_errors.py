"""Bad input and faults through the tools as users run them: a process per
command (run side by side), exit status 1, one ``error: ...`` line on
stderr naming the file or key, and no output left behind."""
import os.path as osp

import numpy as np
import pytest
import torch
import torchvision
from mmengine.config import Config
from mmpretrain.registry import MODELS

from helpers import ROOT
from helpers.commands import run_tools
from helpers.configs import tiny_mopro_options
from helpers.data import make_webvision

K = 4


def _write_nan_features(path):
    """Cached features with one NaN among the test features."""
    cls = np.repeat(np.arange(K), 2)
    feats = np.eye(8, dtype=np.float32)[cls]
    test = feats.copy()
    test[5, 2] = np.nan
    np.savez(path, dataset=np.array('places205'), train_feats=feats,
             train_index=np.arange(len(cls)), train_labels=cls,
             test_feats=test, test_labels=cls)
    return str(path)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Every command's inputs, the commands, and their results."""
    tmp = tmp_path_factory.mktemp('tools')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    work = str(tmp / 'work')
    # a tiny MoPro checkpoint of the v1 config shrunk to ResNet-18
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'))
    options = tiny_mopro_options(root, work, K)
    cfg.merge_from_dict(options)
    mopro = MODELS.build(cfg.model)
    ckpt = str(tmp / 'mopro.pth')
    torch.save({'meta': {}, 'state_dict': mopro.state_dict()}, ckpt)
    # ... the same in the released format, and a diverged one
    released = str(tmp / 'released.pth.tar')
    torch.save(
        {
            'epoch': 1,
            'state_dict': {
                f'module.encoder_q.{k}': v
                for k, v in mopro.backbone.state_dict().items()
            }
        }, released)
    diverged = dict(mopro.state_dict())
    diverged['backbone.layer4.1.conv2.weight'] = torch.full_like(
        diverged['backbone.layer4.1.conv2.weight'], float('nan'))
    nan_ckpt = str(tmp / 'diverged.pth')
    torch.save({'meta': {}, 'state_dict': diverged}, nan_ckpt)
    # a torchvision ResNet-18 state dict
    tv = str(tmp / 'resnet18.pth')
    torch.save(torchvision.models.resnet18().state_dict(), tv)
    blocker = str(tmp / 'a_file')
    open(blocker, 'w').close()
    inputs = dict(root=root, ckpt=ckpt, released=released, nan_ckpt=nan_ckpt,
                  tv=tv, blocker=blocker, tmp=str(tmp),
                  released_bytes=open(released, 'rb').read(),
                  nan_features=_write_nan_features(tmp / 'nan.npz'))
    ce_options = [
        f'model.head.num_classes={K}',
        f'model.data_preprocessor.num_classes={K}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.num_classes={K}'
    ]
    commands = {
        'convert_onto_input':
        ['model_converters/convert_from_original', released, released],
        'convert_nan': ['convert_to_d2', nan_ckpt, f'{tmp}/nan.pkl'],
        'svm_nan_features': [
            'svm_eval', '--dataset', 'places205', '--features',
            inputs['nan_features'], '--work-dir', f'{tmp}/svm_nan'
        ],
        'cleaning_unwritable': [
            'noise_cleaning',
            osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'), ckpt,
            '--out', f'{blocker}/pseudo_label.json', '--num-workers', '0',
            '--work-dir', f'{tmp}/cleaning', '--cfg-options',
            *[f'{k}={v}' for k, v in options.items() if k != 'work_dir']
        ],
        'test_torchvision': [
            'test',
            osp.join(ROOT, 'configs', 'ce_r18_demo.py'), tv, '--work-dir',
            f'{tmp}/test_tv', '--cfg-options', *ce_options
        ],
    }
    results = dict(zip(commands, run_tools(list(commands.values()))))
    return inputs, results


@pytest.mark.slow
def test_converter_never_overwrites_its_input(runs):
    inputs, results = runs
    path = inputs['released']
    assert results['convert_onto_input'].error == (
        f'error: {path}: the output is the input {path}; write it to another '
        'path')
    with open(path, 'rb') as f:
        assert f.read() == inputs['released_bytes']


@pytest.mark.slow
def test_converter_refuses_non_finite_weights(runs):
    inputs, results = runs
    assert results['convert_nan'].error == (
        f'error: {inputs["nan_ckpt"]}: backbone.layer4.1.conv2.weight holds '
        '2359296 non-finite values (NaN or inf) of 2359296: the weights of a '
        'diverged run')
    assert not osp.exists(osp.join(inputs['tmp'], 'nan.pkl'))


@pytest.mark.slow
def test_svm_refuses_nan_features(runs):
    inputs, results = runs
    assert results['svm_nan_features'].error == (
        f'error: {inputs["nan_features"]}: test_feats hold 1 non-finite '
        'values (NaN or inf) in 1 of 8 rows')
    assert not osp.exists(osp.join(inputs['tmp'], 'svm_nan'))


@pytest.mark.slow
def test_noise_cleaning_checks_its_output_first(runs):
    inputs, results = runs
    blocker = inputs['blocker']
    assert results['cleaning_unwritable'].error == (
        f'error: {blocker}/pseudo_label.json: cannot write the --out file: '
        f'{blocker} is a file, not a folder')
    assert not osp.exists(osp.join(inputs['tmp'], 'cleaning'))


@pytest.mark.slow
def test_test_tool_refuses_a_torchvision_state_dict(runs):
    # it used to load non-strictly and print the top-1 of random weights
    inputs, results = runs
    assert results['test_torchvision'].error == (
        f'error: {inputs["tv"]}: expected a mopro checkpoint, got a bare '
        'ResNet state dict (conv1.weight at the top level, as torchvision '
        'writes it), not a checkpoint of this project or of the released '
        'MoPro code')
