"""tools/convert_to_d2.py and mopro.transfer.d2_convert (no detectron2
needed): names and values against a hand-written Detectron2 mapping, both
checkpoint formats, summary, errors and atomic output. The command line
runs as users run it (a process); the rest calls
:func:`~mopro.transfer.d2_convert.convert_to_detectron2` inside the tools'
error boundary."""
import argparse
import os
import pickle
import shutil
from collections import namedtuple
from functools import partial

import numpy as np
import pytest
import torch

import mopro  # noqa: F401
from mopro.transfer import d2_convert
from mopro.transfer.d2_convert import convert_to_detectron2, detectron2_name
from helpers.commands import call_tool, run_tools

R50_BLOCKS = (3, 4, 6, 3)
BN = ('weight', 'bias', 'running_mean', 'running_var')


def expected_mapping():
    """Detectron2 name -> torchvision ResNet-50 name, written out by hand
    from the layout the released ``convert-pretrain-to-detectron2.py``
    produces (minus ``num_batches_tracked``)."""
    mapping = {'stem.conv1.weight': 'conv1.weight'}
    mapping.update({f'stem.conv1.norm.{p}': f'bn1.{p}' for p in BN})
    for stage, blocks in enumerate(R50_BLOCKS, start=1):
        for block in range(blocks):
            d2 = f'res{stage + 1}.{block}'
            tv = f'layer{stage}.{block}'
            for conv in (1, 2, 3):
                mapping[f'{d2}.conv{conv}.weight'] = f'{tv}.conv{conv}.weight'
                for p in BN:
                    mapping[f'{d2}.conv{conv}.norm.{p}'] = f'{tv}.bn{conv}.{p}'
            if block == 0:
                mapping[f'{d2}.shortcut.weight'] = f'{tv}.downsample.0.weight'
                for p in BN:
                    mapping[f'{d2}.shortcut.norm.{p}'] = \
                        f'{tv}.downsample.1.{p}'
    return mapping


def random_resnet50_state():
    """torchvision-named ResNet-50 state with random values (also in the BN
    statistics, so a wrong pairing cannot go unnoticed)."""
    from mmpretrain.registry import MODELS
    state = MODELS.build(dict(type='ResNet', depth=50)).state_dict()
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, value in state.items():
        if name.endswith('num_batches_tracked'):
            out[name] = torch.tensor(7)
        elif name.endswith('running_var'):
            out[name] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[name] = torch.randn(value.shape, generator=gen)
    return out


@pytest.fixture(scope='module')
def encoder():
    return random_resnet50_state()


def released_checkpoint(encoder, path):
    state = {}
    for prefix in ('module.encoder_q.', 'module.encoder_k.'):
        state.update({prefix + k: v.clone() for k, v in encoder.items()})
        state.update({
            prefix + 'classifier.weight': torch.randn(5, 2048),
            prefix + 'classifier.bias': torch.randn(5),
            prefix + 'fc1.weight': torch.randn(16, 2048),
            prefix + 'fc1.bias': torch.randn(16),
            prefix + 'fc2.weight': torch.randn(8, 16),
            prefix + 'fc2.bias': torch.randn(8),
        })
    state.update({
        'module.queue': torch.randn(8, 32),
        'module.queue_ptr': torch.zeros(1, dtype=torch.long),
        'module.prototypes': torch.randn(5, 8),
    })
    torch.save(
        {
            'epoch': 90,
            'arch': 'resnet50',
            'state_dict': state,
            'optimizer': {}
        }, path)
    return path


def mopro_checkpoint(encoder, path):
    state = {'backbone.' + k: v for k, v in encoder.items()}
    state.update({
        'momentum_backbone.' + k: v.clone()
        for k, v in encoder.items()
    })
    state.update({
        'classifier.weight': torch.randn(5, 2048),
        'classifier.bias': torch.randn(5),
        'projector.0.weight': torch.randn(16, 2048),
        'queue': torch.randn(8, 32),
        'queue_ptr': torch.zeros(1, dtype=torch.long),
        'prototypes': torch.randn(5, 8),
    })
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


def read_pkl(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def assert_matches_mapping(model, encoder):
    mapping = expected_mapping()
    assert sorted(model) == sorted(mapping)
    for d2_name, tv_name in mapping.items():
        value = model[d2_name]
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, encoder[tv_name].numpy())


