"""Which device a tool runs on when the user names none."""
from typing import Union

import torch


def default_device(
        device: Union[str, torch.device, None] = None) -> torch.device:
    """``device`` if given, else CUDA where torch sees a GPU, else the
    CPU."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(device)
