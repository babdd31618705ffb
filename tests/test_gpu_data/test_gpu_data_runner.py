"""The GPU-data config through mmengine's Runner on the CPU: it trains,
decodes each batch one ahead in the background (DecodeAheadHook), and a
resumed run makes the views of the uninterrupted one."""
import os.path as osp
import threading

import pytest
import torch
from mmengine.runner import Runner

from helpers.data import make_webvision
from helpers.gpu_views import gpu_data_cfg, train_recording


@pytest.mark.slow
def test_gpu_data_config_trains_through_the_runner(tmp_path):
    """The GPU-data config as shipped (compiled views), shrunk, trains 2
    iterations on the CPU; its batches are bytes/pixels and the
    preprocessor makes the views."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    runner = Runner.from_cfg(gpu_data_cfg(root, str(tmp_path / 'work'), 2))
    assert type(runner.model.data_preprocessor).__name__ == \
        'MoProGPUViewsPreprocessor'
    runner.train()
    assert int(runner.model.queue_ptr) == 8
    assert runner.model.data_preprocessor._calls == 2


def test_batches_are_decoded_one_ahead_in_the_background(
        tmp_path, monkeypatch):
    """Through the Runner (DecodeAheadHook), each batch after the first is
    being decoded, in the background thread, before the preprocessor takes
    it; the views equal those of the same run decoding each batch when it
    is used (no hook)."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    ahead, decoded = train_recording(
        gpu_data_cfg(root, str(tmp_path / 'ahead'), 3), monkeypatch)
    assert [started for _, started, _ in ahead] == [False, True, True]
    # the three batches, then the one after the last (fetched ahead)
    assert [paths for _, paths in decoded[:3]] == \
        [paths for paths, _, _ in ahead]
    assert len(decoded) == 4
    assert all(name.startswith('decode_ahead') for name, _ in decoded)
    cfg = gpu_data_cfg(root, str(tmp_path / 'inline'), 3)
    del cfg.default_hooks.decode_ahead
    inline, decoded = train_recording(cfg, monkeypatch)
    assert [started for _, started, _ in inline] == [False] * 3
    assert all(name == threading.current_thread().name for name, _ in decoded)
    for (paths, _, ours), (their_paths, _, theirs) in zip(ahead, inline):
        assert paths == their_paths
        for view, other in zip(ours, theirs):
            torch.testing.assert_close(view, other, atol=0, rtol=0)


def test_resumed_run_makes_the_same_views(tmp_path, monkeypatch):
    """Resumed from iteration 2's checkpoint, iteration 3 sees the batch and
    the views of the uninterrupted run (the sampler repeats the order; the
    views are seeded by iteration); the batches the resumed loop skips are
    never decoded."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    first = str(tmp_path / 'first')
    full, _ = train_recording(gpu_data_cfg(root, first, 3), monkeypatch)
    cfg = gpu_data_cfg(root, str(tmp_path / 'second'), 3)
    cfg.resume, cfg.load_from = True, osp.join(first, 'iter_2.pth')
    resumed, decoded = train_recording(cfg, monkeypatch)
    assert len(full) == 3 and len(resumed) == 1
    assert resumed[0][0] == full[2][0]
    for ours, theirs in zip(resumed[0][2], full[2][2]):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert not torch.equal(full[1][2][1], full[2][2][1])
    # iteration 2's batch and the one after it; not the skipped 0 and 1
    assert len(decoded) == 2 and decoded[0][1] == full[2][0]
