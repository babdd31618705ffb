"""Shared set-up of the command-line tools: config loading and device fixes."""
import argparse
import datetime
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every config-driven tool takes."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and outputs go')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. model.threshold=0.6 '
        'train_dataloader.batch_size=64')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torchrun passes --local-rank (or --local_rank on older versions)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, merge ``--cfg-options``, set launcher and work dir.

    The work dir defaults to ``work_dirs/<config name>``, as in OpenMMLab.
    """
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'{args.config}: config file not found')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def _on_cuda(device: Optional[str]) -> bool:
    """Whether a run on ``device`` (default: CUDA when available) is on
    CUDA."""
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == 'cuda'


def compile_only_on_cuda(cfg: Config, device: Optional[str] = None) -> Config:
    """Turn ``model.compile`` off, with one log line, for a run that is not
    on CUDA: inductor's C++ build of a ResNet takes minutes on a CPU."""
    model = cfg.get('model')
    if model is not None and model.get('compile') and not _on_cuda(device):
        print_log('no CUDA device: model.compile=False (torch.compile is '
                  'for the GPU configs)', logger='current')
        model.compile = False
    return cfg


def adapt_to_device(cfg: Config, amp: Optional[bool] = None,
                    device: Optional[str] = None) -> Config:
    """Make a GPU config run where it is launched, on ``device`` (default:
    CUDA when available).

    - ``amp=True`` turns on bf16 autocast (``AmpOptimWrapper``);
    - off CUDA, ``model.compile`` is turned off
      (:func:`compile_only_on_cuda`);
    - off CUDA, AmpOptimWrapper (CUDA-only in mmengine) becomes a plain
      OptimWrapper and the distributed backend becomes gloo; a launched
      (torchrun) CPU job gets its process group here, since mmengine's
      launcher insists on ``torch.cuda.set_device``, and a DDP wrapper
      without device ids.
    """
    optim = cfg.get('optim_wrapper')
    if amp and optim is not None and optim.get('type') != 'AmpOptimWrapper':
        optim.type = 'AmpOptimWrapper'
        optim.setdefault('dtype', 'bfloat16')
    compile_only_on_cuda(cfg, device)
    if not _on_cuda(device):
        if optim is not None and optim.get('type') == 'AmpOptimWrapper':
            print_log('no CUDA device: training in float32 with '
                      'OptimWrapper instead of AmpOptimWrapper',
                      logger='current')
            optim.type = 'OptimWrapper'
            optim.pop('dtype', None)
            optim.pop('loss_scale', None)
        dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg')
        if dist_cfg is not None:
            dist_cfg.backend = 'gloo'
        if cfg.get('launcher', 'none') == 'pytorch':
            _init_cpu_process_group(cfg)
    return cfg


def _init_cpu_process_group(cfg: Config) -> None:
    import torch.distributed as dist
    if not dist.is_initialized():
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get(
            'timeout', 1800)
        dist.init_process_group(
            backend='gloo', timeout=datetime.timedelta(seconds=timeout))
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper.update(device_ids=None, broadcast_buffers=False)
    cfg.model_wrapper_cfg = wrapper
