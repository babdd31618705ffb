"""DeferredRuntimeInfoHook: the Runner loop logs what mmengine's
RuntimeInfoHook logs, without reading a value on the host per iteration."""
import glob
import json
import os.path as osp

import mmengine.device.utils
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from mopro.checkpoint import load_checkpoint
from mopro.engine import MoProRunner
from mopro.engine.hooks import DeferredRuntimeInfoHook
from mopro.engine.hooks.runtime_info_hook import _snapshot
from mopro.engine.message_hub import GrowingHistoryBuffer
from helpers.host_reads import HostReads
from helpers.models import model_cfg, train_data

ITERS, INTERVAL, CKPT_INTERVAL = 7, 3, 5
TIMES = ('time', 'data_time', 'eta', 'memory')


class _Probe(Hook):
    """After each iteration (last of all hooks), how many syncing operators
    the loop dispatched since the previous one."""

    priority = 'LOWEST'

    def __init__(self, reads: HostReads) -> None:
        self.reads, self.per_iter, self._seen = reads, [], 0

    def before_train(self, runner) -> None:
        self._seen = len(self.reads.seen)  # not the weight initialisation

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.per_iter.append(len(self.reads.seen) - self._seen)
        self._seen = len(self.reads.seen)


def _run(tmp_path, runtime_info: str, monkeypatch=None, runner_type=Runner):
    name = f'{runtime_info}_{runner_type.__name__}'
    work_dir = str(tmp_path / name)
    batches = [train_data(seed) for seed in range(ITERS)]
    reads = HostReads()
    probe = _Probe(reads)
    runner = runner_type(
        model=model_cfg(), work_dir=work_dir,
        experiment_name=f'{name}_{tmp_path.name}', train_dataloader=DataLoader(
            batches, batch_size=None), train_cfg=dict(by_epoch=False,
                                                      max_iters=ITERS),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(
            runtime_info=dict(type=runtime_info),
            logger=dict(type='LoggerHook', interval=INTERVAL),
            checkpoint=dict(type='CheckpointHook', interval=CKPT_INTERVAL,
                            by_epoch=False), sampler_seed=None), custom_hooks=[
                                dict(type='MoProHook', start_proto_epoch=0,
                                     start_clean_epoch=0), probe
                            ], log_processor=dict(by_epoch=False),
        visualizer=dict(type='Visualizer',
                        vis_backends=[dict(type='LocalVisBackend')
                                      ]), log_level='WARNING',
        default_scope='mmpretrain', randomness=dict(seed=0))
    flushes = []
    for hook in runner.hooks:
        if isinstance(hook, DeferredRuntimeInfoHook):
            flush = hook.flush

            def spy(runner, flush=flush, hook=hook):
                if hook._pending:
                    flushes.append(runner.iter)
                flush(runner)

            monkeypatch.setattr(hook, 'flush', spy)
    with reads:
        runner.train()
    return runner, probe.per_iter, flushes, work_dir


def _history(message_hub) -> dict:
    return {
        key: [a.tolist() for a in buf.data]
        for key, buf in message_hub.log_scalars.items()
        if key.startswith('train/') and not key.endswith(TIMES)
    }


def _logged(work_dir) -> list:
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [{
            k: v
            for k, v in json.loads(line).items() if not k.endswith(TIMES)
        } for line in f]


@pytest.mark.slow
def test_deferred_logging_is_stock_logging_without_syncs(
        tmp_path, monkeypatch):
    # both Runners train on the CPU, where two runs of the same steps are
    # equal to the bit (on CUDA, cuDNN's backward algorithms and atomic adds
    # are not); the CUDA copy to the host has its own gpu test below
    monkeypatch.setattr(mmengine.device.utils, 'DEVICE', 'cpu')
    stock, stock_reads, _, stock_dir = _run(tmp_path, 'RuntimeInfoHook')
    ours, our_reads, flushes, our_dir = _run(tmp_path,
                                             'DeferredRuntimeInfoHook',
                                             monkeypatch)
    # same message-hub history (every value, in order) and same logged
    # interval means (iterations 3 and 6: the logger ignores the last one)
    assert _history(ours.message_hub) == _history(stock.message_hub)
    assert len(_history(ours.message_hub)['train/loss'][0]) == ITERS
    logged = _logged(our_dir)
    assert [line['step'] for line in logged] == [3, 6]
    assert logged == _logged(stock_dir)
    # the checkpoint at iteration 5 holds the message hub up to iteration 5
    # (flushed before it was saved), as with the stock hook
    hubs = [
        load_checkpoint(osp.join(
            d, f'iter_{CKPT_INTERVAL}.pth'))['message_hub']['log_scalars']
        for d in (our_dir, stock_dir)
    ]
    for key, buf in hubs[1].items():
        if key.startswith('train/') and not key.endswith(TIMES):
            assert ([a.tolist() for a in hubs[0][key].data
                     ] == [a.tolist() for a in buf.data])
    assert len(hubs[0]['train/loss'].data[0]) == CKPT_INTERVAL
    # the stock hook reads values on the host in every iteration; ours in
    # none (the flush's copy to the host is no operator on the CPU) and
    # flushes only where the logger or a checkpoint reads: after
    # iterations 3, 5 (checkpoint), 6 and 7 (the last checkpoint);
    # runner.iter is 0-based
    assert all(n > 0 for n in stock_reads) and len(stock_reads) == ITERS
    assert our_reads == [0] * ITERS
    assert flushes == [2, 4, 5, 6]


