"""MoProDataPreprocessor: what mmpretrain's SelfSupDataPreprocessor makes
of the views, copied to the device without blocking, made in one pass per
view in the step's dtype and memory format."""
import pytest
import torch
from mmpretrain.registry import MODELS
from torch.utils._python_dispatch import TorchDispatchMode

from helpers.models import build, model_cfg, train_data

CL = torch.channels_last


class _Ops(TorchDispatchMode):
    """Records each operator, and the operators that take one of
    ``watched`` (tensors) as an argument."""

    def __init__(self, watched=()):
        super().__init__()
        self.watched = [id(t) for t in watched]
        self.ops, self.on_watched = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.ops.append(name)
        flat = list(args) + list((kwargs or {}).values())
        flat += [
            a for arg in flat if isinstance(arg, (list, tuple)) for a in arg
        ]
        if any(id(a) in self.watched for a in flat):
            self.on_watched.append(name)
        return func(*args, **(kwargs or {}))


def _preprocessors(**ours):
    cfg = model_cfg()['data_preprocessor']
    return (MODELS.build(dict(cfg, **ours)),
            MODELS.build(dict(cfg, type='SelfSupDataPreprocessor')))


def _all_values(seed=0):
    """A batch with every uint8 value in every channel of both views."""
    data = train_data(seed)
    for view in data['inputs']:
        view.view(-1)[:256 * 3].copy_(torch.arange(256).repeat(3))
    return data


@pytest.mark.parametrize('views_as_list', [True, False])
def test_data_preprocessor_matches_mmpretrain(views_as_list):
    ours, theirs = _preprocessors()
    data = train_data()
    if not views_as_list:
        data['inputs'] = data['inputs'][0]
    got, want = ours(data, True), theirs(data, True)
    if views_as_list:
        assert len(got['inputs']) == len(want['inputs']) == 2
        for a, b in zip(got['inputs'], want['inputs']):
            assert torch.equal(a, b)
    else:
        assert torch.equal(got['inputs'], want['inputs'])
    assert [int(ds.gt_label) for ds in got['data_samples']] == \
        [int(ds.gt_label) for ds in data['data_samples']]
    assert ours._non_blocking and not theirs._non_blocking


@pytest.mark.parametrize('autocast', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
def test_views_are_the_unfused_ones_in_the_steps_dtype_and_format(
        autocast, channels_last):
    """float32 outside autocast, autocast's dtype (bf16) inside it, in the
    asked memory format; the values are mmpretrain's float32 ones rounded
    once to that dtype (bf16 rounding of the same float32: equal)."""
    ours, theirs = _preprocessors(channels_last=channels_last)
    data = _all_values()
    want = theirs(data, True)['inputs']
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        got = ours(data, True)['inputs']
    dtype = torch.bfloat16 if autocast else torch.float32
    fmt = CL if channels_last else torch.contiguous_format
    for a, b in zip(got, want):
        assert a.dtype == dtype and a.is_contiguous(memory_format=fmt)
        assert torch.equal(a, b.to(dtype))


def test_one_view_is_three_kernels_and_no_copy_of_the_input():
    """Per view: the uint8 flip, ``x - mean`` and ``/ std`` written in the
    output's dtype and format (and their allocations); the input, already
    on the device, is not copied."""
    ours, _ = _preprocessors(channels_last=True)
    data = train_data()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        with _Ops(data['inputs']) as ops:
            ours(data, True)
    kernels = [op for op in ops.ops if not op.startswith('aten.empty')]
    assert kernels == ['aten.flip.default', 'aten.sub.out', 'aten.div.out'] * 2
    assert ops.on_watched == ['aten.flip.default'] * 2


def test_models_own_conversions_copy_nothing():
    """A channels-last MoPro under bf16 autocast: its preprocessor makes
    channels-last bf16 views, so the model's channels-last conversion and
    autocast's cast at the first convolution return them as they are;
    only the convolutions read them."""
    model = build(channels_last=True)
    assert model.data_preprocessor.channels_last is True
    with torch.autocast('cpu', dtype=torch.bfloat16):
        views = model.data_preprocessor(train_data(), True)['inputs']
        with _Ops(views) as ops, torch.no_grad():
            model.extract_feat(views[0])
            model.momentum_encode(views[1])
    assert ops.on_watched == ['aten.convolution.default'] * 2


def test_views_follow_the_models_memory_format_unless_set():
    assert build(channels_last=False).data_preprocessor.channels_last is False
    cfg = model_cfg(channels_last=True)
    cfg['data_preprocessor']['channels_last'] = False
    torch.manual_seed(0)
    assert MODELS.build(cfg).data_preprocessor.channels_last is False
