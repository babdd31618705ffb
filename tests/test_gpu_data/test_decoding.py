"""The GPU data path's decoding, on the CPU: the side-stream protocol that
keeps the decoder from writing memory queued work still reads (with
stand-in streams that log what is done in which order), the bisection of
a batch the decoder rejects, and decoding one batch ahead."""
import threading
from contextlib import contextmanager

import pytest
import torch
from mmengine.runner import Runner

from mopro.gpu_data import DecodeAheadHook
from mopro.gpu_data.decode_ahead import (SLOT_KEY, DecodeAheadIterator,
                                         DecodeAheadLoader)
from mopro.gpu_data.decoding import (SideStreams, decode_isolating,
                                     decode_on_streams, decode_packed)
from helpers.data import make_webvision
from helpers.gpu_views import dirty_files, gpu_data_cfg, packed_batch

META = torch.device('meta')


# ------------------------------------------------------------ bisection
class CountingDecoder:
    """Decodes lists of 1-element tensors (their value + 100), raising
    like torchvision when a list holds a bad entry (value < 0)."""

    def __init__(self):
        self.calls = []

    def __call__(self, data):
        self.calls.append(len(data))
        if any(int(d) < 0 for d in data):
            raise RuntimeError('Error while decoding JPEG images')
        return [d + 100 for d in data]


@pytest.mark.parametrize('bad', [[], [37], [0, 63], [5, 6, 7]])
def test_bisection_isolates_bad_entries_in_few_calls(bad):
    """The entries that fail alone are None, the others decoded; one bad
    entry of 64 costs 2 log2(64) + 1 = 13 calls, not 64."""
    data = [torch.tensor([-1 if i in bad else i]) for i in range(64)]
    decoder = CountingDecoder()
    out = decode_isolating(data, decoder)
    assert [o is None for o in out] == [i in bad for i in range(64)]
    assert all(int(o) == i + 100 for i, o in enumerate(out) if o is not None)
    assert len(decoder.calls) <= 1 + 2 * 6 * len(bad)
    assert sum(decoder.calls) <= 64 * (1 + 2 * max(1, len(bad)))


def test_bisection_raises_out_of_memory():

    def decode(data):
        raise torch.OutOfMemoryError('CUDA out of memory')

    with pytest.raises(torch.OutOfMemoryError):
        decode_isolating([torch.tensor([1])] * 4, decode)


# ------------------------------------------------- side-stream protocol
class FakeStream:

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(('wait_stream', self.name, other.name))

    def wait_event(self, event):
        self.log.append(('wait_event', self.name, event))

    def __repr__(self):
        return self.name


class FakeStreams(SideStreams):
    """SideStreams on the meta device whose stream calls are logged."""

    def __init__(self, log):
        super().__init__(
            FakeStream('decode', log), FakeStream('pack', log), META)
        self.log, self.current = log, 'consumer'

    @contextmanager
    def on_device(self):
        yield

    @contextmanager
    def use(self, stream):
        previous, self.current = self.current, stream.name
        self.log.append(('enter', stream.name))
        yield
        self.log.append(('exit', stream.name))
        self.current = previous

    def record(self, tensor, stream):
        self.log.append(('record', id(tensor), stream.name))

    def event(self, stream):
        self.log.append(('event', stream.name))
        return f'event on {stream.name}'


def test_side_stream_protocol(tmp_path):
    """The decoder allocates its outputs with the decode stream current,
    after that stream waited for the consumer's; each output is recorded
    on the pack stream (which waited for the decode stream) before it is
    packed; the consumer waits for the event after the packing and records
    the packed tensor. The pixels of CPU-decoded files join on the pack
    stream."""
    files = dirty_files()
    packed = packed_batch([files['baseline'], files['png'], files['baseline']],
                          str(tmp_path))['inputs']
    log = []
    streams = FakeStreams(log)
    outputs = []

    def decode(data):  # stands in for nvjpeg: outputs on the device
        log.append(('decode', streams.current))
        out = [
            torch.empty(3, 40, 48, dtype=torch.uint8, device=META)
            for _ in data
        ]
        outputs.extend(out)
        return out

    consumer = FakeStream('consumer', log)
    decoded = decode_on_streams(packed, streams, consumer, decode)
    assert log[:3] == [('wait_stream', 'decode', 'consumer'),
                       ('enter', 'decode'), ('decode', 'decode')]
    assert log[3] == ('exit', 'decode')
    assert log[4:6] == [('wait_stream', 'pack', 'decode'), ('enter', 'pack')]
    assert log[6:8] == [('record', id(out), 'pack') for out in outputs]
    assert log[8:] == [('exit', 'pack'), ('event', 'pack')]
    assert decoded.flat.device == META and decoded.bad == []
    assert decoded.sizes.tolist() == [[40, 48]] * 3
    assert decoded.ready == 'event on pack'
    del log[:]
    streams.hand_over(decoded.flat, decoded.ready, consumer)
    assert log == [('wait_event', 'consumer', 'event on pack'),
                   ('record', id(decoded.flat), 'consumer')]


def test_cpu_decoding_matches_image_by_image(tmp_path):
    """The packed batch's images are those of each file alone, in order
    (JPEG bytes decoded, pixels as the worker decoded them)."""
    files = dirty_files()
    kinds = ['baseline', 'cmyk', 'progressive', 'baseline', 'gif']
    batch = packed_batch([files[k] for k in kinds], str(tmp_path))
    decoded = decode_packed(batch['inputs'], 'cpu')
    for i, kind in enumerate(kinds):
        one = decode_packed(
            packed_batch([files[kind]], str(tmp_path))['inputs'], 'cpu')
        start = int(decoded.offsets[i])
        numel = one.flat.numel() - int(one.sizes[0, 1])  # less padding
        assert torch.equal(decoded.flat[start:start + numel], one.flat[:numel])
    assert decoded.flat.numel() == int(
        decoded.offsets[-1]) + 3 * int(decoded.sizes[-1].prod()) + int(
            decoded.sizes[:, 1].max())


# ------------------------------------------------------- decoding ahead
def _batches(num):
    return [dict(index=i) for i in range(num)]


def test_decode_ahead_iterator_links_each_batch_to_the_next():
    iterator = DecodeAheadIterator(iter(_batches(3)))
    first, second, third = list(iterator)
    assert [b['index'] for b in (first, second, third)] == [0, 1, 2]
    assert first[SLOT_KEY].following is second
    assert second[SLOT_KEY].following is third
    assert third[SLOT_KEY].following is None
    assert all(b[SLOT_KEY].future is None for b in (first, second, third))


def test_start_next_decodes_the_next_batch_once_in_the_background():
    iterator = DecodeAheadIterator(iter(_batches(3)))
    first = next(iterator)
    threads = []

    def decode(batch):
        threads.append(threading.current_thread().name)
        return batch['index'] * 10

    first[SLOT_KEY].start_next(decode)
    first[SLOT_KEY].start_next(decode)  # no second submission
    second = next(iterator)
    assert second[SLOT_KEY].future.result() == 10
    assert threads == ['decode_ahead_0']
    assert first[SLOT_KEY].following is None  # holds no decoded batch


def test_decode_ahead_loader_is_the_loader_per_epoch():

    class Loader(list):
        sampler = 'the sampler'

    loader = DecodeAheadLoader(Loader(_batches(4)))
    assert len(loader) == 4 and loader.sampler == 'the sampler'
    for _ in range(2):  # each epoch starts over
        assert [b['index'] for b in loader] == [0, 1, 2, 3]


def test_decode_ahead_hook_wraps_only_the_gpu_data_path(tmp_path):
    """IterBasedTrainLoop: its iterator; EpochBasedTrainLoop: its loader;
    another preprocessor: nothing."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    cfg = gpu_data_cfg(root, str(tmp_path / 'iter'), 1)
    runner = Runner.from_cfg(cfg)
    DecodeAheadHook().before_train(runner)
    assert isinstance(runner.train_loop.dataloader_iterator,
                      DecodeAheadIterator)
    cfg = gpu_data_cfg(root, str(tmp_path / 'epoch'), 1)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    runner = Runner.from_cfg(cfg)
    DecodeAheadHook().before_train(runner)
    assert isinstance(runner.train_loop.dataloader, DecodeAheadLoader)
    assert len(runner.train_dataloader) == len(
        runner.train_loop.dataloader._loader)
    cfg = gpu_data_cfg(root, str(tmp_path / 'cpu'), 1)
    cfg.model.data_preprocessor = dict(type='MoProDataPreprocessor')
    runner = Runner.from_cfg(cfg)
    loop = runner.train_loop
    iterator = loop.dataloader_iterator
    DecodeAheadHook().before_train(runner)
    assert loop.dataloader_iterator is iterator
