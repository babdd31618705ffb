"""MoPro's non-finite losses: ``nonfinite='raise'`` (deferred, never
waiting for a copy in flight; on CUDA through pinned memory and an event)
and ``'skip'`` (zero losses, BN statistics restored, a run of skips
stops)."""
import pytest
import torch

from mopro.models.nonfinite import NonFiniteError
from helpers.log_records import log_messages
from helpers.models import (LOSS_KEYS, B, K, build, random_prototypes, samples,
                            views)


# ----------------------------------------------------------------------
# non-finite losses
def _state(model):
    return {
        n: getattr(model, n).clone()
        for n in ('queue', 'queue_ptr', 'prototypes')
    }


@pytest.mark.parametrize('bad_view', [0, 1])
def test_nonfinite_raise_leaves_queue_and_prototypes(bad_view):
    # the step itself only records the (device) flag; the next step raises
    model = build(phase='proto', nonfinite='raise')
    model.prototypes.copy_(random_prototypes())
    inputs = views(8)
    inputs[bad_view][0, 0, 0, 0] = float('nan')
    before = _state(model)
    model.loss(inputs, samples(torch.arange(B) % K))
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name
    with pytest.raises(FloatingPointError, match='recent iteration'):
        model.loss(views(9), samples(torch.arange(B) % K))
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name


def test_nonfinite_raise_check_finite_reports_once():
    model = build(phase='proto', nonfinite='raise')
    model.finite_guard.check()  # nothing recorded yet
    inputs = views(8)
    inputs[0][0, 0, 0, 0] = float('nan')
    model.loss(inputs, samples(torch.arange(B) % K))
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        model.finite_guard.check()
    model.finite_guard.check()  # already reported
    model.loss(views(9), samples(torch.arange(B) % K))
    model.finite_guard.check()  # a finite step passes


class CopyInFlight:
    """Stands for the CUDA event of a flag copy that has not landed yet."""

    def __init__(self):
        self.landed = False

    def query(self):
        return self.landed

    def synchronize(self):
        self.landed = True


def test_nonfinite_raise_waits_only_when_asked():
    # a step never waits for a flag still being copied; a checkpoint does
    model = build(phase='proto', nonfinite='raise')
    guard = model.finite_guard
    event = CopyInFlight()
    guard._unchecked.append((torch.tensor(False), event,
                             dict(loss_cls=torch.tensor(float('nan')))))
    model.loss(views(9), samples(torch.arange(B) % K))  # does not wait
    assert not event.landed and len(guard._unchecked) == 2
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        guard.check(wait=True)
    assert event.landed and guard._unchecked == []


def test_nonfinite_skip_returns_zero_losses():
    model = build(phase='proto', nonfinite='skip')
    model.prototypes.copy_(random_prototypes())
    inputs = views(8)
    inputs[0][0, 0, 0, 0] = float('nan')
    before = _state(model)
    losses = model.loss(inputs, samples(torch.arange(B) % K))
    loss_names = [k for k in losses if k.startswith('loss')]
    assert set(LOSS_KEYS) <= set(loss_names)
    for key in loss_names:
        assert losses[key].item() == 0.0, key
    sum(losses[k] for k in loss_names).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize('bad_view', [0, 1])
def test_nonfinite_skip_restores_batchnorm_statistics(bad_view):
    # a NaN input batch goes through both encoders' train-mode BatchNorm
    # before the loss is known; skip puts the statistics back
    model = build(phase='proto', nonfinite='skip')
    model.loss(views(7), samples(torch.arange(B) % K))  # non-trivial stats
    before = {name: buf.clone() for name, buf in model.named_buffers()}
    inputs = views(8)
    inputs[bad_view][0, 0, 0, 0] = float('nan')
    model.loss(inputs, samples(torch.arange(B) % K))
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_nonfinite_skip_counts_and_stops_after_a_run_of_skips():
    # a diverged model makes every step non-finite: 'skip' logs each skipped
    # step with its count and stops at model.max_consecutive_skips
    model = build(phase='proto', nonfinite='skip', max_consecutive_skips=3)
    with torch.no_grad():
        model.classifier.weight.fill_(float('inf'))
    with log_messages() as logged:
        for step in (1, 2):
            model.loss(views(step), samples(torch.arange(B) % K))
            assert model.finite_guard.num_skipped == step
    assert len(logged) == 2
    assert logged[1].startswith('MoPro: skipped an iteration with a '
                                'non-finite loss (loss_cls=nan')
    assert logged[1].endswith('2 skipped so far, 2 in a row (the run stops '
                              'at 3)')
    with pytest.raises(NonFiniteError, match='3 iterations in a row had a '
                       'non-finite loss'):
        model.loss(views(3), samples(torch.arange(B) % K))


def test_nonfinite_skip_run_is_reset_by_a_finite_step():
    model = build(phase='proto', nonfinite='skip', max_consecutive_skips=2)
    bad = views(8)
    bad[0][0, 0, 0, 0] = float('nan')
    for inputs in (bad, views(9), bad, views(10), bad):
        model.loss(inputs, samples(torch.arange(B) % K))
    guard = model.finite_guard
    assert (guard.num_skipped, guard.consecutive_skips) == (3, 1)


# ----------------------------------------------------------------------
# on a CUDA device (make test-gpu)
@pytest.mark.gpu
def test_nonfinite_raise_on_cuda_pinned_flag_and_event():
    # the finite flag of each step goes to pinned host memory with a CUDA
    # event; a non-finite step leaves queue and prototypes as they were and
    # finite_guard.check() (before a checkpoint) waits for the copy and raises
    model = build(phase='proto', nonfinite='raise').cuda()
    model.prototypes.copy_(random_prototypes())
    labels = [ds.to('cuda') for ds in samples(torch.arange(B) % K)]
    model.loss([v.cuda() for v in views(7)], labels)
    (host, ready, _), = model.finite_guard._unchecked
    assert host.is_pinned() and isinstance(ready, torch.cuda.Event)
    model.finite_guard.check()
    assert model.finite_guard._unchecked == []
    inputs = [v.cuda() for v in views(8)]
    inputs[0][0, 0, 0, 0] = float('nan')
    before = _state(model)
    model.loss(inputs, labels)
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        model.finite_guard.check()
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name
