"""SafeCheckpointHook: a save that dies half-way keeps the previous
checkpoints and a working ``last_checkpoint``."""
import os
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, METRICS
from mmengine.runner import Runner
from torch import nn

from mopro.engine.hooks import SafeCheckpointHook
from mopro.models.nonfinite import NonFiniteError
from mopro.utils.cli import is_user_error


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=(out**2).mean())
        return list(out)


@METRICS.register_module(force=True)
class RisingScore(BaseMetric):
    """A score that improves every evaluation: every epoch saves a best
    checkpoint and deletes the previous one."""

    def __init__(self):
        super().__init__()
        self.evaluations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.evaluations += 1
        return dict(score=float(self.evaluations))


class Killed(Exception):
    """Stands for a SIGKILL: nothing after it runs."""


def _toy_runner(work_dir, name, save_best='score', **kwargs) -> Runner:
    """3 epochs of a toy model, a checkpoint every epoch, one kept (and the
    best one with ``save_best``). ``name``: the experiment's, unique (a
    Runner's message hub, best score included, is shared by its name)."""
    data = [dict(inputs=torch.randn(2)) for _ in range(4)]
    loader = dict(dataset=data, batch_size=2, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=dict(type='RisingScore'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=3, val_interval=1),
        val_cfg=dict(),
        default_hooks=dict(
            checkpoint=dict(type='SafeCheckpointHook', interval=1,
                            max_keep_ckpts=1, save_best=save_best,
                            rule='greater', backend_args=dict(
                                backend='atomic_local'))),
        randomness=dict(seed=0),
        experiment_name=name,
        # the scope of the other tests (conftest), which a Runner makes
        # the current one
        default_scope='mmpretrain',
        **kwargs)


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
        _toy_runner(tmp_path, f'dies_at_{dies_at}').train()
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
    _toy_runner(tmp_path, 'complete').train()
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
        _toy_runner(tmp_path, 'killed', save_best=None).train()
    monkeypatch.undo()
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) \
        == ['epoch_2.pth', 'epoch_3.pth']
    last = (tmp_path / 'last_checkpoint').read_text()
    assert last == str(tmp_path / 'epoch_3.pth')

    _toy_runner(tmp_path, 'resumed', save_best=None, resume=True,
                load_from=last).train()
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) \
        == ['epoch_3.pth']


@HOOKS.register_module(force=True)
class DivergeInEpoch2(Hook):
    """Makes the toy model's bias NaN after the last step of the second
    epoch, as a diverged step would."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.epoch == 1 and batch_idx == len(runner.train_dataloader) - 1:
            with torch.no_grad():
                runner.model.linear.bias.fill_(float('nan'))


def test_a_diverged_state_is_never_saved(tmp_path):
    """max_keep_ckpts=1: epoch 2's state is NaN, so its checkpoint is not
    written, with one line naming the tensor, and epoch 1's, the last good
    one, is neither deleted nor unnamed by ``last_checkpoint``."""
    runner = _toy_runner(tmp_path, 'diverged', save_best=None,
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
