"""Normalisation of the two views on the device, without host syncs, in
the step's dtype and memory format."""
from typing import Optional, Sequence, Union

import torch
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS


def step_dtype(device: torch.device) -> torch.dtype:
    """The dtype the training step computes in: autocast's on ``device``
    where it is on (the preprocessor runs in the optimizer wrapper's
    autocast context), else float32 (also on a device without autocast,
    such as the meta device)."""
    if torch.amp.is_autocast_available(device.type) and \
            torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


@MODELS.register_module()
class MoProDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor``, same values, for a GPU
    step that never waits for the device and reads each batch once.

    - the BGR -> RGB swap flips the channel axis; mmpretrain indexes it with
      the Python list ``[2, 1, 0]``, which uploads an index tensor to the
      device on every call, a blocking copy;
    - copies to the device are non-blocking by default (the dataloader pins
      its batches); tensors already on the device (``CopyAheadHook``) are
      not copied;
    - each view is made in three kernels, directly in the step's dtype
      (autocast's: bf16 in the GPU configs; float32 outside autocast) and
      memory format (``channels_last``): the flip of the uint8 image,
      ``x - mean`` into float32 and ``/ std`` into the output. mmpretrain's
      float conversion, subtraction and division, then the model's
      channels-last copy and autocast's cast at the first convolution, are
      five passes over float32 data; here those two conversions find
      their input converted and copy nothing. The values are those of the
      unfused arithmetic: float32 ``(x - mean) / std``, rounded once to the
      step's dtype.

    Args:
        channels_last: make the views channels-last. None (default): as the
            model's ``channels_last`` (MoPro sets it), else contiguous.
        Others: as ``SelfSupDataPreprocessor``; ``non_blocking`` defaults
            to True.
    """

    def __init__(self, mean: Optional[Sequence[Union[float, int]]] = None,
                 std: Optional[Sequence[Union[float, int]]] = None,
                 to_rgb: bool = False, non_blocking: bool = True,
                 channels_last: Optional[bool] = None, **kwargs) -> None:
        super().__init__(mean=mean, std=std, to_rgb=to_rgb,
                         non_blocking=non_blocking, **kwargs)
        self.channels_last = channels_last

    def _normalize(self, img: torch.Tensor, dtype: torch.dtype,
                   memory_format: torch.memory_format) -> torch.Tensor:
        if self._channel_conversion:
            img = img.flip(1)
        if img.dim() != 4:
            memory_format = torch.contiguous_format
        if img.dtype == torch.float64:
            img = img.float()  # computed in float32, as mmpretrain does
        if not self._enable_normalize:
            return img.to(dtype=dtype, memory_format=memory_format)
        shifted = torch.sub(img, self.mean,
                            out=self._empty(img, torch.float32, memory_format))
        if dtype == torch.float32:
            return shifted.div_(self.std)
        return torch.div(shifted, self.std,
                         out=self._empty(img, dtype, memory_format))

    @staticmethod
    def _empty(like: torch.Tensor, dtype: torch.dtype,
               memory_format: torch.memory_format) -> torch.Tensor:
        return torch.empty(like.shape, dtype=dtype, device=like.device,
                           memory_format=memory_format)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Move ``inputs`` (a tensor or a list of views, N x C x H x W) and
        ``data_samples`` to the device; swap channels and normalise the
        inputs in float32, in the step's dtype and memory format."""
        if not isinstance(data, dict):
            raise TypeError('MoProDataPreprocessor expects the dict of '
                            'default_collate, got ' + type(data).__name__)
        inputs, data_samples = self.cast_data(
            [data['inputs'], data.get('data_samples')])
        dtype = step_dtype(self.device)
        memory_format = torch.channels_last if self.channels_last else \
            torch.contiguous_format
        if isinstance(inputs, (list, tuple)):
            inputs = [
                self._normalize(view, dtype, memory_format) for view in inputs
            ]
        else:
            inputs = self._normalize(inputs, dtype, memory_format)
        return {'inputs': inputs, 'data_samples': data_samples}
