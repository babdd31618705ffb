"""The number of processes a launcher started, known before the Runner is
built (mopro.utils.run_checks.launched_world_size) and used by the queue
check of check_run_config."""
import pytest

from mopro.utils.cli import ConfigError
from mopro.utils.run_checks import check_run_config, launched_world_size
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
