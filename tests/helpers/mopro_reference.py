"""An independent, deliberately naive model of the released MoPro iteration.

Written for the tests from a reading of the released ``model.py`` /
``train.py`` (salesforce/MoPro) and the paper (Section 3, Algorithm 1); it
shares no code with :mod:`mopro`. Where the released code and the paper
differ, this module follows the released code:

- prototypes are updated sample by sample in batch order and L2-normalised
  once per batch (the paper's eq. 6 normalises after every sample);
- the prototype loss is on from the second epoch, noise correction from
  ``start_clean_epoch`` (11);
- the momentum update happens after the query forward and before the key
  forward; the instance logits use the queue before the batch is enqueued;
  prototype logits use the prototypes before the batch updates them.

Everything here runs in one process: the all-gather of the released code
is the identity and there is no batch shuffle. The helpers at the end
(``make_noisy``...) drive a ``mopro`` model to build test batches; the
reference model itself uses nothing from ``mopro``.
"""
import copy
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OOD = -1


# ----------------------------------------------------------------------
# pure functions, written as loops / boolean indexing on purpose
def reference_correct_labels(cls_logits: torch.Tensor,
                             proto_logits: torch.Tensor, labels: torch.Tensor,
                             alpha: float = 0.5,
                             threshold: float = 0.8) -> torch.Tensor:
    """Pseudo-labels of eq. 5 the way the released forward derives them.

    The original labels are overwritten in place where the soft label is
    confident, and the clean mask is "score at the original label above
    uniform" OR "confident"; samples outside the mask are OOD (-1).
    """
    num_classes = cls_logits.shape[1]
    target = labels.clone().long()
    soft = alpha * F.softmax(cls_logits.float(), dim=1) + \
        (1 - alpha) * F.softmax(proto_logits.float(), dim=1)
    rows = torch.arange(target.numel())
    above_uniform = soft[rows, target] > 1 / num_classes
    best_score, best_class = soft.max(dim=1)
    confident = best_score > threshold
    target[confident] = best_class[confident]
    clean = above_uniform | confident
    target[~clean] = OOD
    return target


def reference_update_prototypes(prototypes: torch.Tensor, feats: torch.Tensor,
                                labels: torch.Tensor,
                                momentum: float) -> torch.Tensor:
    """Sequential per-sample momentum update, then one row normalisation."""
    protos = prototypes.clone().float()
    for feat, label in zip(feats.float(), labels.tolist()):
        if label < 0:
            continue
        protos[label] = protos[label] * momentum + (1 - momentum) * feat
    return F.normalize(protos, p=2, dim=1)


# ----------------------------------------------------------------------
# the released network layout: trunk -> pooled v -> classifier logits and
# l2-normalised fc2(relu(fc1(v)))
class ReleasedEncoder(nn.Module):
    """Encoder laid out as the released ``resnet.py`` (one module)."""

    def __init__(self, num_classes: int, feat_dim: int, hidden_dim: int,
                 low_dim: int) -> None:
        super().__init__()
        trunk = torchvision.models.resnet18(weights=None)
        # The released code pools with AvgPool2d(7), i.e. global pooling at
        # 224 px; adaptive pooling is the same thing at any input size.
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.classifier = nn.Linear(feat_dim, num_classes)
        self.fc1 = nn.Linear(feat_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, low_dim)

    def forward(self, x: torch.Tensor):
        feat = self.trunk(x)
        out = self.classifier(feat)
        emb = self.fc2(F.relu(self.fc1(feat)))
        return out, emb / emb.norm(p=2, dim=1, keepdim=True)