@pytest.mark.slow
def test_released_checkpoint_names_and_values(tmp_path, encoder):
    src = released_checkpoint(encoder, str(tmp_path / 'released.pth.tar'))
    out = tmp_path / 'mopro.pkl'
    (result, ) = run_tools([['convert_to_d2', src, out]])
    assert result.code == 0, result.stderr
    obj = read_pkl(out)
    assert set(obj) == {'model', '__author__', 'matching_heuristics'}
    assert obj['__author__'] == 'MoPro'
    assert obj['matching_heuristics'] is True
    assert len(obj['model']) == 265
    assert_matches_mapping(obj['model'], encoder)
    printed = result.value
    assert 'converted 265 encoder tensors' in printed
    assert '53  conv weights' in printed
    assert '106  BN running statistics' in printed
    assert '53  BN num_batches_tracked' in printed
    assert '318  momentum encoder' in printed  # 265 + 53 counters
    assert '2  queue and queue pointer' in printed
    assert printed.count('\n') < 20  # a summary, not one line per key
    # the overrides that load the output, as one copyable last line
    assert printed.splitlines()[-2:] == [
        f'wrote {out}, ResNet-50; Detectron2 overrides for '
        'tools/train_d2.py:', f'MODEL.WEIGHTS {out} MODEL.RESNETS.DEPTH 50'
    ]


@pytest.mark.slow
def test_resnet18_output_names_its_depth_and_channels(tmp_path):
    from mmpretrain.registry import MODELS
    state = MODELS.build(dict(type='ResNet', depth=18)).state_dict()
    src = mopro_checkpoint(state, str(tmp_path / 'r18.pth'))
    out = tmp_path / 'my weights' / 'r18.pkl'
    (result, ) = run_tools([['convert_to_d2', src, out]])
    assert result.code == 0, result.stderr
    assert result.value.splitlines()[-2:] == [
        f'wrote {out}, ResNet-18; Detectron2 overrides for '
        'tools/train_d2.py:', f"MODEL.WEIGHTS '{out}' MODEL.RESNETS.DEPTH 18 "
        'MODEL.RESNETS.RES2_OUT_CHANNELS 64'
    ]


def test_project_checkpoint_gives_same_output(tmp_path, encoder):
    src = mopro_checkpoint(encoder, str(tmp_path / 'epoch_1.pth'))
    out = tmp_path / 'mopro.pkl'
    convert_to_detectron2(src, str(out))
    assert_matches_mapping(read_pkl(out)['model'], encoder)


@pytest.mark.parametrize('name,expected', [
    ('conv1.weight', 'stem.conv1.weight'),
    ('bn1.running_var', 'stem.conv1.norm.running_var'),
    ('layer1.0.downsample.0.weight', 'res2.0.shortcut.weight'),
    ('layer4.2.bn3.bias', 'res5.2.conv3.norm.bias'),
    ('layer3.5.conv2.weight', 'res4.5.conv2.weight'),
])
def test_detectron2_name(name, expected):
    assert detectron2_name(name) == expected


@pytest.mark.parametrize('name', [
    'fc.weight', 'stem.0.weight', 'layer5.0.conv1.weight',
    'layer1.0.downsample.0.bias', 'layer1.0.bn1.scale'
])
def test_detectron2_name_rejects_non_resnet_tensors(name):
    with pytest.raises(KeyError):
        detectron2_name(name)


@pytest.fixture
def run_error(capsys, monkeypatch):
    """The one ``error: ...`` line (exit status 1) of the tool's work for
    its arguments ``[checkpoint, output]``, inside its error boundary."""
    return lambda args: call_tool(
        partial(convert_to_detectron2, *map(str, args)), None, capsys,
        monkeypatch).error


def test_missing_input(tmp_path, run_error):
    out = tmp_path / 'out.pkl'
    message = run_error([str(tmp_path / 'nope.pth'), str(out)])
    assert 'nope.pth: no such checkpoint file' in message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    'content,reason',
    [
        ('text', ''),  # wording is load_checkpoint's
        ('list', 'expected a dict checkpoint'),
    ])
def test_not_a_checkpoint(tmp_path, content, reason, run_error):
    src = tmp_path / 'notes.pth'
    if content == 'text':
        src.write_text('this is not a checkpoint\n')
    else:
        torch.save([1, 2, 3], src)
    message = run_error([str(src), str(tmp_path / 'out.pkl')])
    assert 'notes.pth' in message and reason in message
    assert os.listdir(tmp_path) == ['notes.pth']


def test_unknown_format(tmp_path, run_error):
    src = tmp_path / 'other.pth'
    torch.save({'state_dict': {'encoder.conv1.weight': torch.zeros(1)}}, src)
    message = run_error([str(src), str(tmp_path / 'out.pkl')])
    assert 'other.pth' in message and 'neither' in message
    assert os.listdir(tmp_path) == ['other.pth']


