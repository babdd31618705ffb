"""Runs of one config that one process starts within the same second each
get a timestamp of their own, hence their own logger, message hub,
visualizer and log folder (mmengine names all four after the config and
the timestamp, and hands back the existing one of a taken name)."""
import os.path as osp
import shutil
import time

from mopro.engine import MoProRunner
from helpers.training import tiny_v1_cfg

#: 2100-01-01 00:00:00.25 UTC: a second no other test's Runner has taken
FROZEN = 4102444800.25


class FrozenClock:
    """``time.time`` standing still until something sleeps."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _runner(work_dir):
    cfg = tiny_v1_cfg(osp.join(work_dir, 'data'), work_dir, 'unused')
    cfg.pop('experiment_name')  # named after the config file, as tools do
    return MoProRunner.from_cfg(cfg)


def test_runs_of_one_config_in_one_second_do_not_share_logs(
        monkeypatch, tmp_path):
    clock = FrozenClock(FROZEN)
    monkeypatch.setattr(time, 'time', clock.time)
    monkeypatch.setattr(time, 'sleep', clock.sleep)
    first = _runner(str(tmp_path / 'first'))
    # the first run's folder gone (a test's tmp_path, a discarded sweep run)
    shutil.rmtree(tmp_path / 'first')
    second = _runner(str(tmp_path / 'second'))

    assert first.timestamp == time.strftime('%Y%m%d_%H%M%S',
                                            time.localtime(FROZEN))
    assert second.timestamp == time.strftime('%Y%m%d_%H%M%S',
                                             time.localtime(FROZEN + 1))
    assert clock.now == FROZEN + 0.75  # waited for the next second only
    assert second.experiment_name != first.experiment_name
    assert second.logger is not first.logger
    assert second.message_hub is not first.message_hub
    assert second.visualizer is not first.visualizer
    log_dir = tmp_path / 'second' / second.timestamp
    assert (log_dir / 'vis_data' / 'config.py').is_file()
    assert (log_dir / f'{second.timestamp}.log').is_file()
    assert not (tmp_path / 'first').exists()
