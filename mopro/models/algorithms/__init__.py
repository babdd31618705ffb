from .mopro import MoPro

__all__ = ['MoPro']
