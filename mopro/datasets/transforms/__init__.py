from .batched_views import (ViewParams, antialias_weights, apply_view,
                            pack_images, resized_crops, sample_view_params,
                            to_device)
from .jpeg_bytes import (LoadWebImageBytes, baseline_jpeg_size,
                         rgb_to_chw_tensor)
from .loading import (ImageDecodeError, LoadWebImage, decode_rgb,
                      decode_rgb_bytes, read_image_bytes)

__all__ = [
    'ImageDecodeError', 'LoadWebImage', 'LoadWebImageBytes', 'ViewParams',
    'antialias_weights', 'apply_view', 'baseline_jpeg_size', 'decode_rgb',
    'decode_rgb_bytes', 'pack_images', 'read_image_bytes', 'resized_crops',
    'rgb_to_chw_tensor', 'sample_view_params', 'to_device'
]
