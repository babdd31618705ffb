"""What a launcher's environment tells before the Runner is built
(mopro.engine.launch): the number of processes, used by the queue check
of check_run_config, and each process's GPU."""
import pytest
import torch

from mopro.engine.launch import check_launched_gpu, launched_world_size
from mopro.engine.run_checks import check_run_config
from mopro.utils.errors import ConfigError, UserError
from helpers.training import tiny_v1_cfg


@pytest.mark.parametrize('launcher, environ, expected', [
    ('pytorch', {
        'WORLD_SIZE': '16'
    }, 16),
    ('slurm', {
        'SLURM_NTASKS': '8',
        'WORLD_SIZE': '2'
    }, 8),
    ('mpi', {
        'OMPI_COMM_WORLD_SIZE': '4'
    }, 4),
    ('none', {
        'WORLD_SIZE': '16',
        'SLURM_NTASKS': '8'
    }, 1),
    ('pytorch', {}, 1),
    ('pytorch', {
        'WORLD_SIZE': '0'
    }, 1),
    ('pytorch', {
        'WORLD_SIZE': 'two'
    }, 1),
])
def test_launched_world_size(launcher, environ, expected):
    assert launched_world_size(launcher, environ) == expected


def test_the_queue_check_counts_the_launched_processes(webvision_root,
                                                       tmp_path, monkeypatch):
    """A batch of 4 fits a queue of 4 on one process; under torchrun with 2
    processes the global batch is 8: an error before the Runner exists."""
    cfg = tiny_v1_cfg(webvision_root, str(tmp_path / 'work'), 'queue')
    cfg.model.queue_len = 4
    cfg.launcher = 'pytorch'
    check_run_config(cfg)
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ConfigError) as err:
        check_run_config(cfg)
    assert str(err.value) == (
        'model.queue_len=4 is smaller than the global batch 8 '
        '(train_dataloader.batch_size=4 x 2 process(es)): MoPro enqueues '
        'every batch')


@pytest.mark.parametrize(
    'launcher, variable, local_rank, device, error',
    [
        ('pytorch', 'LOCAL_RANK', '2', None, True),
        ('pytorch', 'LOCAL_RANK', '1', None, False),
        ('mpi', 'OMPI_COMM_WORLD_LOCAL_RANK', '3', None, True),
        ('pytorch', 'LOCAL_RANK', '2', 'cuda:0', False),  # the user's GPU
        ('pytorch', 'LOCAL_RANK', '2', 'cpu', False),
        ('none', 'LOCAL_RANK', '2', None, False),
        ('slurm', 'LOCAL_RANK', '2', None, False),  # mmengine wraps the rank
    ])
def test_a_launched_process_needs_its_gpu(monkeypatch, launcher, variable,
                                          local_rank, device, error):
    """Two GPUs seen (as torch would report them on such a node)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv(variable, local_rank)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5')
    if not error:
        check_launched_gpu(launcher, device)
        return
    with pytest.raises(UserError) as err:
        check_launched_gpu(launcher, device)
    assert str(err.value) == (
        f'{variable}={local_rank}, but this node shows 2 GPU(s) '
        '(CUDA_VISIBLE_DEVICES=4,5): launch at most 2 process(es) per node')


@pytest.mark.gpu
def test_check_run_config_refuses_a_local_rank_past_the_gpus(
        webvision_root, tmp_path, monkeypatch):
    """On this machine's GPUs: the local rank one past the last GPU."""
    cfg = tiny_v1_cfg(webvision_root, str(tmp_path / 'work'), 'gpus')
    cfg.launcher = 'pytorch'
    monkeypatch.setenv('LOCAL_RANK', str(torch.cuda.device_count() - 1))
    check_run_config(cfg)
    monkeypatch.setenv('LOCAL_RANK', str(torch.cuda.device_count()))
    with pytest.raises(UserError, match='^LOCAL_RANK=.*, but this node '):
        check_run_config(cfg)
