"""The three MoPro losses (paper Section 3.1, eq. 1-3 and eq. 7)."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ...utils.validate import check_number


def _masked_cross_entropy(logits: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over samples whose target is >= 0.

    The released code drops OOD samples from the batch and averages over the
    rest; a batch with no valid sample gives 0 rather than NaN (the released
    code would produce NaN there).
    """
    valid = targets >= 0
    loss = F.cross_entropy(logits, targets.clamp(min=0),
                           reduction='none') * valid
    return loss.sum() / valid.sum().clamp(min=1)


def _masked_accuracy(logits: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy in percent over samples whose target is >= 0."""
    valid = targets >= 0
    correct = (logits.argmax(dim=1) == targets) & valid
    return 100.0 * correct.sum() / valid.sum().clamp(min=1)


@MODELS.register_module()
class MoProHead(BaseModule):
    """Losses of MoPro: L_ce + lambda_pro * L_pro + lambda_ins * L_ins.

    - ``L_ce``: cross-entropy of the classifier against the pseudo-labels.
    - ``L_pro`` (eq. 2): cross-entropy of ``z . C^T / tau`` against the
      pseudo-labels.
    - ``L_ins`` (eq. 1): InfoNCE of the query ``z`` against its momentum
      embedding ``z'`` (positive) and the queue (negatives).

    OOD samples (pseudo-label -1) are left out of L_ce and L_pro but stay in
    L_ins. All arithmetic runs in float32, also under autocast.

    Args:
        temperature: tau of eq. 1-2. Defaults to 0.1.
        proto_weight: lambda_pro. Defaults to 1.
        inst_weight: lambda_ins. Defaults to 1.
    """

    def __init__(self, temperature: float = 0.1, proto_weight: float = 1.0,
                 inst_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.temperature = check_number(temperature, 'model.head.temperature',
                                        low=0, low_open=True)
        self.proto_weight = check_number(proto_weight,
                                         'model.head.proto_weight', low=0)
        self.inst_weight = check_number(inst_weight, 'model.head.inst_weight',
                                        low=0)

    def instance_logits(self, query: torch.Tensor, key: torch.Tensor,
                        queue: torch.Tensor) -> torch.Tensor:
        """N x (1 + R) logits: positive first, then the D x R queue."""
        positive = (query * key).sum(dim=1, keepdim=True)
        negative = query @ queue
        return torch.cat([positive, negative], dim=1) / self.temperature

    def loss(self, cls_logits: torch.Tensor,
             proto_logits: Optional[torch.Tensor], query: torch.Tensor,
             key: torch.Tensor, queue: torch.Tensor,
             pseudo_labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Compute the weighted losses and their accuracies.

        Args:
            cls_logits: N x K classifier logits.
            proto_logits: N x K prototype logits (already divided by tau), or
                None while the prototype loss is off (first epoch).
            query: N x D normalised embeddings of the weak view.
            key: N x D normalised momentum embeddings of the strong view.
            queue: D x R queue of momentum embeddings (negatives).
            pseudo_labels: N labels, -1 for OOD.
        """
        with torch.autocast(device_type=query.device.type, enabled=False):
            cls_logits = cls_logits.float()
            inst_logits = self.instance_logits(query.float(), key.float(),
                                               queue.float())
            inst_targets = torch.zeros(inst_logits.shape[0], dtype=torch.long,
                                       device=inst_logits.device)
            losses = dict(
                loss_cls=_masked_cross_entropy(cls_logits, pseudo_labels),
                loss_ins=self.inst_weight *
                F.cross_entropy(inst_logits, inst_targets),
                acc_cls=_masked_accuracy(cls_logits, pseudo_labels),
                acc_ins=_masked_accuracy(inst_logits, inst_targets))
            if proto_logits is not None:
                proto_logits = proto_logits.float()
                losses['loss_pro'] = self.proto_weight * \
                    _masked_cross_entropy(proto_logits, pseudo_labels)
                losses['acc_pro'] = _masked_accuracy(proto_logits,
                                                     pseudo_labels)
        return losses
