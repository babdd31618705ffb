"""The epoch and seed of a streaming shard dataset."""
import warnings

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ...utils.errors import ConfigError


@HOOKS.register_module()
class ShardEpochHook(Hook):
    """Tell the train dataset (a ``ShardDataset``) the epoch it reads next
    and the run's seed, from which it orders the shards and draws the
    views; mmengine's ``DistSamplerSeedHook`` does this for a sampler,
    which an iterable dataset has none of.

    Epoch-based loops: before each epoch. Iteration-based loops: epoch 0
    then one endless pass, epoch after epoch (a look-ahead of the batches,
    as the GPU data path's, would pass an epoch's end before a hook after
    its last iteration runs); mmengine resumes such a loop by replaying
    the iterations before, which then read the same data.

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
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            # torch warns at every batch beyond len(dataloader), one epoch
            warnings.filterwarnings('ignore', 'Length of IterableDataset')
            dataset.set_epoch(0, runner.seed, continuous=True)
        else:
            dataset.set_epoch(runner.epoch, runner.seed)
