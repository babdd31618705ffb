from .decode_ahead_hook import DecodeAheadHook
from .mopro_hook import MoProHook
from .runtime_info_hook import DeferredRuntimeInfoHook

__all__ = ['DecodeAheadHook', 'DeferredRuntimeInfoHook', 'MoProHook']
