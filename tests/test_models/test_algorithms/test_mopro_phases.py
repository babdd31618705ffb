"""The MoPro algorithm (paper Section 3, Algorithm 1) on a tiny CPU model,
one ``loss()`` step per phase as in the released ``train.py``: warm-up
(epoch 0: no L_pro, pseudo-label = label), prototype loss on (epoch >= 1),
noise correction (epoch >= start_clean_epoch); a ``train_step`` through an
``OptimWrapper``; inference."""
import copy

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

from mopro.models import correct_labels, update_prototypes
from helpers.models import (B, D, K, build, random_prototypes, record_head,
                            samples, train_data, views)
from helpers.mopro_reference import make_noisy, reference_update_prototypes


# ----------------------------------------------------------------------
# one iteration per phase
def test_warmup_step(monkeypatch):
    model = build(phase='warmup')
    calls = record_head(monkeypatch, model)
    weak, strong = views(0)
    labels = torch.arange(B) % K
    old_queue = model.queue.clone()
    assert torch.equal(model.prototypes, torch.zeros(K, D))

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    assert 'loss_pro' not in losses and call['proto_logits'] is None
    assert torch.equal(call['pseudo_labels'], labels)
    assert losses['frac_ood'].item() == 0
    assert losses['frac_relabelled'].item() == 0
    # the query is the normalised projection of the weak view
    with torch.no_grad():
        _, cls_logits, embed = copy.deepcopy(model).encode(weak)
    torch.testing.assert_close(call['query'], embed)
    torch.testing.assert_close(call['cls_logits'], cls_logits)
    torch.testing.assert_close(call['query'].norm(dim=1), torch.ones(B))
    # the key comes from the momentum encoder (already updated this step)
    with torch.no_grad():
        probe = copy.deepcopy(model)
        keys = F.normalize(
            probe.momentum_projector(
                probe.neck(probe.momentum_backbone(strong))[-1]), dim=1)
    torch.testing.assert_close(call['key'], keys)
    # negatives: the queue before this batch
    torch.testing.assert_close(call['queue'], old_queue)
    # queue: columns 0..B-1 replaced by the keys, pointer advanced
    torch.testing.assert_close(model.queue[:, :B], call['key'].t())
    assert torch.equal(model.queue[:, B:], old_queue[:, B:])
    assert model.queue_ptr.tolist() == [B]
    # prototypes: every sample with its original label
    torch.testing.assert_close(
        model.prototypes,
        reference_update_prototypes(
            torch.zeros(K, D), call['query'], labels, model.proto_momentum),
        rtol=0, atol=1e-5)
    torch.testing.assert_close(model.prototypes.norm(dim=1), torch.ones(K))


def test_proto_phase_adds_prototype_loss(monkeypatch):
    model = build(phase='proto')
    old_protos = random_prototypes()
    model.prototypes.copy_(old_protos)
    calls = record_head(monkeypatch, model)
    weak, strong = views(1)
    labels = torch.tensor([0, 0, 1, 3, 3, 3, 2, 0])

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    assert torch.equal(call['pseudo_labels'], labels)
    expected_logits = call['query'] @ old_protos.t() / 0.1
    torch.testing.assert_close(call['proto_logits'], expected_logits)
    torch.testing.assert_close(losses['loss_pro'],
                               F.cross_entropy(expected_logits, labels))
    torch.testing.assert_close(losses['loss_cls'],
                               F.cross_entropy(call['cls_logits'], labels))
    torch.testing.assert_close(
        model.prototypes,
        update_prototypes(old_protos, call['query'], labels, 0.999), rtol=0,
        atol=1e-6)


def test_noise_correction_phase(monkeypatch):
    model = build(phase='clean')
    weak, strong = views(2)
    labels = make_noisy(model, weak)
    old_protos = model.prototypes.clone()
    calls = record_head(monkeypatch, model)

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    pseudo = call['pseudo_labels']
    expected = correct_labels(call['cls_logits'], call['proto_logits'], labels)
    assert torch.equal(pseudo, expected)
    assert (pseudo == -1).any() and ((pseudo != labels) & (pseudo >= 0)).any()
    torch.testing.assert_close(losses['frac_ood'],
                               (pseudo == -1).float().mean())
    torch.testing.assert_close(losses['frac_relabelled'],
                               ((pseudo != labels) &
                                (pseudo >= 0)).float().mean())
    keep = pseudo >= 0
    torch.testing.assert_close(
        losses['loss_cls'],
        F.cross_entropy(call['cls_logits'][keep], pseudo[keep]))
    torch.testing.assert_close(
        losses['loss_pro'],
        F.cross_entropy(call['proto_logits'][keep], pseudo[keep]))
    # prototypes: pseudo-labels, OOD left out
    torch.testing.assert_close(
        model.prototypes,
        reference_update_prototypes(old_protos, call['query'], pseudo,
                                    model.proto_momentum), rtol=0, atol=1e-5)
    with_labels = update_prototypes(old_protos, call['query'], labels,
                                    model.proto_momentum)
    assert not torch.allclose(model.prototypes, with_labels, atol=1e-6)


def test_train_step_with_optim_wrapper():
    model = build(phase='proto', momentum=0.9)
    model.prototypes.copy_(random_prototypes())
    data = train_data()
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    before = copy.deepcopy(model.state_dict())

    log_vars = model.train_step(data, optim_wrapper)

    assert {'loss', 'loss_cls', 'loss_ins', 'loss_pro'} <= set(log_vars)
    total = log_vars['loss_cls'] + log_vars['loss_ins'] + log_vars['loss_pro']
    torch.testing.assert_close(
        torch.as_tensor(log_vars['loss']), torch.as_tensor(total))
    after = model.state_dict()
    for name in ('backbone.conv1.weight', 'classifier.weight',
                 'projector.2.weight'):
        assert not torch.equal(after[name], before[name]), name
    # momentum encoder: moved by the momentum rule only (no gradient step)
    for name, param in model.named_parameters():
        if name.startswith('momentum_'):
            assert param.grad is None
            online = before[name[len('momentum_'):]]
            torch.testing.assert_close(param.detach(),
                                       0.9 * before[name] + 0.1 * online)
    assert model.queue_ptr.item() == B
    assert not torch.equal(after['prototypes'], before['prototypes'])


# ----------------------------------------------------------------------
# inference
def test_predict_and_tensor_mode():
    model = build()
    model.eval()
    weak, _ = views(11, batch=3)
    results = model(weak, mode='predict')
    assert len(results) == 3
    with torch.no_grad():
        _, cls_logits, _ = model.encode(weak)
    for ds, logits in zip(results, cls_logits):
        torch.testing.assert_close(ds.pred_score, logits.softmax(0))
        assert ds.pred_label.item() == int(logits.argmax())
    (feats, ) = model(weak, mode='tensor')
    assert feats.shape == (3, 512)
