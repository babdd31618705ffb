from .checkpoint_hook import SafeCheckpointHook
from .mopro_hook import MoProHook
from .runtime_info_hook import DeferredRuntimeInfoHook

__all__ = ['DeferredRuntimeInfoHook', 'MoProHook', 'SafeCheckpointHook']
