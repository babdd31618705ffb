"""Where a run is launched: how many processes a launcher started and
each one's GPU, read from the launcher's environment before the Runner is
built; the process group they join; a GPU config made to run on the
device at hand."""
import datetime
import os
from typing import Mapping, Optional

import torch
from mmengine.config import Config
from mmengine.dist import init_dist
from mmengine.logging import print_log

from ..utils.device import compile_only_on_cuda, default_device, on_cuda
from ..utils.errors import UserError

# where mmengine's init_dist reads the number of processes, per launcher
WORLD_SIZE_VARIABLES = {
    'pytorch': 'WORLD_SIZE',
    'slurm': 'SLURM_NTASKS',
    'mpi': 'OMPI_COMM_WORLD_SIZE'
}
# where it reads the process's GPU (slurm's is the rank modulo the GPUs)
LOCAL_RANK_VARIABLES = {
    'pytorch': 'LOCAL_RANK',
    'mpi': 'OMPI_COMM_WORLD_LOCAL_RANK'
}


def launched_world_size(launcher: str,
                        environ: Optional[Mapping[str, str]] = None) -> int:
    """How many processes ``launcher`` started, read where mmengine's
    ``init_dist`` will read it (``WORLD_SIZE`` for torchrun,
    ``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE``): known before the Runner
    is built. 1 without a launcher, or when the variable is not a positive
    number (mmengine's own error then comes when it starts the group)."""
    environ = os.environ if environ is None else environ
    variable = WORLD_SIZE_VARIABLES.get(launcher)
    value = environ.get(variable, '') if variable else ''
    return int(value) if value.isdigit() and int(value) > 0 else 1


def check_launched_gpu(launcher: str, device: Optional[str] = None) -> None:
    """Under a launcher on CUDA (``device``, default: CUDA when available;
    one with an index is the user's choice), the GPU of this process, its
    local rank, is one that torch sees (``tools/dist_train.sh CONFIG 8`` on
    a node that shows 4 GPUs would otherwise end in a CUDA 'invalid device
    ordinal' traceback from 4 of the ranks).

    Raises:
        UserError: the local rank, the GPUs seen, how many to launch.
    """
    variable = LOCAL_RANK_VARIABLES.get(launcher)
    device = default_device(device)
    if variable is None or device.type != 'cuda' or device.index is not None:
        return
    local_rank = os.environ.get(variable, '0')
    count = torch.cuda.device_count()
    if local_rank.isdigit() and int(local_rank) >= count:
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        raise UserError(
            f'{variable}={local_rank}, but this node shows {count} GPU(s)' +
            (f' (CUDA_VISIBLE_DEVICES={visible})' if visible is not None else
             '') + f': launch at most {count} process(es) per node')


def adapt_to_device(cfg: Config, amp: Optional[bool] = None,
                    device: Optional[str] = None) -> Config:
    """Make a GPU config run where it is launched, on ``device`` (default:
    CUDA when available).

    - ``amp=True`` turns on bf16 autocast (``AmpOptimWrapper``);
    - off CUDA, ``model.compile`` is turned off
      (:func:`~mopro.utils.device.compile_only_on_cuda`);
    - off CUDA, AmpOptimWrapper (CUDA-only in mmengine) becomes a plain
      OptimWrapper and the distributed backend becomes gloo; a launched
      (torchrun) CPU job gets its process group here
      (:func:`init_launched_group`) and a DDP wrapper without device ids.
    """
    optim = cfg.get('optim_wrapper')
    if amp and optim is not None and optim.get('type') != 'AmpOptimWrapper':
        optim.type = 'AmpOptimWrapper'
        optim.setdefault('dtype', 'bfloat16')
    compile_only_on_cuda(cfg, device)
    if not on_cuda(device):
        if optim is not None and optim.get('type') == 'AmpOptimWrapper':
            print_log(
                'no CUDA device: training in float32 with '
                'OptimWrapper instead of AmpOptimWrapper', logger='current')
            optim.type = 'OptimWrapper'
            optim.pop('dtype', None)
            optim.pop('loss_scale', None)
        dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg')
        if dist_cfg is not None:
            dist_cfg.backend = 'gloo'
        if cfg.get('launcher', 'none') == 'pytorch':
            init_launched_group(cfg, device)
            wrapper = cfg.get('model_wrapper_cfg') or dict(
                type='MMDistributedDataParallel')
            wrapper.update(device_ids=None, broadcast_buffers=False)
            cfg.model_wrapper_cfg = wrapper
    return cfg


def init_launched_group(cfg: Config, device: Optional[str] = None) -> None:
    """Join the process group of a job that ``cfg.launcher`` started
    (nothing without a launcher, or when joined already), with
    ``env_cfg.dist_cfg.timeout``. Under torchrun off CUDA (``device``,
    default: CUDA when available), a gloo group that torch builds from
    torchrun's environment, since mmengine's launcher insists on
    ``torch.cuda.set_device``; otherwise mmengine's ``init_dist``, with
    NCCL on CUDA and gloo off it."""
    import torch.distributed as dist
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or dist.is_initialized():
        return
    seconds = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)
    if launcher == 'pytorch' and not on_cuda(device):
        dist.init_process_group(backend='gloo',
                                timeout=datetime.timedelta(seconds=seconds))
    else:  # mmengine's init_dist takes the timeout in seconds
        init_dist(launcher, backend='nccl' if on_cuda(device) else 'gloo',
                  timeout=seconds)