def test_non_resnet_backbone(tmp_path, encoder, run_error):
    state = {'backbone.' + k: v for k, v in encoder.items()}
    state['backbone.stem.0.weight'] = torch.zeros(1)  # e.g. a deep stem
    src = tmp_path / 'deep.pth'
    torch.save({'state_dict': state, 'meta': {}}, src)
    message = run_error([str(src), str(tmp_path / 'out.pkl')])
    assert "'stem.0.weight'" in message
    assert os.listdir(tmp_path) == ['deep.pth']


def test_output_must_be_pkl(tmp_path, encoder, run_error):
    src = mopro_checkpoint(encoder, str(tmp_path / 'a.pth'))
    message = run_error([src, str(tmp_path / 'out.pth')])
    assert 'out.pth' in message and '.pkl' in message
    assert os.listdir(tmp_path) == ['a.pth']


def test_failed_write_leaves_previous_output(tmp_path, encoder, monkeypatch,
                                             run_error):
    src = mopro_checkpoint(encoder, str(tmp_path / 'a.pth'))
    out = tmp_path / 'out.pkl'
    out.write_bytes(b'previous')

    def broken_dump(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(pickle, 'dump', broken_dump)
    assert run_error([src, str(out)]) == 'error: disk full'
    assert out.read_bytes() == b'previous'
    assert sorted(os.listdir(tmp_path)) == ['a.pth', 'out.pkl']


@pytest.mark.slow
def test_trust_checkpoint_flag(tmp_path, encoder, run_error):
    """A checkpoint holding a pickled object outside the weights-only
    allow-list needs --trust-checkpoint."""
    src = tmp_path / 'with_args.pth'
    torch.save(
        {
            'state_dict': {
                'backbone.' + k: v
                for k, v in encoder.items()
            },
            'args': argparse.Namespace(lr=0.1)
        }, src)
    out = tmp_path / 'out.pkl'
    message = run_error([str(src), str(out)])
    assert '--trust-checkpoint' in message
    assert not out.exists()
    (result, ) = run_tools([['convert_to_d2', src, out, '--trust-checkpoint']])
    assert result.code == 0, result.stderr
    assert_matches_mapping(read_pkl(out)['model'], encoder)


def test_random_bytes_are_not_a_checkpoint(tmp_path, run_error):
    src = tmp_path / 'random.pth'
    src.write_bytes(np.random.default_rng(0).bytes(4096))
    message = run_error([str(src), str(tmp_path / 'out.pkl')])
    assert message == (f'error: {src}: not a checkpoint (neither the zip '
                       'archive nor the pickle that torch.save writes)')
    assert '--trust-checkpoint' not in message


def test_refuses_non_finite_weights(tmp_path, encoder, run_error):
    # a diverged run's checkpoint: the first non-finite tensor is named and
    # nothing is written
    bad = dict(encoder)
    bad['layer3.1.bn2.running_var'] = torch.full_like(
        encoder['layer3.1.bn2.running_var'], float('inf'))
    src = mopro_checkpoint(bad, str(tmp_path / 'diverged.pth'))
    out = tmp_path / 'out.pkl'
    assert run_error([
        src, str(out)
    ]) == (f'error: {src}: backbone.layer3.1.bn2.running_var holds 256 '
           'non-finite values (NaN or inf) of 256: the weights of a diverged '
           'run')
    assert not out.exists()


def test_unwritable_output_fails_before_reading(tmp_path, encoder, run_error,
                                                monkeypatch):
    src = mopro_checkpoint(encoder, str(tmp_path / 'a.pth'))
    blocker = tmp_path / 'file'
    blocker.write_text('')
    monkeypatch.setattr(d2_convert, 'convert_checkpoint',
                        lambda *a, **k: pytest.fail('read the checkpoint'))
    assert run_error([src, str(blocker / 'out.pkl')]) == (
        f'error: {blocker}/out.pkl: cannot write the output: {blocker} is a '
        'file, not a folder')


def test_too_little_disk_space_fails_before_writing(tmp_path, encoder,
                                                    run_error, monkeypatch):
    src = mopro_checkpoint(encoder, str(tmp_path / 'a.pth'))
    out = tmp_path / 'out.pkl'
    usage = namedtuple('usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage',
                        lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    message = run_error([src, str(out)])
    assert message.startswith(f'error: {out}: 1.0 MiB free on the disk of '
                              'the output, it needs about ')
    assert not out.exists()
