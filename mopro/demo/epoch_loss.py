"""The training loss of a run, for the demo's report."""
from typing import List, Optional

from mmengine.hooks import Hook


class EpochLossHook(Hook):
    """Records the ``loss`` the model's ``train_step`` returns: that of the
    run's first iteration (``first``) and its mean over each epoch
    (``losses``).

    The validation top-1 of 320 test digits moves in steps of 0.3%, so two
    runs can share it while their training differs; the mean loss shows a
    change of the data, augmentation, model or optimizer in the epoch
    where it happens. The first iteration's loss is computed before any
    update: data, augmentation, initial weights and loss alone, which other
    CPUs reproduce to rounding, whereas the following iterations amplify
    rounding differences (tests/test_demo/test_committed_report.py).
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.first: Optional[float] = None
        self.losses: List[float] = []
        self._sum = 0.0
        self._count = 0

    def before_train_epoch(self, runner) -> None:
        self._sum, self._count = 0.0, 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        loss = outputs['loss'].item()
        if self.first is None:
            self.first = loss
        self._sum += loss
        self._count += 1

    def after_train_epoch(self, runner) -> None:
        self.losses.append(self._sum / self._count)
