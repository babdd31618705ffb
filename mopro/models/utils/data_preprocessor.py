"""Normalisation of the two views on the device, without host syncs."""
from typing import Optional, Sequence, Union

import torch
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MoProDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor``, same output, for a GPU step
    that never waits for the device.

    - the BGR -> RGB swap flips the channel axis; mmpretrain indexes it with
      the Python list ``[2, 1, 0]``, which uploads an index tensor to the
      device on every call, a blocking copy;
    - copies to the device are non-blocking by default (the dataloader pins
      its batches).

    Args: as ``SelfSupDataPreprocessor``; ``non_blocking`` defaults to True.
    """

    def __init__(self, mean: Optional[Sequence[Union[float, int]]] = None,
                 std: Optional[Sequence[Union[float, int]]] = None,
                 to_rgb: bool = False, non_blocking: bool = True,
                 **kwargs) -> None:
        super().__init__(mean=mean, std=std, to_rgb=to_rgb,
                         non_blocking=non_blocking, **kwargs)

    def _normalize(self, img: torch.Tensor) -> torch.Tensor:
        if self._channel_conversion:
            img = img.flip(1)
        img = img.float()
        if self._enable_normalize:
            img = (img - self.mean) / self.std
        return img

    def forward(self, data: dict, training: bool = False) -> dict:
        """Move ``inputs`` (a tensor or a list of views, N x C x H x W) and
        ``data_samples`` to the device; swap channels, cast to float32 and
        normalise the inputs."""
        if not isinstance(data, dict):
            raise TypeError('MoProDataPreprocessor expects the dict of '
                            'default_collate, got ' + type(data).__name__)
        inputs, data_samples = self.cast_data(
            [data['inputs'], data.get('data_samples')])
        if isinstance(inputs, (list, tuple)):
            inputs = [self._normalize(view) for view in inputs]
        else:
            inputs = self._normalize(inputs)
        return {'inputs': inputs, 'data_samples': data_samples}
