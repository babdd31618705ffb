from .mopro import MoPro, check_queue_fits

__all__ = ['MoPro', 'check_queue_fits']
