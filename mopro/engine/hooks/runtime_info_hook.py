"""mmengine's ``RuntimeInfoHook`` without a host-device sync per iteration."""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.registry import HOOKS
from mmengine.utils import apply_to

# per logged key: (key, device or None, index in the iteration's values
# from that device or the value itself, Python type of the value)
_Entry = Tuple[str, Optional[torch.device], object, Optional[type]]


def _python_type(value: torch.Tensor) -> type:
    """What ``value.item()`` returns."""
    if value.dtype == torch.bool:
        return bool
    return float if value.is_floating_point() or value.is_complex() else int


def _to_host(
        values: torch.Tensor
) -> Tuple[torch.Tensor, Optional[torch.cuda.Event]]:
    """``values`` on the host, and the CUDA event after which they are
    there (None: already there): a CUDA tensor is copied into pinned
    memory without waiting for it."""
    if not values.is_cuda:
        return values, None
    host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host.copy_(values, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record(torch.cuda.current_stream(values.device))
    return host, ready


def _snapshot(outputs: dict) -> Tuple[List[_Entry], Dict[torch.device, tuple]]:
    """The iteration's logged values: the one-element tensors copied into
    one new tensor per device (one kernel; float64 where a value is an
    integer, so that every value converts exactly), on its way to the host
    (:func:`_to_host`)."""
    entries: List[_Entry] = []
    by_device: Dict[torch.device, List[torch.Tensor]] = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            group = by_device.setdefault(value.device, [])
            entries.append(
                (key, value.device, len(group), _python_type(value)))
            value = value.detach().reshape(1)
            group.append(
                value if value.is_floating_point() else value.double())
        else:
            entries.append((key, None, value, None))
    return entries, {d: _to_host(torch.cat(v)) for d, v in by_device.items()}


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """``RuntimeInfoHook`` whose ``after_train_iter`` keeps the model's
    log variables on the device and writes them to the message hub only
    when they are read.

    mmengine's hook calls ``.item()`` on every logged tensor of every
    iteration, a host-device sync each, so the host waits for the GPU in
    every iteration. This hook copies an iteration's values into one tensor
    on the device and from there into pinned host memory, without waiting
    (an event marks the copy's end), and flushes them, reading each
    iteration's values once its event has passed (only the latest
    iterations' may still be on their way), when a ``LoggerHook`` logs (its
    interval;
    the end of an epoch unless it ignores the last iterations), at the end
    of an epoch, before
    validation, at the end of training and before a checkpoint is saved
    (the message hub is part of it). Each iteration's values enter the
    message hub in order and as Python numbers, so every history buffer,
    window and interval mean is what ``RuntimeInfoHook`` gives. Without a
    ``LoggerHook`` it flushes every iteration, as ``RuntimeInfoHook`` does.

    A hook that reads the model's ``train/`` scalars from the message hub
    in other iterations sees them up to the last flush.
    """

    def __init__(self) -> None:
        self._pending: List[Tuple[List[_Entry], Dict[torch.device,
                                                     tuple]]] = []
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
        for entries, values in self._pending:
            host = {}
            for device, (tensor, ready) in values.items():
                if ready is not None:
                    ready.synchronize()
                host[device] = tensor.tolist()
            for key, device, value, kind in entries:
                if device is not None:
                    value = kind(host[device][value])
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
