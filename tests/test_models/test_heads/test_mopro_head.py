"""MoProHead: L_ce, L_pro (eq. 1-2) and L_ins (eq. 1) with OOD handling.

Expected values are hand-computed with ``F.cross_entropy`` the way the
released ``train.py`` does: mean over the samples kept after noise
correction for L_ce/L_pro, mean over the whole batch for L_ins.
"""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mopro.models import MoProHead

N, K, D, R = 6, 4, 8, 10


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return dict(
        cls_logits=torch.randn(N, K, generator=gen) * 3,
        proto_logits=torch.randn(N, K, generator=gen) * 3,
        query=F.normalize(torch.randn(N, D, generator=gen), dim=1),
        key=F.normalize(torch.randn(N, D, generator=gen), dim=1),
        queue=F.normalize(torch.randn(D, R, generator=gen), dim=0),
        pseudo_labels=torch.tensor([0, 3, -1, 2, -1, 1]))


def expected_inst_loss(query, key, queue, temperature):
    logits = torch.cat([(query * key).sum(1, keepdim=True), query @ queue],
                       dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long))


def test_build_from_registry():
    head = MODELS.build(
        dict(type='MoProHead', temperature=0.2, proto_weight=0.5,
             inst_weight=2.0))
    assert isinstance(head, MoProHead)
    assert (head.temperature, head.proto_weight, head.inst_weight) == \
        (0.2, 0.5, 2.0)


def test_losses_match_cross_entropy_with_weights(batch):
    head = MoProHead(temperature=0.2, proto_weight=0.5, inst_weight=2.0)
    losses = head.loss(**batch)
    y = batch['pseudo_labels']
    keep = y >= 0
    torch.testing.assert_close(
        losses['loss_cls'], F.cross_entropy(batch['cls_logits'][keep],
                                            y[keep]))
    torch.testing.assert_close(
        losses['loss_pro'],
        0.5 * F.cross_entropy(batch['proto_logits'][keep], y[keep]))
    # OOD samples stay in the instance loss: mean over all N samples
    torch.testing.assert_close(
        losses['loss_ins'], 2.0 *
        expected_inst_loss(batch['query'], batch['key'], batch['queue'], 0.2))
    partial = 2.0 * expected_inst_loss(batch['query'][keep],
                                       batch['key'][keep], batch['queue'], 0.2)
    assert not torch.allclose(losses['loss_ins'], partial)


def test_default_weights_and_temperature(batch):
    head = MoProHead()
    losses = head.loss(**batch)
    torch.testing.assert_close(
        losses['loss_ins'],
        expected_inst_loss(batch['query'], batch['key'], batch['queue'], 0.1))
    y = batch['pseudo_labels']
    torch.testing.assert_close(
        losses['loss_pro'],
        F.cross_entropy(batch['proto_logits'][y >= 0], y[y >= 0]))


def test_instance_logits_layout(batch):
    head = MoProHead(temperature=0.5)
    logits = head.instance_logits(batch['query'], batch['key'], batch['queue'])
    assert logits.shape == (N, 1 + R)
    torch.testing.assert_close(logits[:, 0],
                               (batch['query'] * batch['key']).sum(1) / 0.5)
    torch.testing.assert_close(logits[:, 1:],
                               batch['query'] @ batch['queue'] / 0.5)


def test_no_proto_loss_when_proto_logits_is_none(batch):
    batch['proto_logits'] = None
    losses = MoProHead().loss(**batch)
    assert 'loss_pro' not in losses and 'acc_pro' not in losses
    assert {'loss_cls', 'loss_ins', 'acc_cls', 'acc_ins'} <= set(losses)


def test_ood_rows_get_no_gradient_from_ce_and_pro(batch):
    cls_logits = batch['cls_logits'].clone().requires_grad_()
    proto_logits = batch['proto_logits'].clone().requires_grad_()
    query = batch['query'].clone().requires_grad_()
    batch.update(cls_logits=cls_logits, proto_logits=proto_logits, query=query)
    losses = MoProHead().loss(**batch)
    (losses['loss_cls'] + losses['loss_pro']).backward()
    ood = batch['pseudo_labels'] < 0
    assert torch.equal(cls_logits.grad[ood], torch.zeros(int(ood.sum()), K))
    assert torch.equal(proto_logits.grad[ood], torch.zeros(int(ood.sum()), K))
    assert (cls_logits.grad[~ood].abs().sum(1) > 0).all()
    # ... but they do get one from the instance loss
    losses = MoProHead().loss(**batch)
    query.grad = None
    losses['loss_ins'].backward()
    assert (query.grad[ood].abs().sum(1) > 0).all()


def test_all_ood_batch_gives_zero_finite_losses(batch):
    batch['pseudo_labels'] = torch.full((N, ), -1)
    cls_logits = batch['cls_logits'].clone().requires_grad_()
    batch['cls_logits'] = cls_logits
    losses = MoProHead().loss(**batch)
    assert losses['loss_cls'].item() == 0.0
    assert losses['loss_pro'].item() == 0.0
    assert torch.isfinite(losses['loss_ins'])
    assert losses['acc_cls'].item() == 0.0
    total = losses['loss_cls'] + losses['loss_pro'] + losses['loss_ins']
    total.backward()
    assert torch.isfinite(cls_logits.grad).all()


def test_accuracies():
    head = MoProHead(temperature=1.0)
    # predictions: argmax classes [0, 1, 2, 3]
    cls_logits = torch.eye(4) * 5
    proto_logits = torch.eye(4).flip(0) * 5  # argmax [3, 2, 1, 0]
    labels = torch.tensor([0, 1, 1, -1])
    # instance: the positive (column 0) wins for rows 0, 1 only
    query = torch.tensor([[1., 0., 0.], [0., 1., 0.], [0., 0., 1.],
                          [0., 0., 1.]])
    key = torch.tensor([[1., 0., 0.], [0., 1., 0.], [1., 0., 0.], [1., 0.,
                                                                   0.]])
    queue = torch.tensor([[0.], [0.], [1.]])
    losses = head.loss(cls_logits, proto_logits, query, key, queue, labels)
    # cls: rows 0, 1 right, row 2 wrong, row 3 OOD -> 2 / 3
    torch.testing.assert_close(losses['acc_cls'], torch.tensor(200 / 3))
    # pro: row 2 right (argmax 1 == 1) -> 1 / 3
    torch.testing.assert_close(losses['acc_pro'], torch.tensor(100 / 3))
    # ins over all 4 rows: row 0 pos 1 vs neg 0, row 1 pos 1 vs 0,
    # row 2 (query e_2, key e_0) pos 0 vs neg 1, row 3 (query e_2) 0 vs 1
    torch.testing.assert_close(losses['acc_ins'], torch.tensor(50.0))


def test_bf16_inputs_give_float32_losses(batch):
    batch = {
        k: (v.bfloat16() if v.is_floating_point() else v)
        for k, v in batch.items()
    }
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = MoProHead().loss(**batch)
    for name in ('loss_cls', 'loss_pro', 'loss_ins'):
        assert losses[name].dtype == torch.float32
        assert torch.isfinite(losses[name])
    ref = MoProHead().loss(**{
        k: (v.float() if v.is_floating_point() else v)
        for k, v in batch.items()
    })
    for name in ('loss_cls', 'loss_pro', 'loss_ins'):
        torch.testing.assert_close(losses[name], ref[name])
