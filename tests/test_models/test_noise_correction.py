"""Noise correction (paper eq. 4-5) and the prototype update (eq. 6).

Expectations follow the released code (salesforce/MoPro ``model.py``):
strict inequalities ``max q > T`` and ``q_y > 1/K``, first index on argmax
ties, per-sample sequential prototype update with one L2 normalisation per
batch. ``helpers.mopro_reference`` holds loop implementations written from
that reading.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mopro.models import OOD_LABEL, correct_labels, update_prototypes
from helpers.mopro_reference import (reference_correct_labels,
                                     reference_update_prototypes)

BIG = 1e4  # exp(-BIG) underflows to exactly 0 in float32


def onehot_logits(cls: int, num_classes: int) -> torch.Tensor:
    """Logits whose softmax is exactly the one-hot vector of ``cls``."""
    logits = torch.full((num_classes, ), -BIG)
    logits[cls] = 0.0
    return logits


def peaked_logits(cls: int, prob: float, num_classes: int) -> torch.Tensor:
    """Logits whose softmax is ``prob`` at ``cls``, uniform elsewhere."""
    logits = torch.zeros(num_classes)
    logits[cls] = math.log(prob * (num_classes - 1) / (1 - prob))
    return logits


def run(cls_rows, proto_rows, labels, **kwargs):
    cls_logits = torch.stack(cls_rows)
    proto_logits = torch.stack(proto_rows)
    labels = torch.tensor(labels)
    out = correct_labels(cls_logits, proto_logits, labels, **kwargs)
    ref = reference_correct_labels(cls_logits, proto_logits, labels, **kwargs)
    assert torch.equal(out, ref), (out, ref)
    return out.tolist()


def test_ood_label_is_minus_one():
    assert OOD_LABEL == -1


# ----------------------------------------------------------------------
# correct_labels: every branch of eq. 5
def test_confident_relabel_and_confident_same():
    k = 4
    e2 = onehot_logits(2, k)
    # q = e_2: max 1 > 0.8 -> argmax whatever the original label
    assert run([e2, e2, e2], [e2, e2, e2], [0, 2, 3]) == [2, 2, 2]


def test_keep_original_and_ood():
    k = 4
    # q = 0.5 e_1 + 0.5 e_2: not confident; q_y = 0.5 > 1/4 for y in {1, 2}
    cls, proto = onehot_logits(1, k), onehot_logits(2, k)
    assert run([cls] * 4, [proto] * 4, [1, 2, 0, 3]) == [1, 2, -1, -1]


def test_exactly_at_threshold_is_not_confident():
    # alpha = 0.75: q = 0.75 e_0 + 0.25 e_1, all values exact in float32
    k = 4
    cls, proto = onehot_logits(0, k), onehot_logits(1, k)
    # max q == T (0.75): not confident; label 1 has q == 1/K exactly -> OOD
    assert run([cls] * 3, [proto] * 3, [0, 1, 2], alpha=0.75,
               threshold=0.75) == [0, -1, -1]
    # just below T: confident, everything becomes class 0
    assert run([cls] * 3, [proto] * 3, [0, 1, 2], alpha=0.75,
               threshold=0.7499) == [0, 0, 0]


def test_exactly_uniform_score_is_ood():
    # uniform rows (zero logits) give exactly 0.25 = 1/K per class
    k = 4
    zeros = torch.zeros(k)
    # cls uniform, proto uniform: q = 0.25 everywhere == 1/K -> OOD for all
    assert run([zeros] * 4, [zeros] * 4, [0, 1, 2, 3]) == [-1] * 4


@pytest.mark.parametrize('prob, expected', [(0.61, 0), (0.59, -1)])
def test_default_threshold_just_above_and_below(prob, expected):
    # alpha 0.5, T 0.8: q_0 = 0.5 + 0.5 * prob is 0.805 or 0.795;
    # label 1 has q_1 = 0.5 * (1 - prob) / 3 < 1/4 -> OOD when unconfident
    k = 4
    cls = onehot_logits(0, k)
    proto = peaked_logits(0, prob, k)
    assert run([cls], [proto], [1]) == [expected]
    assert run([cls], [proto], [0]) == [0]


@pytest.mark.parametrize('prob, expected', [(0.51, 1), (0.49, -1)])
def test_uniform_bound_just_above_and_below(prob, expected):
    # q_1 = 0.5 * prob is 0.255 or 0.245 against 1/K = 0.25; max q < 0.8
    k = 4
    cls = onehot_logits(0, k)
    proto = peaked_logits(1, prob, k)
    assert run([cls], [proto], [1]) == [expected]


def test_argmax_tie_takes_first_index():
    k = 4
    # q = [0, 0.5, 0, 0.5]; with T = 0.4 it is confident, argmax -> 1
    cls, proto = onehot_logits(1, k), onehot_logits(3, k)
    assert run([cls, proto], [proto, cls], [0, 2], threshold=0.4) == [1, 1]
    # all-uniform q with a threshold below 1/K: argmax of a tie -> class 0
    zeros = torch.zeros(k)
    assert run([zeros] * 2, [zeros] * 2, [3, 2], threshold=0.2) == [0, 0]


def test_two_classes():
    k = 2
    e0, e1 = onehot_logits(0, k), onehot_logits(1, k)
    # q = [0.5, 0.5]: 0.5 is not > 1/K = 0.5 and not > T -> OOD
    assert run([e0, e0], [e1, e1], [0, 1]) == [-1, -1]
    # q_0 = 0.5 + 0.5 * 0.7 = 0.85 > 0.8 -> class 0
    assert run([e0, e0], [peaked_logits(0, 0.7, k)] * 2, [0, 1]) == [0, 0]
    # q_0 = 0.775: label 0 kept, label 1 (q_1 = 0.225) OOD
    assert run([e0, e0], [peaked_logits(0, 0.55, k)] * 2, [0, 1]) == [0, -1]


def test_correct_labels_does_not_modify_inputs_and_returns_long():
    torch.manual_seed(0)
    cls_logits, proto_logits = torch.randn(6, 3) * 5, torch.randn(6, 3) * 5
    labels = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int32)
    before = labels.clone()
    out = correct_labels(cls_logits, proto_logits, labels)
    assert out.dtype == torch.long and out.shape == (6, )
    assert torch.equal(labels, before)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('num_classes', [2, 5, 10])
def test_correct_labels_matches_reference_on_random_data(seed, num_classes):
    gen = torch.Generator().manual_seed(seed)
    n = 200
    # wide logit scales so that every branch occurs
    scale = torch.rand(n, 1, generator=gen) * 12
    cls_logits = torch.randn(n, num_classes, generator=gen) * scale
    proto_logits = torch.randn(n, num_classes, generator=gen) * scale
    labels = torch.randint(num_classes, (n, ), generator=gen)
    out = correct_labels(cls_logits, proto_logits, labels)
    ref = reference_correct_labels(cls_logits, proto_logits, labels)
    assert torch.equal(out, ref)
    # the data exercise relabel, keep and OOD
    assert (out == -1).any() and (out == labels).any()
    assert ((out != labels) & (out != -1)).any()


def test_correct_labels_bf16_logits_are_computed_in_float32():
    torch.manual_seed(1)
    cls_logits = (torch.randn(64, 6) * 4).bfloat16()
    proto_logits = (torch.randn(64, 6) * 4).bfloat16()
    labels = torch.randint(6, (64, ))
    out = correct_labels(cls_logits, proto_logits, labels)
    ref = reference_correct_labels(cls_logits.float(), proto_logits.float(),
                                   labels)
    assert torch.equal(out, ref)


# ----------------------------------------------------------------------
# update_prototypes
def random_case(seed, n=96, k=7, d=16, zero_protos=False):
    gen = torch.Generator().manual_seed(seed)
    protos = torch.zeros(k, d) if zero_protos else F.normalize(
        torch.randn(k, d, generator=gen), dim=1)
    feats = F.normalize(torch.randn(n, d, generator=gen), dim=1)
    # repeated labels from a subset of classes (the last two untouched)
    labels = torch.randint(k - 2, (n, ), generator=gen)
    labels[torch.rand(n, generator=gen) < 0.2] = OOD_LABEL
    return protos, feats, labels


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('momentum', [0.999, 0.9, 0.5])
@pytest.mark.parametrize('zero_protos', [False, True])
def test_update_prototypes_matches_sequential_loop(seed, momentum,
                                                   zero_protos):
    protos, feats, labels = random_case(seed, zero_protos=zero_protos)
    before = protos.clone()
    out = update_prototypes(protos, feats, labels, momentum)
    ref = reference_update_prototypes(protos, feats, labels, momentum)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert out.dtype == torch.float32
    assert torch.equal(protos, before), 'input prototypes were modified'
    touched = torch.unique(labels[labels >= 0])
    torch.testing.assert_close(out[touched].norm(dim=1),
                               torch.ones(len(touched)))
    untouched = torch.tensor([5, 6])
    if zero_protos:
        assert torch.equal(out[untouched], torch.zeros(2, protos.shape[1]))
    else:
        torch.testing.assert_close(out[untouched], before[untouched], rtol=0,
                                   atol=1e-6)


def test_update_prototypes_first_sample_on_zero_prototype_is_its_embedding():
    # c = 0: (1 - m) z normalised is z itself
    feats = F.normalize(torch.randn(3, 8), dim=1)
    out = update_prototypes(
        torch.zeros(4, 8), feats, torch.tensor([2, 0, 3]), 0.999)
    torch.testing.assert_close(out[[2, 0, 3]], feats)
    assert torch.equal(out[1], torch.zeros(8))


def test_update_prototypes_all_ood_only_normalises():
    protos = torch.randn(5, 8) * 3
    protos[1] = 0
    out = update_prototypes(protos, torch.randn(4, 8),
                            torch.full((4, ), OOD_LABEL), 0.5)
    torch.testing.assert_close(out, F.normalize(protos, dim=1))
    assert torch.equal(out[1], torch.zeros(8))


@pytest.mark.parametrize('momentum', [0.999, 0.5])
def test_update_prototypes_long_runs_of_one_class(momentum):
    # many samples of one class in one batch (powers of m over- and
    # underflow in a naive closed form)
    gen = torch.Generator().manual_seed(3)
    protos = F.normalize(torch.randn(3, 8, generator=gen), dim=1)
    feats = F.normalize(torch.randn(400, 8, generator=gen), dim=1)
    labels = torch.zeros(400, dtype=torch.long)
    labels[::7] = 1
    out = update_prototypes(protos, feats, labels, momentum)
    ref = reference_update_prototypes(protos, feats, labels, momentum)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_update_prototypes_bf16_features():
    protos, feats, labels = random_case(7)
    out = update_prototypes(protos, feats.bfloat16(), labels, 0.9)
    ref = reference_update_prototypes(protos,
                                      feats.bfloat16().float(), labels, 0.9)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
