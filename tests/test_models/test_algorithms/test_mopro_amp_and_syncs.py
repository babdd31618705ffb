"""MoPro's training step under bf16 autocast and ``channels_last``, and
without host-device syncs: no operator that makes a GPU step wait, on the
CPU (recorded with ``helpers.host_reads.HostReads``) and on CUDA (torch's
sync debug mode)."""
import pytest
import torch
from mmengine.optim import OptimWrapper

from helpers import ROOT
from helpers.host_reads import HostReads
from helpers.models import (LOSS_KEYS, PHASES, B, D, K, R, build,
                            cuda_train_data, random_prototypes, record_head,
                            samples, train_data, views)
from helpers.mopro_reference import make_noisy


# ----------------------------------------------------------------------
# mixed precision and memory format
def test_bf16_autocast_keeps_queue_and_prototypes_float32(monkeypatch):
    model = build(phase='clean')
    weak, strong = views(9)
    labels = make_noisy(model, weak)
    calls = record_head(monkeypatch, model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss([weak, strong], samples(labels))
    for key in LOSS_KEYS:
        assert losses[key].dtype == torch.float32
        assert torch.isfinite(losses[key]), key
    sum(losses[k] for k in LOSS_KEYS).backward()
    assert model.queue.dtype == torch.float32
    assert model.prototypes.dtype == torch.float32
    torch.testing.assert_close(model.queue[:, :B],
                               calls[-1]['key'].float().t())
    touched = torch.unique(calls[-1]['pseudo_labels'])
    touched = touched[touched >= 0]
    torch.testing.assert_close(model.prototypes[touched].norm(dim=1),
                               torch.ones(len(touched)))


def test_bf16_autocast_prototype_logits_are_float32(monkeypatch):
    # Like the head's logits, the prototype logits (used for noise
    # correction and L_pro) must be computed in float32 under autocast:
    # in bf16, logits near 1/tau = 10 are rounded to multiples of 1/16.
    model = build(phase='clean')
    weak, strong = views(9)
    labels = make_noisy(model, weak)
    protos = model.prototypes.clone()
    calls = record_head(monkeypatch, model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.loss([weak, strong], samples(labels))
    call = calls[-1]
    assert call['proto_logits'].dtype == torch.float32
    torch.testing.assert_close(call['proto_logits'],
                               call['query'].float() @ protos.t() / 0.1,
                               rtol=0, atol=1e-5)


def test_channels_last_model_matches_default_layout():
    plain = build(seed=4, phase='proto')
    plain.prototypes.copy_(random_prototypes())
    fast = build(seed=11, phase='proto', channels_last=True)
    fast.load_state_dict(plain.state_dict())
    assert fast.backbone.conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    weak, strong = views(10)
    labels = samples(torch.arange(B) % K)
    a = plain.loss([weak, strong], labels)
    b = fast.loss([weak, strong], labels)
    for key in LOSS_KEYS:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(plain.prototypes, fast.prototypes, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize('phase', list(PHASES))
def test_train_step_makes_no_host_reads(phase):
    model = build(phase=phase)
    model.prototypes.copy_(random_prototypes())
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                        weight_decay=1e-4))
    batches = [train_data(seed) for seed in range(3)]
    with HostReads() as reads:
        for data in batches:
            model.train_step(data, optim_wrapper)
    assert reads.seen == []
    assert model.queue_ptr.item() == (3 * B) % R  # the steps did run


def test_host_read_detector_sees_syncs():
    # the detector is not blind: the old prototype update selected the
    # valid samples with a boolean mask and counted them with bincount,
    # and nonfinite='skip' reads the finite flag on the host
    labels = torch.tensor([0, -1, 2, 2])
    feats = torch.randn(4, D)
    with HostReads() as reads:
        valid = labels >= 0
        feats[valid], torch.bincount(labels[valid]), torch.tensor(0.5)
    assert reads.seen == [
        'aten.index.Tensor', 'aten.index.Tensor', 'aten.bincount.default',
        'aten.lift_fresh.default'
    ]
    model = build(phase='proto', nonfinite='skip')
    data = train_data()
    with HostReads() as reads:
        model.loss(
            model.data_preprocessor(data, True)['inputs'],
            data['data_samples'])
    assert reads.seen == ['aten._local_scalar_dense.default']


def test_bf16_optim_wrapper_has_no_loss_scaler(monkeypatch):
    # the configs' AmpOptimWrapper (configs/_base_/runtime_gpu.py)
    # runs bf16 without a loss scaler (torch's GradScaler reads its found-inf
    # flag on the host in every step); the step under it, bf16 autocast
    # included, reads nothing on the host and resumes from its state dict.
    # (mmengine only builds AmpOptimWrapper where CUDA is available: allowed
    # here so that the autocast step runs on the CPU.)
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    amp_cfg = Config.fromfile(
        f'{ROOT}/configs/_base_/runtime_gpu.py').optim_wrapper
    model = build(phase='clean')
    optim_wrapper = build_optim_wrapper(
        model, dict(amp_cfg, optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    assert optim_wrapper.cast_dtype == torch.bfloat16
    assert not optim_wrapper.loss_scaler.is_enabled()
    batches = [train_data(seed) for seed in range(2)]
    with HostReads() as reads:
        for data in batches:
            log_vars = model.train_step(data, optim_wrapper)
    assert reads.seen == []
    assert torch.isfinite(log_vars['loss'])
    state = optim_wrapper.state_dict()
    assert state['loss_scaler'] == {}
    optim_wrapper.load_state_dict(state)


@pytest.mark.gpu
def test_bf16_amp_step_on_cuda_makes_no_host_sync():
    # the configs' AmpOptimWrapper (bf16, no loss scaler) around whole
    # train_steps, data preprocessing from pinned memory included: torch's
    # sync debug mode raises on any synchronizing CUDA call
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    amp_cfg = Config.fromfile(
        f'{ROOT}/configs/_base_/runtime_gpu.py').optim_wrapper
    model = build(phase='clean').cuda()
    model.prototypes.copy_(random_prototypes().cuda())
    optim_wrapper = build_optim_wrapper(
        model, dict(amp_cfg, optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    batches = [cuda_train_data(seed) for seed in range(4)]
    model.train_step(batches[0], optim_wrapper)  # lazy CUDA initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for data in batches[1:]:
            log_vars = model.train_step(data, optim_wrapper)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert torch.isfinite(log_vars['loss'])
    assert model.queue.dtype == model.prototypes.dtype == torch.float32
    assert model.queue_ptr.item() == (4 * B) % R
    model.finite_guard.check()
