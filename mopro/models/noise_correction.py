"""Noise correction and momentum-prototype update (paper Section 3.2).

Both functions are pure tensor functions so that tests, the noise-cleaning
tool and the model share one implementation.
"""
import torch
import torch.nn.functional as F

OOD_LABEL = -1


@torch.no_grad()
def correct_labels(cls_logits: torch.Tensor, proto_logits: torch.Tensor,
                   labels: torch.Tensor, alpha: float = 0.5,
                   threshold: float = 0.8) -> torch.Tensor:
    """Return the corrected pseudo-labels of a batch (paper eq. 4-5).

    ``q = alpha * softmax(cls_logits) + (1 - alpha) * softmax(proto_logits)``.
    A sample whose largest soft score exceeds ``threshold`` takes
    ``argmax q`` as its pseudo-label; otherwise, if its score at the original
    label exceeds ``1 / K`` it keeps the original label; otherwise it is
    out-of-distribution and gets ``-1``.

    Args:
        cls_logits: N x K classifier logits.
        proto_logits: N x K prototype logits, already divided by the
            temperature.
        labels: N original (web) labels.
        alpha: weight of the classifier prediction.
        threshold: confidence threshold T (0.8; 0.6 for WebVision V2).

    Returns:
        LongTensor of N pseudo-labels, ``-1`` marking OOD samples.
    """
    num_classes = cls_logits.shape[1]
    soft = alpha * F.softmax(cls_logits.float(), dim=1) + \
        (1 - alpha) * F.softmax(proto_logits.float(), dim=1)
    labels = labels.long()
    keeps_label = soft.gather(1, labels[:, None]).squeeze(1) > 1 / num_classes
    # ``max`` returns the first maximal index on ties, as the released code.
    max_score, hard_label = soft.max(dim=1)
    confident = max_score > threshold
    return torch.where(
        confident, hard_label,
        torch.where(keeps_label, labels, torch.full_like(labels, OOD_LABEL)))


@torch.no_grad()
def update_prototypes(prototypes: torch.Tensor, feats: torch.Tensor,
                      labels: torch.Tensor, momentum: float) -> torch.Tensor:
    """Momentum update of class prototypes (paper eq. 6), vectorised.

    The released code applies ``c_y <- m * c_y + (1 - m) * z`` for every
    sample of the (all-gathered) batch in order, then L2-normalises every
    prototype row once per batch (the paper's eq. 6 reads as if it
    normalised after each sample; we follow the released code). For the
    ``n`` samples ``z_1..z_n`` of one class the sequential rule has the closed
    form ``m^n c + (1 - m) * sum_i m^(n - i) z_i``, which is what this
    function computes, with no Python loop over samples.

    Args:
        prototypes: K x D prototypes (not modified).
        feats: N x D normalised embeddings, in batch order.
        labels: N labels; entries < 0 (OOD) are skipped.
        momentum: prototype momentum m (0.999).

    Returns:
        New K x D float32 prototypes with every row L2-normalised (rows
        that are zero stay zero).
    """
    num_classes, dim = prototypes.shape
    labels = labels.long()
    # OOD samples go to an extra row K, dropped at the end: selecting the
    # valid samples instead (``feats[labels >= 0]``, or ``bincount``) would
    # have a data-dependent size, that is a host-device sync on the GPU.
    slot = torch.where(labels >= 0, labels, num_classes)
    counts = torch.zeros(num_classes + 1, dtype=torch.long,
                         device=labels.device).index_add_(
                             0, slot, torch.ones_like(slot))
    # rank of each sample among the samples of its class, in batch order
    order = torch.argsort(slot, stable=True)
    group_start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(slot)
    rank[order] = torch.arange(slot.numel(),
                               device=slot.device) - group_start[slot[order]]
    exponent = (counts[slot] - 1 - rank).float()
    weights = (1 - momentum) * torch.pow(momentum, exponent)
    decay = torch.pow(momentum, counts[:num_classes].float())
    new = torch.cat([
        prototypes.float() * decay[:, None],
        prototypes.new_zeros(1, dim, dtype=torch.float32)
    ])
    new.index_add_(0, slot, feats.float() * weights[:, None])
    return F.normalize(new[:num_classes], p=2, dim=1)
