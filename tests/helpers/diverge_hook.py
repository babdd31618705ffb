"""A hook that makes one rank's BatchNorm statistics infinite, as a
diverged step would, for the tests of the refused checkpoint of a launched
job (imported by the training processes through ``custom_imports``)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model


@HOOKS.register_module()
class DivergeOnRank(Hook):
    """After the last iteration of epoch ``epoch`` (0-based), fill the
    first BatchNorm running variance of rank ``rank``'s model with inf."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank = rank
        self.epoch = epoch

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        last = batch_idx == len(runner.train_dataloader) - 1
        if runner.rank == self.rank and runner.epoch == self.epoch and last:
            get_ori_model(runner.model).backbone.bn1.running_var.fill_(
                float('inf'))
