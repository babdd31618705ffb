"""MoProGPUViewsPreprocessor on the CPU (the same code as on the GPU): a
fixed number of operators per batch, compiled views equal to eager ones,
tolerant decoding of a batch of dirty web images, views seeded by seed,
rank and iteration."""
import copy
import os.path as osp
import threading
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub

import mopro.gpu_data.decoding as jpeg_decoding
from mopro.analysis.timing import count_operators
from mopro.datasets import WebVision, packed_images_collate
from mopro.gpu_data import MoProGPUViewsPreprocessor
from mopro.gpu_data.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.gpu_data.preprocessor import compiled_make_view, make_view
from mopro.gpu_data.views import pack_images, resized_crops, sample_view_params
from mopro.utils.errors import DataError
from helpers.data import make_webvision
from helpers.gpu_views import (GPU_DATA, MEAN, REJECTED_BY_EVERY_DECODER, STD,
                               crops_of, dirty_files, dirty_webvision,
                               mixed_photos, packed_batch, strong_params,
                               to_float)


def test_views_only_queue_device_work():
    """Resampling, grayscale, jitter, flip, normalisation and conversion
    read no value of the device's data: with the images on the meta device
    (tensors without values, where reading one raises) they run, and give
    the views' shape, dtype and memory format. The crop boxes and the
    parameters are host tensors by design (sampled on the CPU)."""
    images = [
        torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
        for im in mixed_photos(6)
    ]
    flat, offsets, sizes = pack_images(images)
    params = strong_params(sizes)
    meta = torch.device('meta')
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD)
    crops = resized_crops(
        flat.to(meta), offsets, sizes, params.boxes, 32, 1 / 255)
    view = make_view(crops, params.to(meta), preprocessor.mean.to(meta),
                     preprocessor.std.to(meta), torch.bfloat16,
                     torch.channels_last)
    assert view.shape == (6, 3, 32, 32) and view.dtype == torch.bfloat16
    assert view.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_views_equal_eager_views():
    """``compile_views`` (the GPU config's setting) fuses the same
    computation: equal to eager within float rounding, for both views, in
    float32 and converted to bfloat16 channels-last."""
    images = [to_float(im) for im in mixed_photos(8)]
    sizes = torch.tensor([im.shape[1:] for im in images])
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD)
    mean, std = preprocessor.mean, preprocessor.std
    for params in (sample_view_params(sizes, torch.Generator()),
                   strong_params(sizes)):
        crops = crops_of(images, params.boxes, 32)
        for dtype, layout in ((torch.float32, torch.contiguous_format),
                              (torch.bfloat16, torch.channels_last)):
            eager = make_view(crops, params, mean, std, dtype, layout)
            compiled = compiled_make_view()(crops, params, mean, std, dtype,
                                            layout)
            assert compiled.dtype == dtype
            assert compiled.is_contiguous(memory_format=layout)
            torch.testing.assert_close(
                compiled.float(), eager.float(),
                atol=1e-4 if dtype == torch.float32 else 0.02, rtol=0)
    assert compiled_make_view().compiled is not None  # no fallback


@pytest.mark.slow
def test_a_copied_preprocessor_uses_its_own_parameters(tmp_path):
    """A deep copy (e.g. of the model) normalises with its own mean and
    std, compiled or not."""
    for compile_views in (False, True):
        original = MoProGPUViewsPreprocessor(mean=MEAN, std=STD, crop_size=16,
                                             seed=1,
                                             compile_views=compile_views)
        copied = copy.deepcopy(original)
        copied.mean.zero_()
        copied.std.fill_(1.0)
        data = packed_batch([dirty_files()['baseline']] * 2, str(tmp_path))
        ours = copied(dict(data), True)['inputs'][0]
        theirs = original(dict(data), True)['inputs'][0]
        # unnormalised views are in [0, 255]; the original's are not
        assert ours.min() >= 0 and ours.max() <= 255
        assert theirs.min() < 0
        torch.testing.assert_close(ours, theirs * original.std + original.mean,
                                   atol=1e-3, rtol=0)


