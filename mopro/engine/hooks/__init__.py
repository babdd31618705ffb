from .checkpoint_hook import SafeCheckpointHook
from .copy_ahead_hook import CopyAheadHook
from .mopro_hook import MoProHook
from .nonfinite_hook import NonFiniteCheckHook
from .runtime_info_hook import DeferredRuntimeInfoHook

__all__ = [
    'CopyAheadHook', 'DeferredRuntimeInfoHook', 'MoProHook',
    'NonFiniteCheckHook', 'SafeCheckpointHook'
]
