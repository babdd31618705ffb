"""mmengine's ``RuntimeInfoHook`` without a host-device sync per iteration."""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.registry import HOOKS
from mmengine.utils import apply_to

# an iteration's outputs: per key, a one-element tensor (detached) or the
# value itself
_Values = Dict[str, object]


def _snapshot(outputs: dict) -> _Values:
    """The iteration's logged values as they are: one-element tensors stay
    on their device, detached (a view: no kernel, no copy)."""
    return {
        key:
        value.detach() if isinstance(value, torch.Tensor)
        and value.numel() == 1 and value.requires_grad else value
        for key, value in outputs.items()
    }


def _read(pending: List[_Values]) -> List[_Values]:
    """``pending`` with each one-element tensor replaced by what ``.item()``
    returns (``.tolist()`` gives the same numbers): the tensors of one device
    and dtype are stacked and copied to the host at once, the only wait for
    the device."""
    read = [dict(values) for values in pending]
    groups: Dict[Tuple[torch.device, torch.dtype], list] = {}
    for values in read:
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                groups.setdefault((value.device, value.dtype), []).append(
                    (values, key))
    for entries in groups.values():
        host = torch.stack(
            [values[key].reshape(()) for values, key in entries]).tolist()
        for (values, key), item in zip(entries, host):
            values[key] = item
    return read


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """``RuntimeInfoHook`` whose ``after_train_iter`` keeps the model's
    log variables on the device and writes them to the message hub only
    when they are read.

    mmengine's hook calls ``.item()`` on every logged tensor of every
    iteration, a host-device sync each, so the host waits for the GPU in
    every iteration. This hook keeps each iteration's values as they are
    (the one-element tensors that ``BaseModel.parse_losses`` makes afresh
    in every step, detached): no kernel, copy or allocation per
    iteration. It flushes them when a ``LoggerHook`` logs (its interval;
    the end of an epoch unless it ignores the last iterations), at the end
    of an epoch, before validation, at the end of training and before a
    checkpoint is saved (the message hub is part of it): the pending
    values of one device and dtype are stacked and read in one copy.
    Each iteration's values enter the message hub in order and as the
    Python numbers ``.item()`` gives, so every history buffer, window and
    interval mean is what ``RuntimeInfoHook`` gives. Without a
    ``LoggerHook`` it flushes every iteration, as ``RuntimeInfoHook`` does.

    A hook that reads the model's ``train/`` scalars from the message hub
    in other iterations sees them up to the last flush.
    """

    def __init__(self) -> None:
        self._pending: List[_Values] = []
        self._loggers: List[LoggerHook] = []

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            self._pending.append(_snapshot(outputs))
        if self._logged_now(runner, batch_idx):
            self.flush(runner)

    def _logged_now(self, runner, batch_idx: int) -> bool:
        """Whether a ``LoggerHook`` reads the message hub in this
        iteration's ``after_train_iter`` (its conditions, mmengine 0.10)."""
        if not self._loggers:
            return True
        loader = runner.train_dataloader
        return any(
            hook.every_n_inner_iters(batch_idx, hook.interval) or (
                hook.end_of_epoch(loader, batch_idx) and
                (not hook.ignore_last or len(loader) <= hook.interval))
            for hook in self._loggers)

    def flush(self, runner) -> None:
        """Write the pending iterations' values to the message hub."""
        for values in _read(self._pending):
            for key, value in values.items():
                runner.message_hub.update_scalar(f'train/{key}', value)
        self._pending = []

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def before_val(self, runner) -> None:
        self.flush(runner)
        super().before_val(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The runner took the message hub's state before this hook: with
        values pending, flush and take it again, as the runner does."""
        if self._pending:
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(
                runner.message_hub.state_dict(), lambda x: hasattr(x, 'cpu'),
                lambda x: x.cpu())
