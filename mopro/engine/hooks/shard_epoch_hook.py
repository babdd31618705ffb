"""The epoch and seed of a streaming shard dataset."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...utils.errors import ConfigError


@HOOKS.register_module()
class ShardEpochHook(Hook):
    """Before each training epoch, tell the train dataset (a
    ``ShardDataset``) the epoch and the run's seed, from which it orders
    the shards and draws the views; mmengine's ``DistSamplerSeedHook``
    does this for a sampler, which an iterable dataset has none of.

    Also checks that the dataset's ``batch_size``, by which it hands
    batches to the workers, is the dataloader's.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        loader = runner.train_loop.dataloader
        dataset = loader.dataset
        if not hasattr(dataset, 'set_epoch'):
            return
        if getattr(dataset, 'batch_size', None) != loader.batch_size:
            raise ConfigError(
                f'train_dataloader.dataset.batch_size={dataset.batch_size} '
                f'but train_dataloader.batch_size={loader.batch_size}: set '
                'both to the same value')
        dataset.set_epoch(runner.epoch, runner.seed)
