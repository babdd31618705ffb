"""``KillAtIter``: SIGKILLs its own training process before a given
iteration, for the kill-and-resume tests (imported by the training
subprocess through ``custom_imports``)."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIter(Hook):
    """Kill the process, as a node failure or ``kill -9`` would, before
    iteration ``iteration`` (0-based, counted over the whole run)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if runner.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
