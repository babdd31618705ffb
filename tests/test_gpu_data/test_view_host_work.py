"""What the GPU data path's view code does on the training thread's CPU:
for a batch of 256 WebVision-size images, every host operator stays below
ATen's parallel grain (no OpenMP region, whose spinning threads would
compete with the dataloader workers), and no value on the device is read
(the device is the meta device here: tensors without values, where reading
one raises)."""
from concurrent.futures import Future

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from mopro.analysis.timing import count_operators
from mopro.datasets.collate import PackedImages
from mopro.gpu_data import MoProGPUViewsPreprocessor
from mopro.gpu_data.decode_ahead import SLOT_KEY, DecodeSlot
from mopro.gpu_data.decoding import DecodedBatch
from helpers.gpu_views import MEAN, STD

GRAIN_SIZE = 32768  # ATen's at::internal::GRAIN_SIZE


class HostSizes(TorchDispatchMode):
    """Records each operator that touches a CPU tensor, with the size of
    its largest CPU tensor (inputs and outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [
            t.numel() for t in tree_leaves((args, kwargs, out))
            if isinstance(t, torch.Tensor) and t.device.type == 'cpu'
        ]
        if sizes:
            self.sizes.append((max(sizes), str(func)))
        return out


def webvision_sizes(num: int) -> torch.Tensor:
    """N x 2 ``(height, width)`` as WebVision's resized images have them:
    a 256-pixel short side, aspect ratios 1 to 4:3 (the long side up to
    341), a third of them portrait, both extremes included."""
    generator = torch.Generator().manual_seed(0)
    long_side = torch.randint(256, 342, (num, ), generator=generator)
    long_side[:2] = 341
    portrait = torch.arange(num) % 3 == 0
    short_side = torch.full_like(long_side, 256)
    return torch.stack([
        torch.where(portrait, long_side, short_side),
        torch.where(portrait, short_side, long_side)
    ], dim=1)


def decoded_on_meta(num: int) -> dict:
    """A batch of ``num`` WebVision-size images decoded ahead (as
    DecodeAheadHook has it), their pixels on the meta device, packed as
    the decoder packs them."""
    sizes = webvision_sizes(num)
    numels = 3 * sizes[:, 0] * sizes[:, 1]
    offsets = torch.cat(
        [torch.zeros(1, dtype=torch.int64),
         numels.cumsum(0)[:-1]])
    flat = torch.empty(
        int(numels.sum() + sizes[:, 1].max()), dtype=torch.uint8,
        device='meta')
    data = dict(
        inputs=PackedImages(
            torch.empty(0, dtype=torch.uint8),
            torch.zeros(num, 5, dtype=torch.int64), [''] * num),
        data_samples=torch.zeros(num, dtype=torch.int64))
    slot = data[SLOT_KEY] = DecodeSlot()
    slot.future = Future()
    slot.future.set_result(DecodedBatch(flat, offsets, sizes, bad=[]))
    return data


def record_kernel_launches(monkeypatch) -> list:
    """The Triton resize's launches recorded (their grids) instead of run
    (on the meta device nothing runs), the kernel taken as runnable here."""
    resize_kernel = pytest.importorskip('mopro.gpu_data.resize_kernel')
    launches = []

    class Launches:

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append(grid)

    monkeypatch.setattr(resize_kernel, '_roi_resize_kernel', Launches())
    monkeypatch.setattr(resize_kernel, 'runs_on', lambda device: True)
    return launches


def meta_preprocessor(resample: str) -> MoProGPUViewsPreprocessor:
    """The released views' settings (224 pixels, normalised), eager, on
    the meta device."""
    return MoProGPUViewsPreprocessor(mean=MEAN, std=STD,
                                     resample=resample).to('meta')


@pytest.mark.parametrize('resample', ['matmul', 'triton'])
def test_host_operators_of_the_views_stay_below_the_parallel_grain(
        resample, monkeypatch):
    """The preprocessor's forward for 256 WebVision-size images, by either
    resampling: both views come out, and no operator on a CPU tensor has
    32768 elements or more (the kernel's two launches, one per view,
    recorded instead of run)."""
    num = 256
    if resample == 'triton':
        launches = record_kernel_launches(monkeypatch)
    preprocessor, data = meta_preprocessor(resample), decoded_on_meta(num)
    with HostSizes() as host:
        views = preprocessor(data, True)['inputs']
    assert [tuple(v.shape) for v in views] == [(num, 3, 224, 224)] * 2
    assert all(v.device.type == 'meta' for v in views)
    assert max(host.sizes)[0] < GRAIN_SIZE, max(host.sizes)
    if resample == 'triton':
        assert launches == [(num, 7, 7)] * 2


@pytest.mark.parametrize('resample', ['matmul', 'triton'])
def test_views_dispatch_as_many_operators_for_any_batch(resample, monkeypatch):
    """The operators the preprocessor dispatches on the training thread
    for a batch decoded ahead are the same for 32 and for 256 images, by
    either resampling (a kernel launch is no operator: it is recorded)."""
    if resample == 'triton':
        record_kernel_launches(monkeypatch)
    counts = []
    for num in (32, 256):
        preprocessor, data = meta_preprocessor(resample), decoded_on_meta(num)
        counts.append(count_operators(lambda: preprocessor(data, True)))
    assert counts[0] == counts[1], counts
