"""tools/model_converters/convert_from_original.py
(mopro.apis.convert_original_checkpoint): released checkpoints -> project
format."""
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from mmpretrain.registry import MODELS

from mopro.apis import convert_original_checkpoint
from mopro.checkpoint import load_checkpoint, load_model_weights
from helpers.commands import call_tool, run_tools

K, D, R = 10, 128, 16


class OriginalEncoder(nn.Module):
    """The released encoder: torchvision ResNet-50 trunk, ``classifier``,
    ``fc1``/``fc2`` projection; forward gives (logits, normalised z)."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.resnet50()
        for name in ('conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2',
                     'layer3', 'layer4', 'avgpool'):
            setattr(self, name, getattr(net, name))
        self.classifier = nn.Linear(2048, K)
        self.fc1 = nn.Linear(2048, 2048)
        self.fc2 = nn.Linear(2048, D)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        feat = torch.flatten(self.avgpool(x), 1)
        embed = self.fc2(F.relu(self.fc1(feat)))
        return self.classifier(feat), F.normalize(embed, dim=1)


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(
                torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(
                torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(
                torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    enc_q, enc_k = OriginalEncoder().eval(), OriginalEncoder().eval()
    _randomise_bn(enc_q, gen)
    _randomise_bn(enc_k, gen)
    state = {}
    for prefix, enc in (('module.encoder_q.', enc_q), ('module.encoder_k.',
                                                       enc_k)):
        state.update({prefix + k: v for k, v in enc.state_dict().items()})
    state['module.queue'] = F.normalize(torch.randn(D, R), dim=0)
    state['module.queue_ptr'] = torch.tensor([6])
    state['module.prototypes'] = F.normalize(torch.randn(K, D), dim=1)
    path = str(tmp_path_factory.mktemp('released') / 'checkpoint.pth.tar')
    torch.save({'epoch': 90, 'arch': 'resnet50', 'state_dict': state}, path)
    return path, enc_q, enc_k, state


@pytest.fixture
def run(capsys, monkeypatch):
    """The conversion behind the tools' error boundary, in-process."""
    return lambda *args: call_tool(lambda: convert_original_checkpoint(*args),
                                   None, capsys, monkeypatch)


def _mopro_r50():
    model = MODELS.build(
        dict(
            type='MoPro', backbone=dict(type='ResNet', depth=50,
                                        zero_init_residual=False),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='MoProHead', temperature=0.1), num_classes=K,
            feat_dim=2048, embed_dim=D, proj_hidden_dim=2048, queue_len=R,
            data_preprocessor=dict(type='SelfSupDataPreprocessor',
                                   mean=[0., 0., 0.], std=[1., 1., 1.])))
    return model.eval()


@pytest.mark.slow
def test_converted_model_matches_released(released, tmp_path, run):
    path, enc_q, enc_k, state = released
    out = str(tmp_path / 'mopro.pth')
    # as a user runs it
    proc, = run_tools([['model_converters/convert_from_original', path, out]])
    assert proc.code == 0, proc.stderr
    assert proc.value == f'{path} -> {out}: {len(state) - 2} tensors, ' \
        'epoch 90\n'
    ckpt = load_checkpoint(out)
    assert ckpt['meta']['epoch'] == 90
    assert ckpt['meta']['converted_from'] == osp.abspath(path)

    model = _mopro_r50()
    load_model_weights(model, out)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, embed = enc_q(x)
        embed_k = enc_k(x)[1]
        _, cls_logits, z = model.encode(x)
        z_k = model.momentum_encode(x)
    torch.testing.assert_close(cls_logits, logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z, embed, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z_k, embed_k, rtol=1e-4, atol=1e-5)
    # momentum encoder weights, queue, pointer and prototypes
    torch.testing.assert_close(model.momentum_backbone.layer3[2].conv2.weight,
                               state['module.encoder_k.layer3.2.conv2.weight'])
    torch.testing.assert_close(model.momentum_projector[0].weight,
                               state['module.encoder_k.fc1.weight'])
    torch.testing.assert_close(model.queue, state['module.queue'])
    assert model.queue_ptr.tolist() == [6]
    torch.testing.assert_close(model.prototypes, state['module.prototypes'])


def test_rejects_project_checkpoint(released, tmp_path, run):
    path = released[0]
    project = str(tmp_path / 'project.pth')
    assert run(path, project).code == 0
    out = str(tmp_path / 'again.pth')
    assert run(project, out).error == (
        f'error: {project}: expected an original checkpoint, got a '
        'checkpoint of this project, not of the released code')
    assert not osp.exists(out)


def test_truncated_and_missing(released, tmp_path, run):
    with open(released[0], 'rb') as f:
        data = f.read()
    cut = str(tmp_path / 'cut.pth.tar')
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 3])
    for src in (cut, str(tmp_path / 'missing.pth.tar')):
        out = str(tmp_path / 'out.pth')
        assert src in run(src, out).error
        assert not osp.exists(out)
        assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


@pytest.mark.parametrize('link', [False, True])
def test_refuses_to_write_onto_its_input(released, tmp_path, run, link):
    # the released checkpoint named as the output too (or through a link):
    # refused before anything is read, the input untouched
    path = released[0]
    with open(path, 'rb') as f:
        before = f.read()
    out = str(tmp_path / 'link.pth.tar')
    if link:
        os.symlink(path, out)
    assert run(path, out if link else path).error == (
        f'error: {out if link else path}: the output is the input {path}; '
        'write it to another path')
    with open(path, 'rb') as f:
        assert f.read() == before


def test_refuses_non_finite_weights(released, tmp_path, run):
    _, _, _, state = released
    bad = dict(state)
    bad['module.encoder_q.layer2.1.conv2.weight'] = \
        state['module.encoder_q.layer2.1.conv2.weight'].clone()
    bad['module.encoder_q.layer2.1.conv2.weight'][0, :3] = float('nan')
    src = str(tmp_path / 'diverged.pth.tar')
    torch.save({'epoch': 3, 'state_dict': bad}, src)
    out = str(tmp_path / 'out.pth')
    assert run(src, out).error == (
        f'error: {src}: module.encoder_q.layer2.1.conv2.weight holds 27 '
        'non-finite values (NaN or inf) of 147456: the weights of a diverged '
        'run')
    assert not osp.exists(out)
