"""The CPU data path's batches copied to the GPU one step ahead."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model

from mopro.gpu_data.preprocessor import MoProGPUViewsPreprocessor
from mopro.models.utils import MoProDataPreprocessor
from .. import copy_ahead
from ..copy_ahead import (SLOT_KEY, CopyAheadIterator, CopyAheadLoader,
                          CopyStreams, slot)


@HOOKS.register_module()
class CopyAheadHook(Hook):
    """On CUDA, with the CPU data path's ``MoProDataPreprocessor``, copy
    each training batch to the device on a side stream while the step
    before it runs (:mod:`mopro.engine.copy_ahead`).

    Before training it wraps the train loop's batches (the iterator of
    ``IterBasedTrainLoop``, the data loader of ``EpochBasedTrainLoop``);
    before each iteration it fetches the next batch, starts its copy and
    hands the current one's copies to the training stream. Off CUDA, and with
    other preprocessors (the GPU data path decodes host bytes: its batches
    are not copied), it does nothing. The batches, their order, and so a
    resumed run, are those of a run without it; the batches a resumed loop
    skips, and the one after the last iteration, are not copied.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._streams: Optional[CopyStreams] = None

    def before_train(self, runner) -> None:
        self._streams = None
        preprocessor = get_ori_model(runner.model).data_preprocessor
        if not isinstance(preprocessor, MoProDataPreprocessor) or \
                isinstance(preprocessor, MoProGPUViewsPreprocessor):
            return
        self._streams = copy_ahead.copy_streams(preprocessor.device)
        if self._streams is None:
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):
            if not isinstance(loop.dataloader_iterator, CopyAheadIterator):
                loop.dataloader_iterator = CopyAheadIterator(
                    loop.dataloader_iterator)
        elif not isinstance(loop.dataloader, CopyAheadLoader):
            loop.dataloader = CopyAheadLoader(loop.dataloader)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self._streams is None or not isinstance(data_batch, dict):
            return
        current = data_batch.pop(SLOT_KEY, None)
        if current is None:
            return
        if current.copied is None:  # the first batch, or one after a resume
            current.copied = self._streams.start(data_batch)
        if runner.iter + 1 < runner.max_iters:
            following = _iterator(runner.train_loop).peek()
            ahead = slot(following)
            if ahead is not None and ahead.copied is None:
                ahead.copied = self._streams.start(following)
        self._streams.hand_over(data_batch, current.copied)


def _iterator(loop) -> CopyAheadIterator:
    """The loop's current :class:`CopyAheadIterator`."""
    if hasattr(loop, 'dataloader_iterator'):
        return loop.dataloader_iterator
    return loop.dataloader.iterator
