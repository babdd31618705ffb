"""SafeCheckpointHook: a save that dies half-way keeps the previous
checkpoints and a working ``last_checkpoint``."""
import os
import os.path as osp

import pytest

from mopro.engine.hooks import SafeCheckpointHook
from mopro.models.nonfinite import NonFiniteError
from mopro.utils.errors import is_user_error
from helpers.toy_runner import Killed, toy_runner


@pytest.mark.parametrize('dies_at', ['epoch_3.pth', 'best_score_epoch_3.pth'])
def test_a_save_that_dies_keeps_the_previous_checkpoints(
        tmp_path, monkeypatch, dies_at):
    """max_keep_ckpts=1 and save_best: the save of epoch 3's checkpoint (or
    of its best one) dies before the file is in place; the previous one is
    still there, and ``last_checkpoint`` names a complete file."""
    replace = os.replace

    def replace_or_die(src, dst, **kwargs):
        if osp.basename(dst) == dies_at:
            raise Killed
        replace(src, dst, **kwargs)

    monkeypatch.setattr(os, 'replace', replace_or_die)
    with pytest.raises(Killed):
        toy_runner(tmp_path, f'dies_at_{dies_at}').train()
    monkeypatch.undo()

    names = sorted(os.listdir(tmp_path))
    checkpoints = [n for n in names if n.endswith('.pth')]
    if dies_at == 'epoch_3.pth':
        assert checkpoints == ['best_score_epoch_2.pth', 'epoch_2.pth']
    else:  # epoch 3 is complete, so epoch 2 is gone; its best one is kept
        assert checkpoints == ['best_score_epoch_2.pth', 'epoch_3.pth']
    pointer = (tmp_path / 'last_checkpoint').read_text()
    assert pointer == str(tmp_path / checkpoints[1])
    assert not [n for n in names if n.endswith('.tmp')]


def test_a_complete_run_keeps_max_keep_ckpts(tmp_path):
    toy_runner(tmp_path, 'complete').train()
    checkpoints = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert checkpoints == ['best_score_epoch_3.pth', 'epoch_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path /
                                                             'epoch_3.pth')


def test_an_outdated_checkpoint_a_kill_kept_goes_at_resume(
        tmp_path, monkeypatch):
    """Killed after epoch 3's checkpoint is complete, before epoch 2's is
    deleted: both stay (epoch 3's lists epoch 2 as outdated), and the run
    resumed from epoch 3 deletes epoch 2's when it starts."""
    remove = SafeCheckpointHook._remove

    def remove_or_die(hook, path):
        if osp.basename(path) == 'epoch_2.pth':
            raise Killed
        remove(hook, path)

    monkeypatch.setattr(SafeCheckpointHook, '_remove', remove_or_die)
    with pytest.raises(Killed):
        toy_runner(tmp_path, 'killed', save_best=None).train()
    monkeypatch.undo()
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) \
        == ['epoch_2.pth', 'epoch_3.pth']
    last = (tmp_path / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'epoch_3.pth')

    toy_runner(tmp_path, 'resumed', save_best=None, resume=True,
               load_from=last).train()
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) \
        == ['epoch_3.pth']


def test_a_diverged_state_is_never_saved(tmp_path):
    """max_keep_ckpts=1: epoch 2's state is NaN, so its checkpoint is not
    written, with one line naming the tensor, and epoch 1's, the last good
    one, is neither deleted nor unnamed by ``last_checkpoint``."""
    runner = toy_runner(tmp_path, 'diverged', save_best=None,
                        custom_hooks=[dict(type='DivergeInEpoch2')])
    with pytest.raises(NonFiniteError) as info:
        runner.train()
    assert is_user_error(info.value)
    assert str(info.value) == (
        'the checkpoint of epoch 2 is not written: state_dict.linear.bias '
        '(1 of 1 values) is NaN or infinite, the run has diverged; the '
        'checkpoints written before are kept (--resume continues from the '
        f'last one, in {tmp_path}): lower the learning rate or check the '
        'data')
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) \
        == ['epoch_1.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path /
                                                             'epoch_1.pth')
