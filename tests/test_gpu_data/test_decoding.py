"""The GPU data path's decoding, on the CPU: the decode-stream protocol
that keeps the decoder from writing memory queued work still reads (with
a stand-in stream that logs what is done in which order), the bisection of
a batch the decoder rejects, the Python work per batch, and decoding one
batch ahead."""
import sys
import threading
from contextlib import contextmanager, nullcontext

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

import mopro.gpu_data.decoding as jpeg_decoding
from mopro.gpu_data import DecodeAheadHook
from mopro.gpu_data.decode_ahead import (SLOT_KEY, DecodeAheadIterator,
                                         DecodeAheadLoader, decode_executor)
from mopro.gpu_data.decoding import (DecodeStream, decode_isolating,
                                     decode_jpegs_cpu, decode_packed)
from mopro.utils.errors import DataError
from helpers.data import make_webvision
from helpers.gpu_views import (REJECTED_BY_EVERY_DECODER, dirty_files,
                               encode_image, gpu_data_cfg, packed_batch,
                               photos)

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
    out, failed = decode_isolating(data, decoder)
    assert [o is None for o in out] == [i in bad for i in range(64)]
    assert failed == bad
    assert all(int(o) == i + 100 for i, o in enumerate(out) if o is not None)
    assert len(decoder.calls) <= 1 + 2 * 6 * len(bad)
    assert sum(decoder.calls) <= 64 * (1 + 2 * max(1, len(bad)))


def test_bisection_raises_out_of_memory():

    def decode(data):
        raise torch.OutOfMemoryError('CUDA out of memory')

    with pytest.raises(torch.OutOfMemoryError):
        decode_isolating([torch.tensor([1])] * 4, decode)


# ------------------------------------------------- decode-stream protocol
class FakeStream:

    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_event(self, event):
        self.log.append(('wait_event', self.name, event))


class FakeDecodeStream(DecodeStream):
    """A DecodeStream on the meta device whose stream calls are logged."""

    def __init__(self, log):
        super().__init__(FakeStream('decode', log), META)
        self.log, self.current = log, 'consumer'

    def on_device(self):
        return nullcontext()

    @contextmanager
    def use(self):
        previous, self.current = self.current, 'decode'
        self.log.append(('enter', 'decode'))
        yield
        self.log.append(('exit', 'decode'))
        self.current = previous

    def synchronize(self):
        self.log.append(('synchronize', 'decode'))

    def settle(self):
        self.log.append(('settle', 'device'))

    def record(self, tensor, stream):
        self.log.append(('record', id(tensor), stream.name))

    def event(self):
        self.log.append(('event', 'decode'))
        return 'event on decode'


def _logged_decoding(packed, monkeypatch, rejects=lambda entry: False):
    """``packed`` decoded through a FakeDecodeStream by a stand-in for nvjpeg
    (outputs on the meta device, raising for a list with an entry
    ``rejects`` takes), the decoder's calls and the packing logged with
    the stream current then; the log and the result."""
    log = []
    streams = FakeDecodeStream(log)

    def decode(data):
        log.append(('decode', streams.current))
        if any(rejects(entry) for entry in data):
            raise RuntimeError('Error while decoding JPEG images')
        return [
            torch.empty(3, 40, 48, dtype=torch.uint8, device=META)
            for _ in data
        ]

    pack = jpeg_decoding._pack

    def logged_pack(*args):
        log.append(('pack', streams.current))
        return pack(*args)

    monkeypatch.setattr(jpeg_decoding, '_pack', logged_pack)
    return log, decode_packed(packed, META, streams, decode), streams


def test_decode_stream_protocol(tmp_path, monkeypatch):
    """The host synchronises the decode stream, then the decoder runs with
    it current; the decoded images and the pixels of CPU-decoded files are
    packed on the decode stream, an event after; the consumer waits for
    that event and records the packed tensor, the only record_stream of
    the batch."""
    files = dirty_files()
    packed = packed_batch([files['baseline'], files['png'], files['baseline']],
                          str(tmp_path))['inputs']
    log, decoded, streams = _logged_decoding(packed, monkeypatch)
    assert log == [('synchronize', 'decode'), ('enter', 'decode'),
                   ('decode', 'decode'), ('exit', 'decode'),
                   ('enter', 'decode'), ('pack', 'decode'), ('exit', 'decode'),
                   ('event', 'decode')]
    assert decoded.flat.device == META and decoded.bad == []
    assert decoded.sizes.tolist() == [[40, 48]] * 3
    assert decoded.ready == 'event on decode'
    del log[:]
    consumer = FakeStream('consumer', log)
    streams.hand_over(decoded.flat, decoded.ready, consumer)
    assert log == [('wait_event', 'consumer', 'event on decode'),
                   ('record', id(decoded.flat), 'consumer')]


