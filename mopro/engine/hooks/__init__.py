from .mopro_hook import MoProHook

__all__ = ['MoProHook']
