"""MoPro: webly-supervised learning with momentum prototypes.

Li, Xiong & Hoi, ICLR 2021 (Algorithm 1). This module follows the released
code where it differs from the paper's text; each difference is marked
"released code".
"""
import copy
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, get_world_size
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...utils.errors import ConfigError
from ...utils.validate import check_bool, check_int, check_number
from ..noise_correction import OOD_LABEL, correct_labels, update_prototypes
from ..nonfinite import NonFiniteGuard
from ..utils.compile import compile_options, compile_submodules
from ..utils.shuffle import step_shuffle


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks in rank order (no gradient)."""
    return torch.cat(all_gather(tensor.detach()), dim=0)


def _gt_labels(
        data_samples: Union[torch.Tensor, List[DataSample]]) -> torch.Tensor:
    """The web labels y of a batch: a label tensor (``multiview_collate``)
    or the DataSamples' ``gt_label``."""
    if not isinstance(data_samples, torch.Tensor):
        data_samples = torch.cat([ds.gt_label for ds in data_samples])
    return data_samples.long()


def _correction_rates(pseudo_labels: torch.Tensor,
                      labels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The batch's fractions of OOD and relabelled samples (logged)."""
    ood = pseudo_labels == OOD_LABEL
    return dict(
        frac_ood=ood.float().mean(),
        frac_relabelled=((pseudo_labels != labels) & ~ood).float().mean())


def _check_arguments(**kwargs) -> None:
    """Type and range of MoPro's arguments, named by their config keys."""
    for key in ('num_classes', 'feat_dim', 'embed_dim', 'proj_hidden_dim',
                'queue_len'):
        check_int(kwargs[key], f'model.{key}',
                  minimum=2 if key == 'num_classes' else 1)
    for key in ('momentum', 'proto_momentum'):
        check_number(kwargs[key], f'model.{key}', 0, 1, high_open=True)
    for key in ('alpha', 'threshold'):
        check_number(kwargs[key], f'model.{key}', 0, 1)
    for key in ('shuffle_bn', 'channels_last'):
        check_bool(kwargs[key], f'model.{key}')
    try:
        compile_options(kwargs['compile'])
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def check_queue_fits(queue_len: Any, global_batch: int,
                     batch_source: Optional[str] = None) -> None:
    """MoPro enqueues the global batch every iteration: it must fit
    ``model.queue_len`` (nothing to check for a config without a queue).
    ``batch_source`` says where the batch comes from (a config, a
    benchmark's flags); the model itself checks each batch it enqueues,
    the tools and benchmarks the batch they will make, before any work."""
    if isinstance(queue_len, int) and global_batch > queue_len:
        source = f' ({batch_source})' if batch_source else ''
        raise ConfigError(
            f'model.queue_len={queue_len} is smaller than the global batch '
            f'{global_batch}{source}: MoPro enqueues every batch')


@MODELS.register_module()
class MoPro(BaseSelfSupervisor):
    """MoPro algorithm.

    Encoder: ``backbone`` + ``neck`` (global average pooling) gives the
    representation v; ``classifier`` (linear, K classes) and ``projector``
    (Linear-ReLU-Linear, output L2-normalised embedding z) sit on v. The
    momentum encoder (``momentum_backbone`` + ``momentum_projector``) is the
    moving average of the encoder. ``queue`` (D x R) holds momentum
    embeddings, ``prototypes`` (K x D) the momentum prototypes; both, the
    queue pointer and the momentum encoder are in the state dict.

    The phase of training (prototype loss on, noise correction on) is set by
    :class:`MoProHook` from the epoch; ``inputs`` are the weak view (encoder)
    and the strong view (momentum encoder), in that order.

    Args:
        backbone: backbone config (mmpretrain ResNet).
        neck: pooling neck config (GlobalAveragePooling).
        head: :class:`MoProHead` config.
        num_classes: K.
        feat_dim: channels of v (2048 for ResNet-50).
        embed_dim: D, dimension of z (128).
        proj_hidden_dim: hidden width of the projector (2048).
        queue_len: R, number of momentum embeddings in the queue (8192).
        momentum: m of the momentum encoder (0.999).
        proto_momentum: m of the prototypes (0.999).
        alpha: weight of the classifier in the soft label (0.5).
        threshold: pseudo-label confidence threshold T (0.8).
        shuffle_bn: shuffle the key batch across ranks for BatchNorm
            (:mod:`mopro.models.utils.shuffle`: one all-to-all each way,
            the permutation drawn on every rank from the Runner's seed and
            iteration).
        channels_last: run convolutions in channels-last memory format (the
            data preprocessor makes the views so, unless it sets its own).
        nonfinite: what a non-finite loss does
            (:class:`~mopro.models.nonfinite.NonFiniteGuard`, the
            ``finite_guard`` attribute). Queue and prototypes are never
            written from such a batch. ``'raise'`` stops the run with
            :class:`~mopro.models.nonfinite.NonFiniteError` at the start of
            a later iteration, once the flag's copy to the host has landed,
            and at the latest before the next checkpoint is saved
            (:class:`MoProHook`): the step never waits for the device.
            ``'skip'`` gives the batch a zero loss and restores the
            BatchNorm statistics from before its forward passes; it needs the
            flag on the host at once (one sync per step) and a copy of the
            statistics per step. With ``'raise'`` the statistics of the
            failed step are not restored: the run stops.
        max_consecutive_skips: with ``nonfinite='skip'``, stop the run after
            this many skipped iterations in a row.
        compile: ``torch.compile`` the encoder's and the momentum
            encoder's backbones in place (:mod:`mopro.models.utils.compile`):
            ``False`` (eager), ``True`` (torch's defaults: inductor, default
            mode, automatic dynamic shapes), or a dict of ``torch.compile``
            arguments, e.g. ``dict(mode='max-autotune', dynamic=None,
            backend='inductor')``. State-dict keys, the momentum update and
            the momentum encoder's own BN statistics are those of the eager
            model; a failed build warns once and runs eagerly. The GPU
            pretraining configs turn it on; ``adapt_to_device`` turns it off
            without CUDA.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict,
                 num_classes: int, feat_dim: int = 2048, embed_dim: int = 128,
                 proj_hidden_dim: int = 2048, queue_len: int = 8192,
                 momentum: float = 0.999, proto_momentum: float = 0.999,
                 alpha: float = 0.5, threshold: float = 0.8,
                 shuffle_bn: bool = True, channels_last: bool = False,
                 nonfinite: str = 'raise', max_consecutive_skips: int = 10,
                 compile: Union[bool, dict] = False,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        _check_arguments(num_classes=num_classes, feat_dim=feat_dim,
                         embed_dim=embed_dim, proj_hidden_dim=proj_hidden_dim,
                         queue_len=queue_len, momentum=momentum,
                         proto_momentum=proto_momentum, alpha=alpha,
                         threshold=threshold, shuffle_bn=shuffle_bn,
                         channels_last=channels_last, compile=compile)
        finite_guard = NonFiniteGuard(
            nonfinite, max_consecutive_skips, name='MoPro',
            kept='; queue and prototypes were not updated')
        super().__init__(backbone=backbone, neck=neck, head=head,
                         pretrained=pretrained,
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.num_classes = num_classes
        self.queue_len = queue_len
        self.momentum = momentum
        self.proto_momentum = proto_momentum
        self.alpha = alpha
        self.threshold = threshold
        self.shuffle_bn = shuffle_bn
        self.channels_last = channels_last
        self.finite_guard = finite_guard

        self.classifier = nn.Linear(feat_dim, num_classes)
        self.projector = nn.Sequential(
            nn.Linear(feat_dim, proj_hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(proj_hidden_dim, embed_dim))
        self.momentum_backbone = copy.deepcopy(self.backbone)
        self.momentum_projector = copy.deepcopy(self.projector)
        for param in self._momentum_params():
            param.requires_grad = False

        self.register_buffer(
            'queue', F.normalize(torch.randn(embed_dim, queue_len), dim=0))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))
        self.register_buffer('prototypes', torch.zeros(num_classes, embed_dim))

        # Phase flags, set every epoch by MoProHook (not part of the state:
        # they are derived from the epoch, so a resumed run gets them right).
        self.use_proto_loss = False
        self.correct_noise = False
        # shuffles so far: the step of the permutation outside a Runner
        self._shuffles = 0

        if channels_last:
            self.to(memory_format=torch.channels_last)
        if getattr(self.data_preprocessor, 'channels_last', False) is None:
            # the views are made in the convolutions' memory format
            self.data_preprocessor.channels_last = channels_last
        compile_submodules(self, ('backbone', 'momentum_backbone'), compile)

    # ------------------------------------------------------------------
    # encoder and momentum encoder
    def _online_params(self) -> List[nn.Parameter]:
        return [*self.backbone.parameters(), *self.projector.parameters()]

    def _momentum_params(self) -> List[nn.Parameter]:
        return [
            *self.momentum_backbone.parameters(),
            *self.momentum_projector.parameters()
        ]

    def init_weights(self) -> None:
        """Initialise the encoder, then copy it into the momentum encoder.

        The copy made in ``__init__`` predates the Runner's weight
        initialisation, so it is refreshed here.
        """
        super().init_weights()
        self.momentum_backbone.load_state_dict(self.backbone.state_dict())
        self.momentum_projector.load_state_dict(self.projector.state_dict())

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m * theta_k + (1 - m) * theta_q, for parameters only.

        The momentum encoder keeps its own BatchNorm statistics, computed in
        its own forward passes, as in the released code (mmengine's
        ExponentialMovingAverage would copy the encoder's buffers instead).
        One fused ``_foreach_lerp_`` replaces a per-tensor Python loop.
        """
        torch._foreach_lerp_(self._momentum_params(), self._online_params(),
                             1.0 - self.momentum)

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return img.contiguous(memory_format=torch.channels_last)
        return img

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor]:
        """The representation v: pooled backbone features, ``(N x C,)``."""
        return self.neck(self.backbone(self._prepare(inputs)))

    def encode(
        self, inputs: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (v, classifier logits, normalised embedding z)."""
        feats = self.extract_feat(inputs)[-1]
        embed = F.normalize(self.projector(feats), dim=1)
        return feats, self.classifier(feats), embed

    @torch.no_grad()
    def momentum_encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised momentum embeddings z' of ``inputs``.

        Under DDP the global batch is shuffled across ranks first, so that
        BatchNorm statistics do not leak the positive pair (MoCo's shuffling
        BN, released code), by one all-to-all each way
        (:mod:`mopro.models.utils.shuffle`).
        """
        shuffle = None
        if self.shuffle_bn and get_world_size() > 1:
            shuffle = step_shuffle(inputs, self._shuffles)
            self._shuffles += 1
            inputs = shuffle.shuffle(inputs)
        feats = self.neck(self.momentum_backbone(self._prepare(inputs)))[-1]
        keys = F.normalize(self.momentum_projector(feats).float(), dim=1)
        if shuffle is not None:
            keys = shuffle.unshuffle(keys)
        return keys

    # ------------------------------------------------------------------
    # queue and prototypes
    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor,
                accept: Optional[torch.Tensor] = None) -> None:
        """Write the (all-rank) keys at the queue pointer, FIFO.

        The pointer stays on the device, so this does no host sync; the queue
        is a ring buffer, so the batch need not divide R. ``accept`` (a
        boolean device scalar) False leaves queue and pointer as they are,
        also without a host sync.
        """
        batch = keys.shape[0]
        check_queue_fits(self.queue_len, batch)
        idx = (self.queue_ptr +
               torch.arange(batch, device=keys.device)) % self.queue_len
        new = keys.t().to(self.queue.dtype)
        step = batch
        if accept is not None:
            new = torch.where(accept, new, self.queue[:, idx])
            step = accept.long() * batch
        self.queue.index_copy_(1, idx, new)
        self.queue_ptr.add_(step).remainder_(self.queue_len)

    def prototype_logits(self, embed: torch.Tensor) -> torch.Tensor:
        """``z . C^T / tau`` against a snapshot of the prototypes, in float32
        also under autocast (noise correction compares these scores with
        thresholds)."""
        with torch.autocast(device_type=embed.device.type, enabled=False):
            return embed.float() @ self.prototypes.detach().clone().t() / \
                self.head.temperature

    # ------------------------------------------------------------------
    # training
    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """One MoPro iteration: Algorithm 1, its line numbers in comments.

        Order follows the released code: momentum update before the key
        forward; instance logits against the queue before this batch is
        enqueued; prototype logits against the prototypes before this batch
        updates them. Queue and prototypes are written only where the loss
        is finite (decided on the device, :attr:`finite_guard`), and the
        step makes no host-device sync (except with ``nonfinite='skip'``).
        """
        self.finite_guard.before_step(self)
        img_weak, img_strong = inputs  # 4-5: weak and strong augmentation
        labels = _gt_labels(data_samples)
        # 6, 7, 9: representation v, embedding z, class prediction p
        _, cls_logits, embed = self.encode(img_weak)
        # 8: momentum embedding z' (released code: the momentum encoder is
        # updated first)
        self.momentum_update()
        keys = self.momentum_encode(img_strong)
        proto_logits = self._prototypical_logits(embed)  # 10
        # 11-19: noise correction
        pseudo_labels = self._pseudo_labels(cls_logits, proto_logits, labels)
        # 20-27, 31: cross-entropy, prototypical and instance losses
        losses = self.head.loss(cls_logits,
                                proto_logits if self.use_proto_loss else None,
                                embed, keys,
                                self.queue.detach().clone(), pseudo_labels)
        losses.update(_correction_rates(pseudo_labels, labels))
        losses, finite = self.finite_guard.after_step(self, losses)
        # 29: the queue of momentum embeddings; momentum prototypes
        self._update_queue(keys, finite)
        self._update_prototypes(embed, pseudo_labels, finite)
        return losses

    def _prototypical_logits(self,
                             embed: torch.Tensor) -> Optional[torch.Tensor]:
        """``z . c_k / tau`` (Algorithm 1 line 10, before the softmax), or
        None in the phases that use no prototypes."""
        if self.use_proto_loss or self.correct_noise:
            return self.prototype_logits(embed)
        return None

    def _pseudo_labels(self, cls_logits: torch.Tensor,
                       proto_logits: Optional[torch.Tensor],
                       labels: torch.Tensor) -> torch.Tensor:
        """Corrected labels (Algorithm 1 lines 11-19, eq. 4-5); during the
        warm-up every pseudo-label is the original label."""
        if not self.correct_noise:
            return labels
        return correct_labels(cls_logits.detach(), proto_logits.detach(),
                              labels, self.alpha, self.threshold)

    def _update_queue(self, keys: torch.Tensor, finite: torch.Tensor) -> None:
        """Enqueue the all-rank keys where ``finite`` (a device scalar)."""
        self.enqueue(_gather(keys), accept=finite)

    def _update_prototypes(self, embed: torch.Tensor,
                           pseudo_labels: torch.Tensor,
                           finite: torch.Tensor) -> None:
        """Move the prototypes (eq. 6) with the all-rank embeddings and
        pseudo-labels where ``finite`` (a device scalar)."""
        new_prototypes = update_prototypes(self.prototypes, _gather(embed),
                                           _gather(pseudo_labels),
                                           self.proto_momentum)
        self.prototypes.copy_(
            torch.where(finite, new_prototypes, self.prototypes))

    # ------------------------------------------------------------------
    # inference
    def forward(self, inputs, data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """``tensor``: (v,) features; ``loss``: losses; ``predict``:
        classifier scores in DataSamples (for mmpretrain's metrics)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def predict(
            self, inputs: torch.Tensor,
            data_samples: Optional[List[DataSample]] = None
    ) -> List[DataSample]:
        """Softmax of the classifier, one DataSample per image."""
        _, cls_logits, _ = self.encode(inputs)
        scores = F.softmax(cls_logits.float(), dim=1)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for ds, score in zip(data_samples, scores):
            ds.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples
