"""CopyAheadHook: the CPU data path's next batch copied to the device on a
side stream one step ahead. The stream protocol runs on the CPU with
stand-in streams (each copy a clone); a gpu test runs it on CUDA."""
import os.path as osp
from contextlib import contextmanager

import mmengine.device.utils
import pytest
import torch
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from mopro.engine import copy_ahead
from mopro.engine.copy_ahead import (SLOT_KEY, CopyAheadIterator,
                                     CopyAheadLoader, CopyStreams)
from helpers.models import SIZE, B, K, model_cfg


class FakeStream:

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_event(self, event):
        self.log.append(('wait_event', self.name, event))


class FakeStreams(CopyStreams):
    """CopyStreams on the CPU whose stream calls are logged; a copy is a
    clone, logged with the name ``names`` gives its source."""

    def __init__(self, log, names=None):
        super().__init__(FakeStream('copy', log), torch.device('cpu'))
        self.log, self.names = log, names if names is not None else {}
        self.current = 'consumer'
        self.copies = {}  # id of a copy -> its source's name
        self._events = 0

    @contextmanager
    def use(self, stream):
        previous, self.current = self.current, stream.name
        self.log.append(('enter', stream.name))
        yield
        self.log.append(('exit', stream.name))
        self.current = previous

    def copy(self, tensor):
        name = self.names.get(id(tensor), id(tensor))
        self.log.append(('copy', name, self.current))
        out = tensor.clone()
        self.copies[id(out)] = name
        return out

    def record(self, tensor, stream):
        self.log.append(('record', id(tensor), stream.name))

    def event(self, stream):
        self._events += 1
        self.log.append(('event', stream.name))
        return f'event {self._events} on {stream.name}'

    def consumer(self):
        return FakeStream('consumer', self.log)


def _batch(index):
    gen = torch.Generator().manual_seed(index)
    return dict(
        inputs=[
            torch.randint(0, 256, (B, 3, SIZE, SIZE), generator=gen,
                          dtype=torch.uint8) for _ in range(2)
        ], data_samples=(torch.arange(B) + index) % K)


def test_copy_stream_protocol():
    """The copies are made with the copy stream current, then an event is
    recorded on it; the hand-over makes the consumer wait for that event,
    records every copy on the consumer, and puts the copies in the
    batch."""
    log = []
    batch = _batch(0)
    views, labels = batch['inputs'], batch['data_samples']
    streams = FakeStreams(log)
    copied = streams.start(batch)
    assert log == [('enter', 'copy'), ('copy', id(views[0]), 'copy'),
                   ('copy', id(views[1]), 'copy'),
                   ('copy', id(labels), 'copy'), ('exit', 'copy'),
                   ('event', 'copy')]
    assert copied.ready == 'event 1 on copy'
    assert batch['inputs'] is views  # nothing handed over yet
    del log[:]
    streams.hand_over(batch, copied)
    tensors = [*copied.inputs, copied.labels]
    assert log == [('wait_event', 'consumer', 'event 1 on copy')
                   ] + [('record', id(t), 'consumer') for t in tensors]
    assert batch['inputs'] is copied.inputs
    assert batch['data_samples'] is copied.labels
    assert all(torch.equal(a, b) for a, b in zip(tensors, [*views, labels]))


def test_iterator_fetches_the_next_batch_only_when_asked():
    batches = [_batch(i) for i in range(3)]
    fetched = []

    def source():
        for batch in batches:
            fetched.append(batch)
            yield batch

    iterator = CopyAheadIterator(source())
    first = next(iterator)
    assert len(fetched) == 1
    second = iterator.peek()
    assert len(fetched) == 2 and iterator.peek() is second
    assert next(iterator) is second and len(fetched) == 2
    third = next(iterator)
    assert iterator.peek() is None
    with pytest.raises(StopIteration):
        next(iterator)
    got = [first, second, third]
    assert all(b['data_samples'] is s['data_samples']
               for b, s in zip(got, batches))
    assert all(b[SLOT_KEY].copied is None for b in got)
    assert all(SLOT_KEY not in b for b in batches)  # the loader's untouched
    loader = CopyAheadLoader(batches)
    assert len(loader) == 3 and len(list(loader)) == len(list(loader)) == 3
    assert isinstance(loader.iterator, CopyAheadIterator)
    # other batches pass as they are
    assert list(CopyAheadIterator([(1, 2), dict(inputs='bytes')
                                   ])) == [(1, 2),
                                           dict(inputs='bytes')]


def _runner(tmp_path, name, batches, train_cfg, hooks=True, **kwargs):
    return Runner(
        model=model_cfg(), work_dir=str(tmp_path / name),
        experiment_name=f'{name}_{tmp_path.name}',
        train_dataloader=DataLoader(batches,
                                    batch_size=None), train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(
            sampler_seed=None, logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False)),
        custom_hooks=[dict(type='CopyAheadHook')] if hooks else [],
        log_level='WARNING', default_scope='mmpretrain',
        visualizer=dict(type='Visualizer',
                        vis_backends=[]), randomness=dict(seed=0), **kwargs)


