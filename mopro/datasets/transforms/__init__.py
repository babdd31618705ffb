from .jpeg_bytes import (LoadWebImageBytes, baseline_jpeg_size,
                         rgb_to_chw_tensor)
from .loading import (ImageDecodeError, LoadWebImage, decode_rgb,
                      decode_rgb_bytes, read_image_bytes)

__all__ = [
    'ImageDecodeError', 'LoadWebImage', 'LoadWebImageBytes',
    'baseline_jpeg_size', 'decode_rgb', 'decode_rgb_bytes', 'read_image_bytes',
    'rgb_to_chw_tensor'
]
