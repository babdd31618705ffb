from .checkpoint_hook import SafeCheckpointHook
from .decode_ahead_hook import DecodeAheadHook
from .mopro_hook import MoProHook
from .nonfinite_hook import NonFiniteCheckHook
from .runtime_info_hook import DeferredRuntimeInfoHook

__all__ = [
    'DecodeAheadHook', 'DeferredRuntimeInfoHook', 'MoProHook',
    'NonFiniteCheckHook', 'SafeCheckpointHook'
]