@pytest.fixture
def fake_cuda(monkeypatch):
    """The hook's copy streams made stand-ins (the model stays on the CPU);
    its log records each copy and, from the data preprocessor, each step
    with the batch it got (the name of its copy, or 'host')."""
    monkeypatch.setattr(mmengine.device.utils, 'DEVICE', 'cpu')
    log, names = [], {}
    streams = FakeStreams(log, names)
    monkeypatch.setattr(copy_ahead, 'copy_streams', lambda device: streams)

    def watch(runner):
        forward = runner.model.data_preprocessor.forward

        def spy(data, training=False):
            view = data['inputs'][0]
            log.append(('step', streams.copies.get(id(view), 'host')))
            return forward(data, training)

        runner.model.data_preprocessor.forward = spy

    return log, names, watch


def _named(names, batches):
    for index, batch in enumerate(batches):
        names[id(batch['inputs'][0])] = f'batch {index}'
    return batches


def _steps_and_copies(log):
    return [(kind, what) for kind, what, *_ in log
            if kind == 'step' or (kind == 'copy' and isinstance(what, str))]


def test_each_batch_is_copied_during_the_step_before_it(fake_cuda, tmp_path):
    """EpochBasedTrainLoop, 2 epochs of 4 batches: batch k + 1 is copied
    before step k, each batch once, and each step gets its batch's copies;
    the weights are those of a run without the hook."""
    log, names, watch = fake_cuda
    batches = _named(names, [_batch(i) for i in range(4)])
    runner = _runner(tmp_path, 'ahead', batches,
                     dict(by_epoch=True, max_epochs=2))
    watch(runner)
    runner.train()
    epoch = [('copy', 'batch 0'), ('copy', 'batch 1'), ('step', 'batch 0'),
             ('copy', 'batch 2'), ('step', 'batch 1'), ('copy', 'batch 3'),
             ('step', 'batch 2'), ('step', 'batch 3')]
    assert _steps_and_copies(log) == epoch * 2
    plain = _runner(tmp_path, 'plain', [_batch(i) for i in range(4)],
                    dict(by_epoch=True, max_epochs=2), hooks=False)
    plain.train()
    ours, theirs = runner.model.state_dict(), plain.model.state_dict()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_a_resumed_run_copies_no_skipped_batch(fake_cuda, tmp_path):
    """IterBasedTrainLoop resumed at iteration 3 of 6: the 3 batches it
    skips are fetched, not copied, nor is the one after the last
    iteration; the resumed weights are those of a run straight through."""
    log, names, watch = fake_cuda
    batches = _named(names, [_batch(i) for i in range(6)])
    first = _runner(tmp_path, 'first', batches,
                    dict(by_epoch=False, max_iters=3))
    watch(first)
    first.train()
    assert _steps_and_copies(log) == [('copy', 'batch 0'), ('copy', 'batch 1'),
                                      ('step', 'batch 0'), ('copy', 'batch 2'),
                                      ('step', 'batch 1'), ('step', 'batch 2')]
    del log[:]
    resumed = _runner(tmp_path, 'first', batches,
                      dict(by_epoch=False, max_iters=6), resume=True,
                      load_from=osp.join(tmp_path, 'first', 'iter_3.pth'))
    watch(resumed)
    resumed.train()
    assert _steps_and_copies(log) == [('copy', 'batch 3'), ('copy', 'batch 4'),
                                      ('step', 'batch 3'), ('copy', 'batch 5'),
                                      ('step', 'batch 4'), ('step', 'batch 5')]
    straight = _runner(tmp_path, 'straight', [_batch(i) for i in range(6)],
                       dict(by_epoch=False, max_iters=6), hooks=False)
    straight.train()
    ours, theirs = resumed.model.state_dict(), straight.model.state_dict()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_nothing_changes_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(mmengine.device.utils, 'DEVICE', 'cpu')
    runner = _runner(tmp_path, 'cpu', [_batch(i) for i in range(2)],
                     dict(by_epoch=True, max_epochs=1))
    runner.train()
    assert type(runner.train_loop.dataloader) is DataLoader


@pytest.mark.gpu
def test_cuda_copies_are_complete_when_the_step_reads_them():
    """The copy stream held back (a long kernel before the copies): the
    training stream, which waits only for the event, still reads the whole
    batch, and queueing the copies never makes the host wait."""
    streams = CopyStreams.for_device(torch.device('cuda', 0))
    batch = _batch(0)
    batch = dict(inputs=[v.pin_memory() for v in batch['inputs']],
                 data_samples=batch['data_samples'].pin_memory())
    want = [v.sum().item() for v in batch['inputs']]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        with torch.cuda.stream(streams.stream):
            torch.cuda._sleep(50_000_000)  # ~ tens of ms on the copy stream
        copied = streams.start(batch)
        streams.hand_over(batch, copied)
        sums = [v.sum(dtype=torch.int64) for v in batch['inputs']]
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert [s.item() for s in sums] == want
    assert batch['data_samples'].is_cuda
    assert torch.equal(batch['data_samples'].cpu(), _batch(0)['data_samples'])
