from .checkpoint_hook import SafeCheckpointHook
from .mopro_hook import MoProHook
from .nonfinite_hook import NonFiniteCheckHook
from .runtime_info_hook import DeferredRuntimeInfoHook

__all__ = [
    'DeferredRuntimeInfoHook', 'MoProHook', 'NonFiniteCheckHook',
    'SafeCheckpointHook'
]
