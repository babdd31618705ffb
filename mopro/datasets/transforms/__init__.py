from .loading import ImageDecodeError, LoadWebImage, decode_rgb

__all__ = ['ImageDecodeError', 'LoadWebImage', 'decode_rgb']
