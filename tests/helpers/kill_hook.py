"""Hooks that SIGKILL their own training process, as a node failure or
``kill -9`` would, for the kill-and-resume tests (imported by the training
subprocess through ``custom_imports``)."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillAtIter(Hook):
    """Kill the process before iteration ``iteration`` (0-based, counted
    over the whole run)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if runner.iter == self.iteration:
            _die()


@HOOKS.register_module()
class KillDuringSave(Hook):
    """Kill the process while it saves the checkpoint of epoch ``epoch``, at
    the worst moment: the checkpoint is written to its temporary file but
    not yet renamed into place (everything a hook deletes before saving is
    already gone)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if checkpoint['meta']['epoch'] != self.epoch:
            return
        replace = os.replace

        def replace_or_die(src, dst, **kwargs):
            if str(dst).endswith('.pth'):
                _die()
            replace(src, dst, **kwargs)

        os.replace = replace_or_die