@pytest.mark.slow
def test_mopro_runner_logs_what_mmengines_runner_logs(tmp_path, monkeypatch):
    """MoProRunner's message hub (histories that append in constant time)
    holds and logs, and checkpoints, what mmengine's holds."""
    monkeypatch.setattr(mmengine.device.utils, 'DEVICE', 'cpu')
    stock, _, _, stock_dir = _run(tmp_path, 'DeferredRuntimeInfoHook',
                                  monkeypatch)
    ours, _, _, our_dir = _run(tmp_path, 'DeferredRuntimeInfoHook',
                               monkeypatch, MoProRunner)
    scalars = ours.message_hub.log_scalars
    assert all(type(buf) is GrowingHistoryBuffer for buf in scalars.values())
    assert set(scalars) == set(stock.message_hub.log_scalars)
    assert _history(ours.message_hub) == _history(stock.message_hub)
    assert _logged(our_dir) == _logged(stock_dir)
    hubs = [
        load_checkpoint(osp.join(
            d, f'iter_{CKPT_INTERVAL}.pth'))['message_hub']['log_scalars']
        for d in (our_dir, stock_dir)
    ]
    assert hubs[0].keys() == hubs[1].keys()
    for key, buf in hubs[1].items():
        assert type(hubs[0][key]) is type(buf)
        if not key.endswith(TIMES):
            assert ([a.tolist() for a in hubs[0][key].data
                     ] == [a.tolist() for a in buf.data])


class _Ops(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_an_iteration_costs_no_kernel_and_a_flush_one_copy_per_dtype():
    """Keeping an iteration's values runs no kernel (only a detach, a view,
    of a value with a graph); a flush of 5 iterations stacks and reads each
    dtype's values once."""
    weight = torch.ones((), requires_grad=True)
    hook = DeferredRuntimeInfoHook()
    outputs = [
        dict(loss=weight * step, acc=torch.tensor(0.5),
             count=torch.tensor(step), lr=0.1) for step in range(5)
    ]
    with _Ops() as kept:
        for values in outputs:
            hook._pending.append(_snapshot(values))
    assert kept.ops == ['aten.detach.default'] * 5

    class _Hub:
        scalars = []

        def update_scalar(self, key, value):
            self.scalars.append((key, value))

    runner = type('R', (), {'message_hub': _Hub()})()
    with _Ops() as flushed:
        hook.flush(runner)
    assert flushed.ops.count('aten.stack.default') == 2
    assert runner.message_hub.scalars[:8] == [('train/loss', 0.0),
                                              ('train/acc', 0.5),
                                              ('train/count', 0),
                                              ('train/lr', 0.1),
                                              ('train/loss', 1.0),
                                              ('train/acc', 0.5),
                                              ('train/count', 1),
                                              ('train/lr', 0.1)]


@pytest.mark.parametrize('value, expected', [
    (torch.tensor(1.5, dtype=torch.bfloat16), 1.5),
    (torch.tensor(0.1), torch.tensor(0.1).item()),
    (torch.tensor(3), 3),
    (torch.tensor(True), True),
    (0.25, 0.25),
])
def test_flushed_values_are_item_values(value, expected):

    class _Hub:

        def __init__(self):
            self.scalars = []

        def update_scalar(self, key, value):
            self.scalars.append((key, value))

    runner = type('R', (), {'message_hub': _Hub()})()
    hook = DeferredRuntimeInfoHook()
    hook._pending.append(_snapshot(dict(v=value, loss=torch.tensor(2.0))))
    hook.flush(runner)
    ((key, got), loss) = runner.message_hub.scalars
    assert key == 'train/v' and got == expected
    assert type(got) is type(expected)
    assert loss == ('train/loss', 2.0)


@pytest.mark.gpu
def test_cuda_values_are_kept_without_a_sync_and_read_at_the_flush():
    """On CUDA an iteration's values are kept without a synchronising call
    (CUDA's sync debug mode) and read, exactly, at the flush."""
    loss = torch.tensor(2.5, device='cuda', requires_grad=True) * 1
    values = dict(loss=loss, count=torch.tensor(3, device='cuda'),
                  half=torch.tensor(0.1, device='cuda',
                                    dtype=torch.bfloat16), lr=0.1)
    hook = DeferredRuntimeInfoHook()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        hook._pending.append(_snapshot(values))
    finally:
        torch.cuda.set_sync_debug_mode('default')

    class _Hub:
        scalars = []

        def update_scalar(self, key, value):
            self.scalars.append((key, value))

    runner = type('R', (), {'message_hub': _Hub()})()
    hook.flush(runner)
    assert runner.message_hub.scalars == [('train/loss', 2.5),
                                          ('train/count', 3),
                                          ('train/half',
                                           values['half'].item()),
                                          ('train/lr', 0.1)]
    assert type(runner.message_hub.scalars[1][1]) is int
