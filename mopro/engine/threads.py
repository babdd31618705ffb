"""How many intra-op threads the training process runs torch's CPU work on.

torch's default is one thread per core (or ``OMP_NUM_THREADS``). On a GPU
run the training process's own CPU work is small (queueing the step, the
batch's hand-over, a few small tensors), yet every CPU operator above
ATen's parallel grain opens an OpenMP region on all those threads, whose
workers then spin waiting for the next region, on the cores the dataloader
workers need. mmengine sets ``OMP_NUM_THREADS=1`` only for distributed runs
and only in the environment, after the OpenMP runtime of the process has
read it; torchrun sets it for multi-process jobs, a single-GPU run or a
Slurm job keeps the default. The dataloader workers are not concerned:
torch's worker loop sets one thread in each.

``env_cfg.intra_op_threads``:

- ``'auto'`` (default, ``configs/_base_/default_runtime.py``): on CUDA
  :data:`CUDA_THREADS`; on the CPU torch's default for this process (the
  cores, or ``OMP_NUM_THREADS``), since there the step itself runs on them;
- an integer >= 1: that many.

:class:`~mopro.engine.MoProRunner` applies it before it builds the model
and logs it once. Threads started later (the pin-memory and decode-ahead
threads) take the same count when they first run a parallel operator.
"""
from numbers import Integral
from typing import Any, Tuple

import torch

from ..utils.errors import ConfigError

KEY = 'env_cfg.intra_op_threads'
# one thread opens no OpenMP region at all: nothing spins beside the
# dataloader workers and the step's own launch thread
CUDA_THREADS = 1
# torch's count when this module was imported (cores or OMP_NUM_THREADS),
# before any Runner changed it
DEFAULT_THREADS = torch.get_num_threads()


def intra_op_threads(setting: Any, device_type: str) -> Tuple[int, str]:
    """The intra-op thread count for ``env_cfg.intra_op_threads=setting``
    on a run whose device is ``device_type`` (``'cuda'``, ``'cpu'``...),
    and why (for the log line).

    Raises:
        ConfigError: ``setting`` is neither ``'auto'`` nor an integer >= 1.
    """
    if setting == 'auto':
        if device_type == 'cuda':
            return CUDA_THREADS, f"{KEY}='auto' on CUDA"
        return DEFAULT_THREADS, f"{KEY}='auto' on the CPU: torch's default"
    if isinstance(setting, bool) or not isinstance(setting, Integral) or \
            setting < 1:
        raise ConfigError(f"{KEY} must be 'auto' or an integer >= 1, got "
                          f'{setting!r}')
    return int(setting), f'{KEY}={setting}'


def set_intra_op_threads(setting: Any, device_type: str) -> str:
    """Set torch's intra-op thread count as :func:`intra_op_threads`
    decides; return the line to log."""
    count, reason = intra_op_threads(setting, device_type)
    torch.set_num_threads(count)
    return f'intra-op threads of the training process: {count} ({reason})'
