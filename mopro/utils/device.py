"""Which device a tool runs on when the user names none, and what a GPU
config turns off elsewhere."""
from typing import Optional, Union

import torch
from mmengine.config import Config
from mmengine.logging import print_log


def default_device(
        device: Union[str, torch.device, None] = None) -> torch.device:
    """``device`` if given, else CUDA where torch sees a GPU, else the
    CPU."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(device)


def on_cuda(device: Optional[str] = None) -> bool:
    """Whether a run on ``device`` (default: CUDA when available) is on
    CUDA."""
    return default_device(device).type == 'cuda'


def compile_only_on_cuda(cfg: Config, device: Optional[str] = None) -> Config:
    """Turn ``model.compile`` off, with one log line, for a run that is not
    on CUDA: inductor's C++ build of a ResNet takes minutes on a CPU."""
    model = cfg.get('model')
    if model is not None and model.get('compile') and not on_cuda(device):
        print_log(
            'no CUDA device: model.compile=False (torch.compile is '
            'for the GPU configs)', logger='current')
        model.compile = False
    return cfg
