from .batched_views import (ViewParams, apply_view, resized_crops,
                            sample_view_params)
from .jpeg_bytes import (LoadWebImageBytes, baseline_jpeg_size,
                         rgb_to_chw_tensor)
from .loading import (ImageDecodeError, LoadWebImage, decode_rgb,
                      decode_rgb_bytes, read_image_bytes)

__all__ = [
    'ImageDecodeError', 'LoadWebImage', 'LoadWebImageBytes', 'ViewParams',
    'apply_view', 'baseline_jpeg_size', 'decode_rgb', 'decode_rgb_bytes',
    'read_image_bytes', 'resized_crops', 'rgb_to_chw_tensor',
    'sample_view_params'
]
