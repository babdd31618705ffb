from .mopro_head import MoProHead

__all__ = ['MoProHead']