class ReleasedMoPro(nn.Module):
    """Single-process model of the released ``MoPro`` module and loss."""

    def __init__(self, num_classes: int, feat_dim: int, hidden_dim: int,
                 low_dim: int, queue_len: int, *, moco_m: float = 0.999,
                 proto_m: float = 0.999, temperature: float = 0.1,
                 pseudo_w: float = 0.5, pseudo_th: float = 0.8,
                 w_proto: float = 1.0, w_inst: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.queue_len = queue_len
        self.moco_m = moco_m
        self.proto_m = proto_m
        self.temperature = temperature
        self.pseudo_w = pseudo_w
        self.pseudo_th = pseudo_th
        self.w_proto = w_proto
        self.w_inst = w_inst
        self.encoder_q = ReleasedEncoder(num_classes, feat_dim, hidden_dim,
                                         low_dim)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer('queue', torch.zeros(low_dim, queue_len))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))
        self.register_buffer('prototypes', torch.zeros(num_classes, low_dim))

    # -- weights from a mopro.models.MoPro ----------------------------
    @classmethod
    def from_mopro(cls, model: nn.Module, **kwargs) -> 'ReleasedMoPro':
        """A reference model with the weights and buffers of ``model``.

        Uses the state-dict names documented for ``mopro.models.MoPro``;
        the backbone keys load strictly into a torchvision ResNet-18.
        """
        num_classes, feat_dim = model.classifier.weight.shape
        hidden_dim = model.projector[0].weight.shape[0]
        low_dim, queue_len = model.queue.shape
        ref = cls(num_classes, feat_dim, hidden_dim, low_dim, queue_len,
                  moco_m=model.momentum, proto_m=model.proto_momentum,
                  temperature=model.head.temperature, pseudo_w=model.alpha,
                  pseudo_th=model.threshold, w_proto=model.head.proto_weight,
                  w_inst=model.head.inst_weight, **kwargs)
        sd = model.state_dict()
        ref.load_weights(sd)
        return ref

    def load_weights(self, sd: Dict[str, torch.Tensor]) -> None:

        def sub(prefix):
            return {
                k[len(prefix):]: v.clone()
                for k, v in sd.items() if k.startswith(prefix)
            }

        for enc, bb, proj in ((self.encoder_q, 'backbone.', 'projector.'),
                              (self.encoder_k, 'momentum_backbone.',
                               'momentum_projector.')):
            enc.trunk.load_state_dict(sub(bb), strict=True)
            p = sub(proj)
            enc.fc1.load_state_dict({
                'weight': p['0.weight'],
                'bias': p['0.bias']
            })
            enc.fc2.load_state_dict({
                'weight': p['2.weight'],
                'bias': p['2.bias']
            })
        # The released key encoder also carries a (never used) classifier.
        self.encoder_q.classifier.load_state_dict(sub('classifier.'))
        self.encoder_k.classifier.load_state_dict(sub('classifier.'))
        self.queue.copy_(sd['queue'])
        self.queue_ptr.copy_(sd['queue_ptr'])
        self.prototypes.copy_(sd['prototypes'])

    # -- one iteration --------------------------------------------------
    def forward(self, img: torch.Tensor, target: torch.Tensor,
                img_aug: torch.Tensor, is_proto: bool,
                is_clean: bool) -> Dict[str, torch.Tensor]:
        target = target.clone().long()
        output, q = self.encoder_q(img)

        with torch.no_grad():
            for p_q, p_k in zip(self.encoder_q.parameters(),
                                self.encoder_k.parameters()):
                p_k.data = p_k.data * self.moco_m + p_q.data * (1. -
                                                                self.moco_m)
            _, k = self.encoder_k(img_aug)

        queue_before = self.queue.clone()
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ queue_before
        inst_logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature

        # enqueue (slice assignment; R must be a multiple of the batch)
        with torch.no_grad():
            bs = k.shape[0]
            ptr = int(self.queue_ptr)
            assert self.queue_len % bs == 0
            self.queue[:, ptr:ptr + bs] = k.t()
            self.queue_ptr[0] = (ptr + bs) % self.queue_len

        proto_logits = None
        if is_proto:
            proto_logits = q @ self.prototypes.clone().t() / self.temperature

        pseudo = target.clone()
        if is_clean:
            pseudo = reference_correct_labels(output.detach(),
                                              proto_logits.detach(), target,
                                              self.pseudo_w, self.pseudo_th)
        clean = pseudo >= 0

        with torch.no_grad():
            feats = q.detach()
            for feat, label in zip(feats[clean], pseudo[clean]):
                self.prototypes[label] = self.prototypes[label] * \
                    self.proto_m + (1 - self.proto_m) * feat
            self.prototypes.copy_(F.normalize(self.prototypes, p=2, dim=1))

        # train.py: mean cross-entropies over the kept samples
        ce = F.cross_entropy
        losses = dict(
            loss_cls=ce(output[clean], pseudo[clean]), loss_ins=self.w_inst *
            ce(inst_logits, torch.zeros(inst_logits.shape[0],
                                        dtype=torch.long)))
        if is_proto:
            losses['loss_pro'] = self.w_proto * ce(proto_logits[clean],
                                                   pseudo[clean])
        return dict(
            losses=losses, pseudo=pseudo, query=q.detach(), key=k.detach(),
            cls_logits=output.detach(), proto_logits=None
            if proto_logits is None else proto_logits.detach())


