"""The GPU data path: the dataloader workers hand over JPEG bytes, and the
training process decodes them and makes both training views on the device.

- :mod:`.views`: the released code's two views for a batch of differently
  sized images, with per-image random parameters;
- :mod:`.decoding`: a packed batch decoded on the device (nvjpeg), safely
  beside the training stream;
- :mod:`.decode_ahead`, :mod:`.decode_ahead_hook`: each batch decoded in a
  background thread while the step before it runs;
- :mod:`.preprocessor`: ``MoProGPUViewsPreprocessor``, the data
  preprocessor that puts them together.

The worker side (``LoadWebImageBytes``, ``packed_images_collate``) lives
with the other transforms and collate functions in :mod:`mopro.datasets`.
"""
from .decode_ahead_hook import DecodeAheadHook
from .preprocessor import MoProGPUViewsPreprocessor
from .views import (ViewParams, antialias_weights, apply_view, pack_images,
                    resized_crops, sample_view_params, to_device)

__all__ = [
    'DecodeAheadHook', 'MoProGPUViewsPreprocessor', 'ViewParams',
    'antialias_weights', 'apply_view', 'pack_images', 'resized_crops',
    'sample_view_params', 'to_device'
]
