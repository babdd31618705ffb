"""What a training step does with a non-finite loss.

:class:`NonFiniteGuard` is the one place that decides it, for MoPro and for
the classifiers (cross-entropy baselines, cRT, fine-tuning). A model calls
:meth:`NonFiniteGuard.before_step` before its forward passes and
:meth:`NonFiniteGuard.after_step` on its losses; a hook
(:class:`mopro.engine.NonFiniteCheckHook`, which :class:`MoProHook`
extends) calls :meth:`NonFiniteGuard.check` before every checkpoint and at
the end of training, so no checkpoint holds the weights of a non-finite
step.

- ``'raise'`` (default): the step records its all-rank finite flag on the
  device and starts copying it to the host; a later step reads the flags
  whose copy has landed, and :meth:`check` waits for the rest. The step
  itself never waits for the device. The run stops with
  :class:`NonFiniteError`.
- ``'skip'``: the flag is read on the host at once (one host-device sync per
  step); a non-finite step gets zero losses and the BatchNorm statistics of
  before its forward passes. A step is non-finite when its loss is, or when
  its forward passes left a BatchNorm statistic non-finite (huge
  activations overflow the running variance while the normalised output,
  and so the loss, stay finite): either way the statistics it leaves are
  those of before it, which are finite. Skipped steps are counted and
  logged; a run of ``max_consecutive_skips`` skipped steps in a row stops
  the run (the weights have diverged: every further step would be skipped
  too).
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from mmengine.logging import print_log

from ..utils.errors import UserError
from ..utils.validate import check_choice, check_int

NONFINITE_ACTIONS = ('raise', 'skip')
Losses = Dict[str, torch.Tensor]


class NonFiniteError(UserError, FloatingPointError):
    """A training loss was not finite (NaN or infinite)."""


def named_normalization_statistics(
        module: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """``(name, buffer)`` of the running statistics (mean, variance, batch
    count) of every BatchNorm-like layer of ``module``: what a forward pass
    in train mode changes besides the output."""
    stats = []
    for prefix, layer in module.named_modules():
        if isinstance(layer, nn.modules.batchnorm._NormBase) and \
                layer.track_running_stats:
            stats.extend(
                (f'{prefix}.{name}' if prefix else name, buf)
                for name, buf in (('running_mean', layer.running_mean),
                                  ('running_var', layer.running_var),
                                  ('num_batches_tracked',
                                   layer.num_batches_tracked))
                if buf is not None)
    return stats


def normalization_statistics(module: nn.Module) -> List[torch.Tensor]:
    """The buffers of :func:`named_normalization_statistics`."""
    return [buf for _, buf in named_normalization_statistics(module)]


def tensors_finite(tensors: List[torch.Tensor]) -> torch.Tensor:
    """Boolean scalar, on the device of the first floating-point tensor:
    every floating-point tensor of ``tensors`` is finite. One fused max-abs
    reduction per device (NaN propagates through it) rather than a check
    per tensor."""
    by_device: Dict[torch.device, List[torch.Tensor]] = {}
    for value in tensors:
        if value.is_floating_point():
            by_device.setdefault(value.device, []).append(value)
    if not by_device:
        return torch.ones((), dtype=torch.bool)
    first = next(iter(by_device))
    peaks = [
        peak.to(first, torch.float32) for group in by_device.values()
        for peak in torch._foreach_norm(group, float('inf'))
    ]
    return torch.isfinite(torch.stack(peaks)).all()


def first_non_finite(named: List[Tuple[str, torch.Tensor]]) -> Optional[str]:
    """The name of the first tensor of ``named`` holding NaN or infinity,
    with the count (``'x.running_var (3 of 64 values)'``); None if all are
    finite. Reads every count on the host: for error paths only."""
    for name, value in named:
        if value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return f'{name} ({bad} of {value.numel()} values)'
    return None


def _loss_terms(losses: Losses) -> Losses:
    return {k: v.detach() for k, v in losses.items() if 'loss' in k}


def _format(losses: Losses) -> str:
    return ', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())


class PinnedFlags:
    """The host copies of the finite flags (``'raise'`` on CUDA): pinned
    booleans with their CUDA events, reused. A buffer and its event are
    handed out again only after :meth:`release`, which the guard calls once
    the event has passed and the flag was read: a copy never overwrites a
    flag not yet read, and a run allocates as many buffers as steps are in
    flight at once (a few), not one per step.

    ``new_buffer`` and ``new_event`` make a buffer and an event (stand-ins
    in the tests).
    """

    def __init__(self, new_buffer: Optional[Callable[[], torch.Tensor]] = None,
                 new_event: Optional[Callable[[], object]] = None) -> None:
        self._new_buffer = new_buffer or (lambda: torch.empty(
            (), dtype=torch.bool, pin_memory=True))
        self._new_event = new_event or torch.cuda.Event
        self._free: List[Tuple[torch.Tensor, object]] = []

    def copy(self, flag: torch.Tensor) -> Tuple[torch.Tensor, object]:
        """Start copying ``flag`` to a free buffer, without waiting; return
        the buffer and the event recorded after the copy."""
        host, ready = self._free.pop() if self._free else (self._new_buffer(),
                                                           self._new_event())
        host.copy_(flag, non_blocking=True)
        ready.record()
        return host, ready

    def release(self, host: torch.Tensor, ready: object) -> None:
        """``host`` was read after ``ready`` passed: free to reuse."""
        self._free.append((host, ready))


class NonFiniteGuard:
    """Watch a model's training losses for NaN and infinity.

    Args:
        action: ``'raise'`` or ``'skip'`` (see the module docstring); the
            ``model.nonfinite`` key.
        max_consecutive_skips: with ``'skip'``, stop after this many skipped
            steps in a row (``model.max_consecutive_skips``).
        name: the model, in messages.
        kept: what a non-finite step leaves untouched, in the message.
    """

    def __init__(self, action: str = 'raise', max_consecutive_skips: int = 10,
                 name: str = 'model', kept: str = '') -> None:
        self.action = check_choice(action, 'model.nonfinite',
                                   NONFINITE_ACTIONS)
        self.max_consecutive_skips = check_int(max_consecutive_skips,
                                               'model.max_consecutive_skips')
        self.name = name
        self.kept = kept
        self.num_skipped = 0
        self.consecutive_skips = 0
        # 'raise': (host copy of the all-rank finite flag, its CUDA event
        # or None, loss terms) of steps not yet checked
        self._unchecked: List[Tuple[torch.Tensor, Optional[object],
                                    Losses]] = []
        # their host copies on CUDA, made on the first CUDA step
        self._pinned: Optional[PinnedFlags] = None
        self._saved: Optional[List[torch.Tensor]] = None

    def before_step(self, model: nn.Module) -> None:
        """Start of a training step: report the recorded flags that have
        reached the host (``'raise'``, without waiting); snapshot the
        BatchNorm statistics (``'skip'``)."""
        if self.action == 'raise':
            self.check(wait=False)
        else:
            self._saved = [
                buf.clone() for buf in normalization_statistics(model)
            ]

    def after_step(self, model: nn.Module,
                   losses: Losses) -> Tuple[Losses, torch.Tensor]:
        """Decide on the step's losses.

        Returns the losses to optimise (zero losses for a skipped step) and
        the all-rank finite flag, a boolean device scalar with which the
        model gates its own state updates (queue, prototypes) without a
        host sync.
        """
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        if self.action == 'raise':
            finite = self._all_finite(loss)
            self._record(finite, _loss_terms(losses))
            return losses, finite
        # 'skip': loss and BatchNorm statistics, one all-rank flag each
        flags = torch.stack([
            torch.isfinite(loss.detach()).all(),
            tensors_finite(normalization_statistics(model)).to(loss.device)
        ]).to(torch.int32)
        all_reduce(flags, op='min')
        # the step's one host read, as one number (2 loss + statistics)
        # through item(), which the tests' host-read detector sees
        state = int((flags[0] * 2 + flags[1]).item())
        loss_finite, stats_finite = state >= 2, state % 2 == 1
        if loss_finite and stats_finite:
            self.consecutive_skips = 0
            return losses, flags.bool().all()
        bad_stats = None if stats_finite else first_non_finite(
            named_normalization_statistics(model))
        self._skip(model, losses, bad_stats)
        return self._zero_losses(model, losses), flags.bool().all()

    def check(self, wait: bool = True) -> None:
        """Raise :class:`NonFiniteError` if a recorded step's loss was not
        finite on some rank.

        ``wait=False`` (at the start of every step) reads the flags whose
        copy has landed and leaves the others for later, so the step never
        waits for the device; ``wait=True`` (before a checkpoint is saved
        and at the end of training) waits for all.
        """
        pending = []
        for host, ready, losses in self._unchecked:
            if ready is not None and not ready.query():
                if not wait:
                    pending.append((host, ready, losses))
                    continue
                ready.synchronize()
            finite = bool(host.numpy())  # on the host: reading does not sync
            if self._pinned is not None and ready is not None:
                self._pinned.release(host, ready)
            if not finite:
                self._unchecked = []
                raise NonFiniteError(
                    f'{self.name}: non-finite loss in a recent iteration '
                    f'({_format(losses)}){self.kept}. Lower the learning '
                    'rate, check the data, or set model.nonfinite="skip".')
        self._unchecked = pending

    # ------------------------------------------------------------------
    @staticmethod
    def _all_finite(loss: torch.Tensor) -> torch.Tensor:
        """Boolean device scalar: the loss is finite on every rank."""
        flag = torch.isfinite(loss.detach()).all().to(torch.int32)
        all_reduce(flag, op='min')
        return flag.bool()

    def _record(self, finite: torch.Tensor, losses: Losses) -> None:
        """Start copying the step's finite flag to the host, without waiting
        for it: on CUDA into a reused pinned buffer (:class:`PinnedFlags`),
        with an event that tells when the copy has landed."""
        if finite.is_cuda and self._pinned is None:
            self._pinned = PinnedFlags()
        host, ready = (finite, None) if self._pinned is None else \
            self._pinned.copy(finite)
        self._unchecked.append((host, ready, losses))

    def _skip(self, model: nn.Module, losses: Losses,
              bad_stats: Optional[str]) -> None:
        """Put back the BatchNorm statistics the forward passes changed;
        count and log the skipped step; stop after too many in a row.
        ``bad_stats`` names the first non-finite statistic, if any (the
        loss may be finite then)."""
        torch._foreach_copy_(normalization_statistics(model), self._saved)
        self.num_skipped += 1
        self.consecutive_skips += 1
        terms = _format(_loss_terms(losses))
        what = (f'non-finite BatchNorm statistics ({bad_stats}; losses '
                f'{terms})' if bad_stats else f'a non-finite loss ({terms})')
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteError(
                f'{self.name}: {self.consecutive_skips} iterations in a row '
                f'had a non-finite loss or BatchNorm statistics (last: '
                f'{what}); the weights have diverged. Lower the learning '
                'rate or check the data (model.max_consecutive_skips='
                f'{self.max_consecutive_skips})')
        print_log(
            f'{self.name}: skipped an iteration with {what}{self.kept}; '
            f'{self.num_skipped} skipped so far, {self.consecutive_skips} in '
            f'a row (the run stops at {self.max_consecutive_skips})',
            logger='current', level=30)

    @staticmethod
    def _zero_losses(model: nn.Module, losses: Losses) -> Losses:
        """Zero losses that still touch every trainable parameter (so that
        DDP's gradient reduction sees them all): zero gradients."""
        zero = sum(p.sum()
                   for p in model.parameters() if p.requires_grad) * 0.0
        return {
            k: (zero if 'loss' in k else v.detach())
            for k, v in losses.items()
        }
