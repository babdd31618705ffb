"""The GPU data path on a GPU: nvjpeg decoding and the views made there
equal the CPU path's (same code, same seed) within stated tolerances; the
mixed bad-image batch on the GPU; decoding never writes memory that work
queued on the training stream still reads (the published reproduction);
decoding one batch ahead through the Runner. Skipped without CUDA."""
import io

import pytest
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from mopro.gpu_data import MoProGPUViewsPreprocessor
from mopro.gpu_data.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.gpu_data.decoding import decode_packed
from mopro.gpu_data.views import apply_view
from helpers.data import make_webvision
from helpers.gpu_views import (MEAN, STD, crops_of, dirty_files, gpu_data_cfg,
                               mixed_photos, packed_batch, photos,
                               strong_params, to_float, train_recording)

pytestmark = pytest.mark.gpu

# GPU clock cycles the stream-race tests keep the training stream busy for
# (torch.cuda._sleep): ~0.5 s at 2 GHz, far longer than decoding 16 images
SPIN_CYCLES = 10**9
JPEG_SIZE = (64, 96)  # height, width of the test JPEGs


def _jpeg_bytes(num: int) -> list:
    out = []
    for image in photos(num, JPEG_SIZE[1], JPEG_SIZE[0]):
        buf = io.BytesIO()
        image.save(buf, 'JPEG', quality=90)
        out.append(buf.getvalue())
    return out


def _jpegs(num: int) -> list:
    return [
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        for data in _jpeg_bytes(num)
    ]


def test_nvjpeg_decodes_as_libjpeg():
    """nvjpeg and libjpeg differ in IDCT and chroma upsampling: within 3
    grey levels on average, 40 at most (at colour edges of 4:2:0 chroma)."""
    data = _jpegs(16)
    on_gpu = decode_jpeg(data, mode=ImageReadMode.RGB, device='cuda')
    on_cpu = decode_jpeg(data, mode=ImageReadMode.RGB)
    diffs = [(gpu.cpu().float() - cpu.float()).abs()
             for gpu, cpu in zip(on_gpu, on_cpu)]
    means = [round(d.mean().item(), 2) for d in diffs]
    maxima = [int(d.max()) for d in diffs]
    print(f'nvjpeg - libjpeg: mean {means}, max {maxima}')
    assert max(means) <= 3.0 and max(maxima) <= 40, (means, maxima)


def test_views_on_gpu_equal_views_on_cpu():
    """Same images (of several sizes), same parameters: the GPU computes
    the CPU's views up to float rounding (float32 matrix products: no TF32
    unless the user turns it on)."""
    images = [to_float(im) for im in mixed_photos(16)]
    sizes = torch.tensor([im.shape[1:] for im in images])
    params = strong_params(sizes)
    on_cpu = apply_view(crops_of(images, params.boxes, 32), params)
    on_gpu = apply_view(
        crops_of([im.cuda() for im in images], params.boxes, 32),
        params.to(torch.device('cuda')))
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=0)


def test_preprocessor_on_gpu_matches_cpu_for_the_same_seed(tmp_path):
    """Bytes in, normalised views out, on both devices with one seed (the
    GPU's views compiled, as the GPU config has them): the only difference
    left is nvjpeg's decoding (mean within 2 levels)."""
    data = packed_batch(_jpeg_bytes(16), str(tmp_path))
    views = {}
    for device in ('cpu', 'cuda'):  # on the GPU as configured: compiled
        preprocessor = MoProGPUViewsPreprocessor(
            mean=MEAN, std=STD, crop_size=64, seed=3,
            compile_views=device == 'cuda').to(device)
        out = preprocessor(dict(data), True)
        assert out['data_samples'].device.type == device
        views[device] = [v.cpu() for v in out['inputs']]
    for cpu, gpu in zip(views['cpu'], views['cuda']):
        levels = (cpu - gpu).abs() * torch.tensor(STD).view(1, 3, 1, 1)
        assert levels.mean() <= 2.0


def test_views_take_the_steps_dtype_and_layout(tmp_path):
    """Under the step's bf16 autocast, with channels_last (the GPU
    config's), the views are bf16 channels-last: the float32 views
    rounded once (within one bf16 step of values up to ~2.7)."""
    data = packed_batch(_jpeg_bytes(8), str(tmp_path))
    out = {}
    for autocast in (False, True):
        preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                                 crop_size=32, seed=3,
                                                 channels_last=True,
                                                 compile_views=True).cuda()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=autocast):
            out[autocast] = preprocessor(dict(data), True)['inputs']
    for plain, cast in zip(out[False], out[True]):
        assert plain.dtype == torch.float32 and cast.dtype == torch.bfloat16
        assert cast.is_contiguous(memory_format=torch.channels_last)
        # compiled separately, the float32 values may differ in the last
        # bits, and so their bf16 roundings by one bf16 step (~0.02 here)
        torch.testing.assert_close(cast.float(), plain, atol=0.03, rtol=0)


