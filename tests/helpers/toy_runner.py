"""A toy Runner with SafeCheckpointHook: a linear model, 3 epochs of 2
iterations, a checkpoint every epoch (one kept) and a score that improves
at every evaluation; a hook that makes it diverge."""
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import HOOKS, METRICS
from mmengine.runner import Runner
from torch import nn


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


@HOOKS.register_module(force=True)
class DivergeInEpoch2(Hook):
    """Makes the toy model's bias NaN after the last step of the second
    epoch, as a diverged step would."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.epoch == 1 and batch_idx == len(runner.train_dataloader) - 1:
            with torch.no_grad():
                runner.model.linear.bias.fill_(float('nan'))


class Killed(Exception):
    """Stands for a SIGKILL: nothing after it runs."""


def toy_runner(work_dir, name, save_best='score', **kwargs) -> Runner:
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
