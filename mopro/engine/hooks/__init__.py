from .checkpoint_hook import SafeCheckpointHook
from .copy_ahead_hook import CopyAheadHook
from .ddp_compression_hook import DDPBF16CompressionHook
from .mopro_hook import MoProHook
from .nonfinite_hook import NonFiniteCheckHook
from .runtime_info_hook import DeferredRuntimeInfoHook
from .shard_epoch_hook import ShardEpochHook

__all__ = [
    'CopyAheadHook', 'DDPBF16CompressionHook', 'DeferredRuntimeInfoHook',
    'MoProHook', 'NonFiniteCheckHook', 'SafeCheckpointHook', 'ShardEpochHook'
]
