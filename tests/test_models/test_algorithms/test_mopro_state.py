"""MoPro's state: the queue as a ring buffer, the momentum encoder (its
update rule and its own BN statistics), ``init_weights``, the state dict,
and the arguments checked as config errors naming the key."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mopro.utils.errors import ConfigError
from helpers.models import (LOSS_KEYS, B, D, K, R, build, random_prototypes,
                            record_head, samples, views)


# ----------------------------------------------------------------------
# queue, momentum encoder, state
def test_queue_wraps_around(monkeypatch):
    model = build(queue_len=12)
    calls = record_head(monkeypatch, model)
    model.queue_ptr.fill_(8)
    old = model.queue.clone()
    weak, strong = views(4)
    model.loss([weak, strong], samples(torch.arange(B) % K))
    key = calls[-1]['key']
    idx = [8, 9, 10, 11, 0, 1, 2, 3]
    torch.testing.assert_close(model.queue[:, idx], key.t())
    assert torch.equal(model.queue[:, 4:8], old[:, 4:8])
    assert model.queue_ptr.tolist() == [4]
    model.loss([weak, strong], samples(torch.arange(B) % K))
    torch.testing.assert_close(model.queue[:, 4:12], calls[-1]['key'].t())
    torch.testing.assert_close(model.queue[:, :4], key[4:].t())
    assert model.queue_ptr.tolist() == [0]


def test_enqueue_ring_buffer_and_oversized_batch():
    model = build(queue_len=12)
    model.queue_ptr.fill_(10)
    old = model.queue.clone()
    keys = F.normalize(torch.randn(5, D), dim=1)
    model.enqueue(keys)
    torch.testing.assert_close(model.queue[:, [10, 11, 0, 1, 2]], keys.t())
    assert torch.equal(model.queue[:, 3:10], old[:, 3:10])
    assert model.queue_ptr.tolist() == [3]
    # a config mistake (tools/train.py checks it before building the
    # Runner; tools/analysis_tools/benchmark.py meets it here)
    with pytest.raises(
            ConfigError, match=r'^model\.queue_len=12 is smaller than the '
            r'global batch 13: MoPro enqueues every batch$'):
        model.enqueue(torch.randn(13, D))


def test_momentum_update_formula():
    model = build(momentum=0.9)
    with torch.no_grad():
        for p in [*model.backbone.parameters(), *model.projector.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    online = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {
        n: b.clone()
        for n, b in model.momentum_backbone.named_buffers()
    }
    model.momentum_update()
    for name, param in model.named_parameters():
        if name.startswith('momentum_'):
            expected = 0.9 * online[name] + 0.1 * online[
                name[len('momentum_'):]]
            torch.testing.assert_close(param.detach(), expected, rtol=0,
                                       atol=1e-6, msg=name)
        else:
            assert torch.equal(param, online[name]), name
    for name, buf in model.momentum_backbone.named_buffers():
        assert torch.equal(buf, buffers[name]), name


def test_momentum_encoder_keeps_its_own_bn_statistics():
    model = build(momentum=0.9)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    # expected: m * k + (1 - m) * q, then a train-mode forward on the
    # strong view only
    expected = copy.deepcopy(model.momentum_backbone)
    with torch.no_grad():
        for pk, pq in zip(expected.parameters(), model.backbone.parameters()):
            pk.copy_(0.9 * pk + 0.1 * pq)
    weak, strong = views(5)
    expected.train()
    with torch.no_grad():
        expected(strong)
    model.loss([weak, strong], samples(torch.arange(B) % K))
    ours = dict(model.momentum_backbone.named_buffers())
    online = dict(model.backbone.named_buffers())
    for name, buf in expected.named_buffers():
        torch.testing.assert_close(ours[name], buf, msg=name)
    assert not torch.allclose(ours['bn1.running_mean'],
                              online['bn1.running_mean'])


def test_init_weights_copies_encoder_into_momentum_encoder():
    model = build()
    with torch.no_grad():
        for p in [
                *model.momentum_backbone.parameters(),
                *model.momentum_projector.parameters()
        ]:
            p.add_(1.0)
        model.momentum_backbone.bn1.running_mean.add_(3.0)
    model.init_weights()
    for online, momentum in ((model.backbone, model.momentum_backbone),
                             (model.projector, model.momentum_projector)):
        theirs = momentum.state_dict()
        for name, value in online.state_dict().items():
            assert torch.equal(theirs[name], value), name
    assert all(not p.requires_grad
               for p in model.momentum_backbone.parameters())
    assert all(not p.requires_grad
               for p in model.momentum_projector.parameters())


def test_state_dict_holds_queue_pointer_prototypes_and_momentum_encoder():
    model = build(phase='proto')
    model.prototypes.copy_(random_prototypes())
    weak, strong = views(6)
    labels = samples(torch.arange(B) % K)
    model.loss([weak, strong], labels)
    state = model.state_dict()
    assert state['queue'].shape == (D, R)
    assert state['queue_ptr'].tolist() == [B]
    assert state['prototypes'].shape == (K, D)
    for name in ('momentum_backbone.conv1.weight',
                 'momentum_backbone.bn1.running_mean',
                 'momentum_projector.0.weight', 'momentum_projector.2.bias',
                 'classifier.weight', 'projector.0.weight'):
        assert name in state, name
    # a fresh model loaded from the state continues identically
    other = build(seed=9, phase='proto')
    other.load_state_dict(copy.deepcopy(state))
    weak, strong = views(7)
    a = model.loss([weak, strong], labels)
    b = other.loss([weak, strong], labels)
    for key in LOSS_KEYS:
        torch.testing.assert_close(a[key], b[key])
    for name in ('queue', 'queue_ptr', 'prototypes'):
        assert torch.equal(getattr(model, name), getattr(other, name)), name


@pytest.mark.parametrize('key, value, message', [
    ('threshold', 'high', "model.threshold must be a number in [0, 1], "
     "got 'high'"),
    ('threshold', 5, 'model.threshold must be in [0, 1], got 5'),
    ('alpha', -3, 'model.alpha must be in [0, 1], got -3'),
    ('momentum', 1.0, 'model.momentum must be in [0, 1), got 1.0'),
    ('proto_momentum', float('nan'), 'model.proto_momentum must be a number'),
    ('queue_len', 0, 'model.queue_len must be >= 1, got 0'),
    ('num_classes', 8.5, 'model.num_classes must be an integer >= 2'),
    ('embed_dim', True, 'model.embed_dim must be an integer >= 1'),
    ('shuffle_bn', 'yes', "model.shuffle_bn must be True or False"),
    ('nonfinite', 'ignore', "model.nonfinite must be one of ('raise', "
     "'skip'), got 'ignore'"),
    ('max_consecutive_skips', 0, 'model.max_consecutive_skips must be >= 1'),
    ('compile', 'yes', 'model.compile must be a bool or a dict'),
    ('head', dict(type='MoProHead',
                  temperature=0), 'model.head.temperature must be > 0, got 0'),
    ('head', dict(type='MoProHead', inst_weight=-1),
     'model.head.inst_weight must be >= 0, got -1'),
])
def test_bad_arguments_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        build(**{key: value})
    assert message in str(err.value)