def test_mixed_bad_batch_on_gpu(tmp_path):
    """Every kind of file the workers pass on (bytes of baseline JPEGs,
    pixels of the rest) plus a JPEG no decoder takes, in one batch."""
    files = dirty_files()
    # the dataset skips undecodable and empty files
    # (test_gpu_views_preprocessor.py); the last entry, bytes no decoder
    # takes, is injected past the workers' check
    entries = [
        data
        for name, data in files.items() if name not in ('undecodable', 'empty')
    ] + [files['baseline']]
    data = packed_batch(entries, str(tmp_path), rejected=[len(entries) - 1])
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                             crop_size=32).cuda()
    out = preprocessor(data, True)
    for view in out['inputs']:
        assert view.is_cuda and view.shape == (len(entries), 3, 32, 32)
        assert torch.isfinite(view).all()
    assert preprocessor.num_bad == 1
    assert preprocessor.num_images == len(entries)


# ------------------------------------------------------------ stream race
def _queue_reads_of_freed_buffers(count: int) -> tuple:
    """The published pattern's first half: ``count`` buffers the size of
    one decoded test image, filled with 7 and resident; a long kernel
    queued on the current stream, then one sum per buffer behind it; the
    buffers freed while the sums are still queued. Returns the sums (read
    them after a synchronize) and the value each must have."""
    numel = 3 * JPEG_SIZE[0] * JPEG_SIZE[1]
    buffers = [
        torch.full((numel, ), 7, dtype=torch.uint8, device='cuda')
        for _ in range(count)
    ]
    torch.cuda.synchronize()
    torch.cuda._sleep(SPIN_CYCLES)
    sums = torch.stack([b.sum(dtype=torch.int64) for b in buffers])
    del buffers  # their blocks go back to the current stream's pool
    return sums, 7 * numel


def _corrupted_sums(decode, trials: int = 3) -> int:
    """How many queued sums a decode issued behind them changed (after one
    decode with nothing queued: the decoder's first call sets it up)."""
    decode()
    torch.cuda.synchronize()
    corrupted = 0
    for _ in range(trials):
        sums, expected = _queue_reads_of_freed_buffers(64)
        decode()
        torch.cuda.synchronize()
        corrupted += int((sums != expected).sum())
    return corrupted


def test_raw_decoder_writes_memory_queued_work_reads():
    """The hazard this path guards against, as published (torchvision pull
    request "Fix CUDA decode_jpeg writing into memory the caller's stream
    is still using"): torchvision's decode_jpeg on the current stream is
    handed the freed buffers and overwrites them before the queued sums
    read them. If this fails, the reproduction does not reach the hazard
    on this GPU, and the next test proves nothing here."""
    data = _jpegs(16)
    assert _corrupted_sums(
        lambda: decode_jpeg(data, mode=ImageReadMode.RGB, device='cuda')) > 0


@pytest.mark.parametrize('ahead', [False, True])
def test_decoding_never_writes_memory_queued_work_reads(tmp_path, ahead):
    """The same pattern through the preprocessor's decoding, in the
    training thread or one batch ahead in the background thread: no queued
    sum changes, and the images are those decoded with nothing queued."""
    data = packed_batch(_jpeg_bytes(16), str(tmp_path))
    preprocessor = MoProGPUViewsPreprocessor(mean=MEAN, std=STD).cuda()
    reference = decode_packed(data['inputs'], 'cuda')
    torch.cuda.synchronize()
    results = []

    def decode():
        batch = dict(data)
        if ahead:  # as DecodeAheadHook: submitted, then taken
            batch[SLOT_KEY] = DecodeSlot()
            previous = dict(data)
            previous[SLOT_KEY] = DecodeSlot()
            previous[SLOT_KEY].following = batch
            previous[SLOT_KEY].start_next(preprocessor._decode)
            results.append(preprocessor._decoded(batch))
        else:
            results.append(preprocessor.decode(data['inputs']))

    assert _corrupted_sums(decode) == 0
    for decoded in results:
        assert torch.equal(decoded.flat, reference.flat)
    assert isinstance(reference.ready, torch.cuda.Event)


def test_decoding_ahead_through_the_runner_changes_no_view(
        tmp_path, monkeypatch):
    """The GPU-data config on the GPU (views compiled), shrunk: with
    DecodeAheadHook each batch after the first is decoded before its step,
    in the background thread, and the views equal those of decoding each
    batch in its step."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    cfg = gpu_data_cfg(root, str(tmp_path / 'ahead'), 3)
    ahead, decoded = train_recording(cfg, monkeypatch)
    assert [started for _, started, _ in ahead] == [False, True, True]
    assert all(name.startswith('decode_ahead') for name, _ in decoded)
    cfg = gpu_data_cfg(root, str(tmp_path / 'inline'), 3)
    del cfg.default_hooks.decode_ahead
    inline, _ = train_recording(cfg, monkeypatch)
    for (_, _, ours), (_, _, theirs) in zip(ahead, inline):
        for view, other in zip(ours, theirs):
            assert view.is_cuda
            torch.testing.assert_close(view, other, atol=1e-5, rtol=0)
