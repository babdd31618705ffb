"""The training process's intra-op threads: env_cfg.intra_op_threads,
applied by MoProRunner before it builds the model, logged once."""
import os.path as osp

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import mopro.engine.runner
from mopro.engine import MoProRunner, threads
from mopro.utils.errors import ConfigError
from helpers.training import tiny_v1_cfg


@pytest.fixture(autouse=True)
def keep_thread_count():
    count = torch.get_num_threads()
    yield
    torch.set_num_threads(count)


def test_auto_is_few_threads_on_cuda_and_the_cores_on_the_cpu(monkeypatch):
    monkeypatch.setattr(threads, 'DEFAULT_THREADS', 16)
    assert threads.intra_op_threads('auto', 'cuda')[0] == \
        threads.CUDA_THREADS == 1
    assert threads.intra_op_threads('auto', 'cpu')[0] == 16
    assert threads.intra_op_threads(4, 'cuda')[0] == 4
    assert threads.intra_op_threads(4, 'cpu')[0] == 4


@pytest.mark.parametrize('value', [0, -2, 2.5, True, None, 'all', '4'])
def test_a_bad_value_is_a_one_line_error_naming_the_key(value):
    with pytest.raises(ConfigError) as err:
        threads.intra_op_threads(value, 'cuda')
    message = str(err.value)
    assert message.startswith('env_cfg.intra_op_threads must be') and \
        '\n' not in message and repr(value) in message


def _runner(tmp_path, name, **env):
    cfg = tiny_v1_cfg(str(tmp_path / 'data'), str(tmp_path / name), name)
    cfg.env_cfg.update(env)
    cfg.log_level = 'INFO'
    return MoProRunner.from_cfg(cfg)


class _Threads(Dataset):

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.get_num_threads()


def test_gpu_config_on_the_cpu_keeps_torchs_default(monkeypatch, tmp_path,
                                                    capsys):
    """The v1 config adapted to the CPU: 'auto' is torch's count of the
    process (here made 3, the tests run with one), set before the model is
    built and logged once; the dataloader workers run one thread each."""
    monkeypatch.setattr(threads, 'DEFAULT_THREADS', 3)
    torch.set_num_threads(1)
    seen = []
    build_model = MoProRunner.build_model

    def spy(self, model):
        seen.append(torch.get_num_threads())
        return build_model(self, model)

    monkeypatch.setattr(MoProRunner, 'build_model', spy)
    runner = _runner(tmp_path, 'cpu')
    assert seen == [3] and torch.get_num_threads() == 3
    line = ("intra-op threads of the training process: 3 "
            "(env_cfg.intra_op_threads='auto' on the CPU: torch's default)")
    assert capsys.readouterr().out.count(line) == 1
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        assert f.read().count(line) == 1
    workers = DataLoader(_Threads(), batch_size=None, num_workers=2)
    assert list(workers) == [1, 1]


def test_gpu_config_on_cuda_gets_one_thread(monkeypatch, tmp_path, capsys):
    """The same config as it is built on CUDA (the device that decides made
    CUDA; the model stays on the CPU)."""
    monkeypatch.setattr(mopro.engine.runner, 'default_device',
                        lambda: torch.device('cuda'))
    torch.set_num_threads(2)
    _runner(tmp_path, 'cuda')
    assert torch.get_num_threads() == 1
    assert (
        "intra-op threads of the training process: 1 "
        "(env_cfg.intra_op_threads='auto' on CUDA)") in capsys.readouterr().out
    _runner(tmp_path, 'cuda_two', intra_op_threads=2)
    assert torch.get_num_threads() == 2


def test_bad_value_stops_before_the_work_dir_is_made(tmp_path):
    with pytest.raises(ConfigError, match='env_cfg.intra_op_threads'):
        _runner(tmp_path, 'bad', intra_op_threads='many')
    assert not osp.exists(tmp_path / 'bad')
