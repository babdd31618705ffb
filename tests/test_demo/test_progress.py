"""The demo's progress line (mopro.demo.progress): the plan, the ETA and
the pacing of its lines in a log."""
import io

from mopro.demo import progress as progress_module
from mopro.demo.progress import JobProgress, Stage


class FakeClock:

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_plan_eta_and_log_pacing(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, 'monotonic', clock)
    out = io.StringIO()  # a log: new lines, not a rewritten one
    progress = JobProgress(
        [Stage('train', 100.0), Stage('clean', 50.0)], out, log_interval=15.0)
    progress.start_stage('building')
    clock.now += 10
    progress.step(20.0, 'epoch 1/5')  # 2 per second: (150 - 20) / 2 = 65
    clock.now += 5
    progress.step(10.0, 'epoch 2/5')  # within 15 s of the last line
    clock.now += 10
    progress.step(10.0, 'epoch 3/5')  # 40 in 25 s: 110 / 1.6 = 68.75 s
    progress.end_stage()  # the whole planned work counts as done
    clock.now += 5
    progress.start_stage('0/9 images')
    clock.now += 5  # no step yet: the speed so far, 100 in 35 s
    progress.step(5.0, '3/9 images')  # this stage: 5 in 5 s: 45 s left
    assert out.getvalue().splitlines() == [
        '[1/2 train] building | elapsed 0:00:00 | ETA --',
        '[1/2 train] epoch 1/5 | elapsed 0:00:10 | ETA 0:01:05',
        '[1/2 train] epoch 3/5 | elapsed 0:00:25 | ETA 0:01:09',
        '[1/2 train] epoch 3/5 | elapsed 0:00:25 | ETA 0:00:12',
        '[2/2 clean] 0/9 images | elapsed 0:00:30 | ETA 0:00:15',
        '[2/2 clean] 3/9 images | elapsed 0:00:35 | ETA 0:00:45',
    ]