def test_a_rejected_batch_settles_the_device_before_packing(
        tmp_path, monkeypatch):
    """A batch the decoder rejects is bisected on the decode stream; then
    the device is synchronised (a rejected call may leave writes queued)
    before the CPU-decoded and uploaded images are packed."""
    files = dirty_files()
    packed = packed_batch([files['baseline']] * 4, str(tmp_path),
                          rejected=[2])['inputs']
    log, decoded, _ = _logged_decoding(
        packed, monkeypatch,
        lambda entry: entry.numel() == len(REJECTED_BY_EVERY_DECODER))
    calls = [entry for entry in log if entry[0] == 'decode']
    assert len(calls) == 5 and set(calls) == {('decode', 'decode')}
    assert log[:2] == [('synchronize', 'decode'), ('enter', 'decode')]
    assert log[2 + len(calls):] == [('exit', 'decode'), ('settle', 'device'),
                                    ('enter', 'decode'), ('pack', 'decode'),
                                    ('exit', 'decode'), ('event', 'decode')]
    assert decoded.bad == [2]


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


def test_images_the_decoder_rejects_keep_their_places(tmp_path):
    """Entries the batched decoder rejects (decoded by the CPU decoder
    instead) and pixels decoded by the workers are put back at their batch
    positions: the batch decodes as with a decoder that takes everything."""
    files = dirty_files()
    other = encode_image(np.asarray(photos(2, 48, 40)[1]), 'JPEG', quality=90)
    data = [
        files['baseline'], files['png'], other, files['baseline'],
        files['gif'], other
    ]
    batch = packed_batch(data, str(tmp_path))['inputs']
    refused = torch.frombuffer(bytearray(other), dtype=torch.uint8)

    def rejecting(entries):  # rejects a list that holds ``other``
        if any(torch.equal(entry, refused) for entry in entries):
            raise RuntimeError('Error while decoding JPEG images')
        return decode_jpegs_cpu(entries)

    ours = decode_packed(batch, 'cpu', decode=rejecting)
    reference = decode_packed(batch, 'cpu')
    assert torch.equal(ours.flat, reference.flat) and ours.bad == []
    assert torch.equal(ours.offsets, reference.offsets)
    assert not torch.equal(ours.flat[ours.offsets[0]:ours.offsets[1]],
                           ours.flat[ours.offsets[2]:ours.offsets[3]])


def test_a_decoded_size_unlike_the_index_names_the_file(tmp_path):
    files = dirty_files()
    batch = packed_batch([files['baseline']] * 3, str(tmp_path))['inputs']
    batch.index[1, 2] += 1  # the height the header gave
    with pytest.raises(DataError, match='0001.jpg: decoded to 5760 values'):
        decode_packed(batch, 'cpu')


# ------------------------------------------------- Python work per batch
def _python_calls(fn, opaque) -> int:
    """The calls (of Python functions, and of built-ins from Python code)
    that ``fn()`` makes in this thread, a call of ``opaque`` and all it
    calls counted as one (sys.setprofile)."""
    count, inside = 0, 0

    def profile(frame, event, arg):
        nonlocal count, inside
        if frame.f_code is opaque.__code__ and event in ('call', 'return'):
            count += event == 'call' and not inside
            inside += 1 if event == 'call' else -1
        elif not inside and event in ('call', 'c_call'):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_decoding_thread_makes_as_many_python_calls_for_any_batch(tmp_path):
    """Decoding a batch on the decode-ahead thread makes the same Python
    calls for 32 and 256 images (with the same few pixel entries): no
    per-image loop. The CPU decoder, libjpeg image by image inside one
    registered operator, stands for nvjpeg's one batched call and is
    counted as one call."""
    files = dirty_files()

    def decoder(data):
        return decode_jpegs_cpu(data)

    counts = []
    for num in (32, 256):
        data = [files['baseline']] * (num - 2) + [files['png'], files['gif']]
        packed = packed_batch(data, str(tmp_path))['inputs']
        counts.append(decode_executor().submit(
            _python_calls,
            lambda: decode_packed(packed, 'cpu', decode=decoder),
            decoder).result())
    assert counts[0] == counts[1]


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
