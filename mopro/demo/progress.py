"""The demo's console: one progress line over all stages, with an ETA.

The demo runs three stages (train MoPro, clean the training set, train the
cross-entropy baseline). Its console shows a one-line plan, then one
progress line (stage, epoch, elapsed time, ETA of the whole job) and the
results; each Runner's environment and config dump, and its metric lines,
go to the run's log file only (``work_dir/<timestamp>/<timestamp>.log``).

The ETA counts work in encoder forward passes per image, a backward pass
counting as two (:data:`MOPRO_TRAIN_COST` etc.), divided by the speed
measured in the running stage.
"""
import logging
import sys
import time
from typing import List, Optional, TextIO

from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from ..engine import MoProRunner

# encoder forward passes per image: MoPro trains the encoder on the weak
# view (forward + backward) and runs the momentum encoder on the strong
# view; the cross-entropy baseline trains on one view; validation and the
# noise-cleaning pass are one forward pass
MOPRO_TRAIN_COST = 4
CE_TRAIN_COST = 3
FORWARD_COST = 1


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Stage:
    """A stage of the job: its name, its work in forward passes, and its
    size for the plan (``'40 epochs'``)."""

    def __init__(self, name: str, work: float, size: str = '') -> None:
        self.name = name
        self.work = work
        self.size = size


class JobProgress:
    """The progress line of a job of several stages.

    On a terminal the line is rewritten in place after every step; in a
    log (a pipe or a file) a new line is printed at most every
    ``log_interval`` seconds, and at the start and end of each stage.
    """

    def __init__(self, stages: List[Stage], stream: TextIO = sys.stdout,
                 log_interval: float = 15.0) -> None:
        self.stages = stages
        self.stream = stream
        self.on_terminal = stream.isatty()
        self.log_interval = log_interval
        self.start = time.monotonic()
        self.index = -1
        self.done = 0.0  # work of the finished stages and the running one
        self.stage_done = 0.0
        self.stage_start = self.start
        self.status = ''
        self.last_printed = float('-inf')

    @property
    def total(self) -> float:
        return sum(stage.work for stage in self.stages)

    def eta(self) -> Optional[float]:
        """Seconds left for the whole job at the running stage's speed
        (before its first step: the speed so far), None before any."""
        now = time.monotonic()
        if self.stage_done > 0:
            speed = self.stage_done / (now - self.stage_start)
        elif self.done > 0:
            speed = self.done / (now - self.start)
        else:
            return None
        return max(self.total - self.done, 0.0) / speed

    def line(self) -> str:
        stage = self.stages[self.index]
        eta = self.eta()
        return (f'[{self.index + 1}/{len(self.stages)} {stage.name}] '
                f'{self.status} | elapsed '
                f'{_clock(time.monotonic() - self.start)} | ETA '
                f'{_clock(eta) if eta is not None else "--"}')

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_terminal:
            self.stream.write(f'\r\x1b[K{self.line()}')
        elif force or now - self.last_printed >= self.log_interval:
            self.stream.write(f'{self.line()}\n')
            self.last_printed = now
        self.stream.flush()

    def start_stage(self, status: str) -> None:
        """Begin the next stage (``status``: what it does first)."""
        self.index += 1
        self.stage_done = 0.0
        self.stage_start = time.monotonic()
        self.status = status
        self._show(force=True)

    def step(self, work: float, status: str) -> None:
        """Count ``work`` forward passes done; show ``status`` (in a log:
        always after the stage's first step, the first with a speed)."""
        first = self.stage_done == 0
        self.done += work
        self.stage_done += work
        self.status = status
        self._show(force=first)

    def end_stage(self) -> None:
        """Account the stage's whole planned work; end its line."""
        stage = self.stages[self.index]
        self.done += stage.work - self.stage_done
        self.stage_done = stage.work
        self._show(force=not self.on_terminal)
        if self.on_terminal:
            self.stream.write('\n')
            self.stream.flush()

    def message(self, text: str) -> None:
        """Print ``text`` on its own line (ending a terminal's line)."""
        if self.on_terminal and self.index >= 0:
            self.stream.write('\r\x1b[K')
        self.stream.write(f'{text}\n')
        self.stream.flush()


class ProgressHook(Hook):
    """Reports a Runner's training and validation steps to a
    :class:`JobProgress`, with the last validation top-1."""

    priority = 'LOWEST'

    def __init__(self, progress: JobProgress, train_cost: float) -> None:
        self.progress = progress
        self.train_cost = train_cost
        self.val_top1: Optional[float] = None

    def _status(self, runner, batch_idx: int, total: int) -> str:
        status = (f'epoch {runner.epoch + 1}/{runner.max_epochs} '
                  f'iter {batch_idx + 1}/{total}')
        if self.val_top1 is not None:
            status += f' | val top-1 {self.val_top1:.1f}%'
        return status

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        loader = runner.train_dataloader
        self.progress.step(self.train_cost * len(loader.dataset) / len(loader),
                           self._status(runner, batch_idx, len(loader)))

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        loader = runner.val_dataloader
        self.progress.step(
            FORWARD_COST * len(loader.dataset) / len(loader),
            f'epoch {runner.epoch}/{runner.max_epochs} validation')

    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics and 'accuracy/top1' in metrics:
            self.val_top1 = float(metrics['accuracy/top1'])


class _NoDeprecationNotices(logging.Filter):
    """Drops mmengine's notices of its own API deprecations (its
    CheckpointHook announces FileClient's in every run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ('will be deprecated in future' in message
                    or 'is the alias of' in message)


class QuietConsoleRunner(MoProRunner):
    """A Runner whose console shows warnings and errors only (not mmengine's
    deprecation notices); its log file keeps everything (environment,
    config, metric lines, notices)."""

    def build_logger(self, log_level='INFO', log_file=None,
                     **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
                handler.addFilter(_NoDeprecationNotices())
        return logger
