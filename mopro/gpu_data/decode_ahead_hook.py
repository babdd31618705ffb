"""The GPU data path's batches decoded one step ahead in the Runner."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model

from .decode_ahead import DecodeAheadIterator, DecodeAheadLoader
from .preprocessor import MoProGPUViewsPreprocessor


@HOOKS.register_module()
class DecodeAheadHook(Hook):
    """Before training, wrap the train loop's batches so that
    ``MoProGPUViewsPreprocessor`` decodes each batch while the step before
    it runs (:mod:`mopro.gpu_data.decode_ahead`): the iterator of
    ``IterBasedTrainLoop``, the data loader of ``EpochBasedTrainLoop``. With
    another preprocessor it does nothing. The views, and a resumed run's
    views, are those of a run without it."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = get_ori_model(runner.model)
        if not isinstance(model.data_preprocessor, MoProGPUViewsPreprocessor):
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):
            if not isinstance(loop.dataloader_iterator, DecodeAheadIterator):
                loop.dataloader_iterator = DecodeAheadIterator(
                    loop.dataloader_iterator)
        elif not isinstance(loop.dataloader, DecodeAheadLoader):
            loop.dataloader = DecodeAheadLoader(loop.dataloader)
