"""Large global batches as users start them: ``tools/train.py`` launched
as one of many processes (``--launcher pytorch``, ``WORLD_SIZE`` as torchrun
sets it) says in one line, before the job starts, what the global batch
needs; the 64-GPU config passes those checks at 64 processes."""
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner

from mopro.engine.run_checks import check_run_config
from helpers import ROOT
from helpers.commands import free_port, user_env
from helpers.configs import tool_config

CONFIG_64 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1_64gpu.py')


def _train_as_rank(world_size: int, work_dir: str, *options):
    """``tools/train.py CONFIG_64 --launcher pytorch`` as rank 0 of
    ``world_size`` processes."""
    env = dict(user_env(), WORLD_SIZE=str(world_size), RANK='0',
               LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()))
    return subprocess.Popen([
        sys.executable,
        osp.join(ROOT, 'tools',
                 'train.py'), CONFIG_64, '--launcher', 'pytorch', '--work-dir',
        work_dir, *(['--cfg-options', *options] if options else [])
    ], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_global_batch_mistakes_end_the_job_before_it_starts(tmp_path):
    """512 GPUs x 32 overflow the queue; per-rank seeds break the shared
    permutation of the shuffle: one ``error:`` line each, exit status 1,
    no work dir, before the process group (which would wait for the other
    ranks)."""
    cases = {
        'queue': (_train_as_rank(512, str(tmp_path / 'queue')),
                  'error: model.queue_len=8192 is smaller than the global '
                  'batch 16384 (train_dataloader.batch_size=32 x 512 '
                  'process(es)): MoPro enqueues every batch'),
        'seed': (_train_as_rank(64, str(tmp_path / 'seed'),
                                'randomness.diff_rank_seed=True'),
                 'error: randomness.diff_rank_seed=True gives every rank its '
                 "own seed, but MoPro's shuffle across ranks "
                 '(model.shuffle_bn=True) draws one permutation on all of '
                 'them from a shared seed: set randomness.diff_rank_seed='
                 'False or model.shuffle_bn=False'),
    }
    for name, (proc, message) in cases.items():
        try:
            _, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:  # waiting for the other ranks
            proc.kill()
            _, err = proc.communicate()
        assert proc.returncode == 1, err[-3000:]
        assert err.splitlines()[-1] == message
        assert 'Traceback' not in err
        assert not (tmp_path / name).exists()


def test_64_gpu_config_scales_the_lr_and_warms_up(monkeypatch):
    """At 64 processes of 32 images the config passes the checks, and
    mmengine's lr scaling makes the recipe's 0.1 per 256 images 0.8, the
    warm-up starting from a quarter of it."""
    monkeypatch.setenv('WORLD_SIZE', '64')
    cfg = tool_config(CONFIG_64, launcher='pytorch')
    check_run_config(cfg)
    assert cfg.model.queue_len >= 64 * cfg.train_dataloader.batch_size
    # mmengine's lr scaling, on a stand-in for a Runner of 64 processes
    runner = SimpleNamespace(world_size=64,
                             _train_dataloader=cfg.train_dataloader,
                             logger=MMLogger.get_current_instance(),
                             param_schedulers=None)
    optim_wrapper = build_optim_wrapper(
        torch.nn.Linear(2, 2),
        dict(type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer))
    Runner.scale_lr(runner, optim_wrapper, cfg.auto_scale_lr)
    assert optim_wrapper.param_groups[0]['lr'] == 0.8
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 0.25,
                                                              5)
    assert steps.milestones == [40, 80]
