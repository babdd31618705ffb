"""NonFiniteGuard's host copies of the finite flags on CUDA: pinned buffers
reused, never overwritten before they were read (stand-in buffers and
events on the CPU; real ones in the gpu test)."""
import pytest
import torch

from mopro.models.nonfinite import NonFiniteError, NonFiniteGuard, PinnedFlags


class FakeEvent:
    """A CUDA event that passes when the test says so."""

    def __init__(self):
        self.passed = True

    def record(self):
        self.passed = False

    def query(self):
        return self.passed

    def synchronize(self):
        self.passed = True


def _guard():
    made = []

    def new_buffer():
        made.append(torch.empty((), dtype=torch.bool))
        return made[-1]

    guard = NonFiniteGuard('raise')
    guard._pinned = PinnedFlags(new_buffer, FakeEvent)
    return guard, made


def _step(guard, loss):
    guard.before_step(None)
    guard.after_step(None, dict(loss=torch.tensor(loss)))
    return guard._unchecked[-1][1]  # the step's event


def test_a_flag_in_flight_is_not_overwritten():
    """The NaN step's copy has not landed when the next step copies its
    flag: that copy goes to another buffer, and the NaN is reported."""
    guard, made = _guard()
    nan_copied = _step(guard, float('nan'))
    next_copied = _step(guard, 1.0)
    assert len(made) == 2
    nan_copied.passed = next_copied.passed = True
    with pytest.raises(NonFiniteError, match='loss=nan'):
        guard.before_step(None)


def test_buffers_are_reused_once_read():
    """The device one step behind the host: 100 steps use two buffers, each
    handed out again only after its flag was read."""
    guard, made = _guard()
    behind = None
    for step in range(100):
        copied = _step(guard, float(step))
        if behind is not None:
            behind.passed = True
        behind = copied
    assert len(made) == 2
    guard.check()
    assert guard._unchecked == []


def test_a_waiting_check_reads_every_flag():
    guard, made = _guard()
    _step(guard, 1.0)
    _step(guard, float('inf'))
    with pytest.raises(NonFiniteError, match='loss=inf'):
        guard.check(wait=True)


@pytest.mark.gpu
def test_cuda_flags_land_in_reused_pinned_buffers():
    guard = NonFiniteGuard('raise')
    for step in range(20):
        guard.before_step(None)
        torch.cuda._sleep(1000000)  # the device behind the host
        guard.after_step(None, dict(loss=torch.tensor(1.0, device='cuda')))
    guard.check()
    buffers = guard._pinned._free
    assert 1 <= len(buffers) <= 20
    assert all(host.is_pinned() for host, _ in buffers)
    made = len(buffers)
    for step in range(20):
        guard.before_step(None)
        guard.after_step(None, dict(loss=torch.tensor(1.0, device='cuda')))
    guard.check()
    assert len(guard._pinned._free) == made  # no buffer made in the end
    guard.after_step(None,
                     dict(loss=torch.tensor(float('nan'), device='cuda')))
    with pytest.raises(NonFiniteError):
        guard.check()