# ----------------------------------------------------------------------
# helpers to make batches that exercise every noise-correction branch
def branch_of(soft: torch.Tensor, labels: torch.Tensor,
              threshold: float) -> List[str]:
    """Name the eq. 5 branch each sample falls in."""
    k = soft.shape[1]
    names = []
    for row, y in zip(soft, labels.tolist()):
        if row.max() > threshold:
            names.append('confident_same' if int(row.argmax()) ==
                         y else 'relabel')
        elif row[y] > 1 / k:
            names.append('keep')
        else:
            names.append('ood')
    return names


def choose_labels(soft: torch.Tensor, threshold: float,
                  plan: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Labels that put sample i in branch ``plan[i]`` where possible.

    ``plan`` entries: 'argmax' (label = argmax q) or 'other' (label = the
    class with the smallest q). For a confident sample 'other' is a relabel,
    for an unconfident one it is OOD; 'argmax' gives confident-same or keep.
    """
    n = soft.shape[0]
    plan = plan or ['argmax' if i % 2 == 0 else 'other' for i in range(n)]
    labels = torch.where(
        torch.tensor([p == 'argmax' for p in plan], device=soft.device),
        soft.argmax(1), soft.argmin(1))
    return labels.long()


def soft_labels(cls_logits: torch.Tensor, proto_logits: torch.Tensor,
                alpha: float = 0.5) -> torch.Tensor:
    return alpha * F.softmax(cls_logits.float(), 1) + \
        (1 - alpha) * F.softmax(proto_logits.float(), 1)


@torch.no_grad()
def make_noisy(model, weak: torch.Tensor, scale: float = 10.0,
               margin: float = 1e-3) -> torch.Tensor:
    """Set weights and prototypes so that noise correction is non-trivial.

    The projector's last bias centres the batch's embeddings and the
    classifier compares centred representations, so that samples are far
    apart even in an untrained (GroupNorm) net; classifier rows and
    prototypes point at the first K samples, which are then confident.
    Labels are chosen so that the batch has confident-same, relabelled,
    kept and OOD samples, each at least ``margin`` away from the
    thresholds. Uses the documented layout of ``mopro.models.MoPro``
    (``projector`` = Linear-ReLU-Linear). Returns the labels.
    """
    k = model.num_classes
    # train-mode BN: a forward on the same batch gives the same output
    probe = copy.deepcopy(model)
    feats = probe.extract_feat(weak)[-1]
    last = model.projector[-1]
    hidden = probe.projector[:-1](feats)
    last.bias.copy_(-(hidden @ last.weight.t()).mean(0))
    embed = F.normalize(last(hidden), dim=1)

    centre = feats.mean(0)
    spread = (feats - centre).norm(dim=1).mean()
    weight = F.normalize(feats[:k] - centre, dim=1) * (scale / spread)
    model.classifier.weight.copy_(weight)
    model.classifier.bias.copy_(-(weight @ centre))
    model.prototypes.copy_(embed[:k])

    soft = soft_labels(
        model.classifier(feats), model.prototype_logits(embed), model.alpha)
    labels = choose_labels(soft, model.threshold)
    kinds = branch_of(soft, labels, model.threshold)
    assert {'confident_same', 'relabel', 'keep', 'ood'} <= set(kinds), kinds
    top = soft.max(1).values
    at_label = soft.gather(1, labels[:, None]).squeeze(1)
    assert ((top - model.threshold).abs() > margin).all()
    assert ((at_label - 1 / k).abs() > margin).all()
    return labels