def test_preprocessor_dispatches_as_many_operators_for_any_batch(tmp_path):
    """With the batch decoded ahead (as DecodeAheadHook has it), the
    preprocessor's work on the training thread is the same operators for
    32 and for 256 images: no operation per image."""
    files = dirty_files()
    counts = []
    for num in (32, 256):
        data = packed_batch(
            [files['baseline'], files['png'], files['baseline']] * (num // 4) +
            [files['progressive']] * (num - 3 * (num // 4)), str(tmp_path))
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=16)
        slot = data[SLOT_KEY] = DecodeSlot()  # decoded ahead
        slot.future = Future()
        slot.future.set_result(
            jpeg_decoding.decode_packed(data['inputs'], 'cpu'))
        ops = count_operators(lambda: preprocessor(data, True))
        assert preprocessor.num_images == num
        counts.append(ops)
    assert counts[0] == counts[1]


def test_decode_thread_dispatches_as_many_operators_for_any_batch(tmp_path):
    """Decoding one batch ahead (as DecodeAheadHook has it), the operators
    dispatched on the decode thread are the same for 32 and for 256 images
    (with the same share of pixel entries): one split of the bytes, one
    decoder call, one pack. The CPU decoder, libjpeg image by image inside
    one registered operator, counts as one, as nvjpeg's batched call does on
    CUDA."""
    files = dirty_files()
    counts = []
    for num in (32, 256):
        data = packed_batch(
            [files['baseline'], files['png'], files['baseline']] * (num // 4) +
            [files['progressive']] * (num - 3 * (num // 4)), str(tmp_path))
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=16)
        decode, threads = preprocessor._decode, []

        def counted(batch):
            threads.append(threading.current_thread().name)
            return count_operators(lambda: decode(batch))

        preprocessor._decode = counted
        current, following = dict(data), dict(data)
        current[SLOT_KEY], following[SLOT_KEY] = DecodeSlot(), DecodeSlot()
        current[SLOT_KEY].following = following
        current[SLOT_KEY].start_next(preprocessor._decode)
        counts.append(following[SLOT_KEY].future.result())
        assert threads == ['decode_ahead_0']
    assert counts[0] == counts[1]


def test_mixed_bad_image_batch_never_fails(tmp_path):
    """One batch of every kind through LoadWebImageBytes,
    packed_images_collate and the preprocessor: the undecodable and empty
    files are skipped and counted by the dataset (as with LoadWebImage),
    the rest decode (bytes or CPU-decoded pixels) and make both views; a
    JPEG that passes the sniff but that no decoder takes is isolated,
    replaced and counted."""
    kinds = dirty_webvision(str(tmp_path / 'wv'))
    dataset = WebVision(
        data_root=str(tmp_path / 'wv'), split='train', num_classes=2,
        pipeline=Config.fromfile(GPU_DATA).train_pipeline)
    samples = [dataset.prepare_data(i) for i in range(len(dataset))]
    assert [s is None for s in samples
            ] == [k in ('undecodable', 'empty') for k in kinds]
    assert dataset.num_bad == kinds.count('undecodable') + kinds.count('empty')
    samples = [s for s in samples if s is not None]
    as_bytes = [s['inputs'].ndim == 1 for s in samples]
    assert sum(as_bytes) == kinds.count('baseline')
    # an entry no decoder takes, injected past the workers' check
    samples[3]['inputs'] = torch.frombuffer(
        bytearray(REJECTED_BY_EVERY_DECODER), dtype=torch.uint8)
    batch = packed_images_collate(samples)
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD, crop_size=32)
    out = preprocessor(batch, True)
    for view in out['inputs']:
        assert view.shape == (len(samples), 3, 32, 32)
        assert torch.isfinite(view).all()
    assert preprocessor.num_bad == 1
    assert preprocessor.num_images == len(samples)
    assert torch.equal(out['data_samples'], batch['data_samples'])
    # the replaced entry is a copy of the first image of the batch
    decoded = jpeg_decoding.decode_packed(batch['inputs'], 'cpu')
    assert decoded.bad == [3]
    assert torch.equal(decoded.sizes[3], decoded.sizes[0])


def test_max_bad_fraction_still_stops_a_broken_dataset(tmp_path):
    root = str(tmp_path / 'wv')
    make_webvision(root, num_classes=2, per_class=60, size=8)
    with open(osp.join(root, 'info', 'train_filelist_flickr.txt')) as f:
        for line in f:  # the second half of the files are HTML pages
            with open(osp.join(root, line.split()[0]), 'wb') as img:
                img.write(b'<html></html>')
    dataset = WebVision(data_root=root, split='train', num_classes=2,
                        max_bad_fraction=0.1,
                        pipeline=Config.fromfile(GPU_DATA).train_pipeline)
    with pytest.raises(DataError, match='max_bad_fraction=0.1'):
        for i in range(len(dataset)):
            dataset.prepare_data(i)
    # and the preprocessor's own count of images no decoder takes
    good = dirty_files()['baseline']
    preprocessor = MoProGPUViewsPreprocessor(max_bad_fraction=0.1)
    batch = packed_batch([good] * 20, str(tmp_path), rejected=range(1, 20))
    with pytest.raises(DataError, match='data_preprocessor.max_bad'):
        for _ in range(6):
            preprocessor.decode(batch['inputs'])


# ------------------------------------------------------------------ seeding
def test_views_depend_on_seed_rank_and_iteration_only(monkeypatch, tmp_path):
    """Inside a training loop the views of iteration k are the same
    whatever ran before (so a resumed run repeats them); ranks differ."""
    data = packed_batch([dirty_files()['baseline']] * 4, str(tmp_path))
    hub = MessageHub.get_instance('test_gpu_views_seed')
    hub.update_info('loop_stage', 'train')

    def views_at(iteration, rank=0, warmup=0):
        monkeypatch.setattr('mopro.gpu_data.preprocessor.get_rank',
                            lambda: rank)
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=16, seed=7)
        for step in range(warmup):
            hub.update_info('iter', step)
            preprocessor(data, True)
        hub.update_info('iter', iteration)
        return preprocessor(data, True)['inputs'][1]

    try:
        fresh = views_at(3)
        torch.testing.assert_close(views_at(3, warmup=3), fresh)
        assert not torch.equal(views_at(4), fresh)
        assert not torch.equal(views_at(3, rank=1), fresh)
    finally:
        hub.pop_info('loop_stage')
