"""mopro.engine.launch.init_launched_group: the process group of a launched
job, joined on the CPU through torch (torchrun) or mmengine's init_dist
(the other launchers), and on CUDA through mmengine's init_dist with NCCL,
each with the config's ``env_cfg.dist_cfg.timeout`` (seconds)."""
import datetime

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mopro.engine.launch import init_launched_group
from helpers.commands import free_port

TIMEOUT = 321


@pytest.fixture
def one_process_group(monkeypatch):
    """The environment a launcher gives a job of one process; the group
    is torn down after the test."""
    port = str(free_port())
    for name, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                            MASTER_ADDR='127.0.0.1', MASTER_PORT=port,
                            OMPI_COMM_WORLD_RANK='0',
                            OMPI_COMM_WORLD_LOCAL_RANK='0',
                            OMPI_COMM_WORLD_SIZE='1').items():
        monkeypatch.setenv(name, value)
    assert not dist.is_initialized()
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture
def timeouts(monkeypatch):
    """The timeouts torch.distributed.init_process_group is given (by
    init_launched_group or through mmengine), the call itself unchanged."""
    given = []
    init = dist.init_process_group

    def recording(*args, **kwargs):
        given.append(kwargs.get('timeout'))
        return init(*args, **kwargs)

    monkeypatch.setattr(dist, 'init_process_group', recording)
    return given


def _cfg(launcher: str) -> Config:
    return Config(
        dict(launcher=launcher,
             env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=TIMEOUT))))


def _joined(backend: str, timeouts: list) -> None:
    """One group of this process, of ``backend``, started once with the
    config's timeout."""
    assert dist.is_initialized()
    assert dist.get_backend() == backend
    assert dist.get_world_size() == 1
    assert timeouts == [datetime.timedelta(seconds=TIMEOUT)]


def test_no_launcher_joins_nothing(one_process_group, timeouts):
    init_launched_group(_cfg('none'), 'cpu')
    assert not dist.is_initialized() and timeouts == []


def test_torchrun_on_the_cpu_joins_a_gloo_group(one_process_group, timeouts):
    init_launched_group(_cfg('pytorch'), 'cpu')
    init_launched_group(_cfg('pytorch'), 'cpu')  # joined already
    _joined('gloo', timeouts)


def test_another_launcher_on_the_cpu_goes_through_mmengine(
        one_process_group, timeouts, monkeypatch):
    """mpi through mmengine's init_dist, which wants the timeout in
    seconds; its torch.cuda.set_device is a no-op here (no GPU)."""
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)
    init_launched_group(_cfg('mpi'), 'cpu')
    _joined('gloo', timeouts)


@pytest.mark.gpu
def test_torchrun_on_cuda_joins_an_nccl_group(one_process_group, timeouts):
    init_launched_group(_cfg('pytorch'), 'cuda')
    _joined('nccl', timeouts)
