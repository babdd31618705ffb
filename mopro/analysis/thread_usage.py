"""CPU time of a process and of each of its threads, from Linux's /proc.

The training process runs more than its training thread: torch's intra-op
pool, the GPU data path's decoding thread, the pin-memory thread. Process
CPU time alone does not say which of them is busy, so a timed window takes
a :func:`sample_threads` at its start and end and :func:`thread_report`
names the busiest threads. Elsewhere than Linux the report is None.
"""
import os
import threading
from typing import Dict, NamedTuple, Optional, Tuple

import torch

TOP_THREADS = 8  # threads listed by thread_report
BUSY_CORES = 0.1  # a thread busier than this fraction of a core is counted

# thread id -> (name, CPU seconds)
ThreadTimes = Dict[int, Tuple[str, float]]


def proc_cpu_seconds(stat_path: str) -> Tuple[str, float]:
    """The name (``comm``) and CPU seconds (user + system) of a process or
    thread, from its ``/proc/.../stat`` file.

    Raises:
        OSError: the file cannot be read (e.g. the thread has ended).
    """
    with open(stat_path) as f:
        text = f.read()
    # the name is in parentheses and may itself hold spaces or ')'
    head, rest = text.rsplit(')', 1)
    name = head.split('(', 1)[1]
    fields = rest.split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return name, ticks / os.sysconf('SC_CLK_TCK')


def thread_cpu_seconds() -> Optional[ThreadTimes]:
    """The name and CPU seconds of every live thread of this process (None
    without /proc). The name is Python's for a Python thread
    (``MainThread``, ``decode_ahead_0``), else the kernel's (``comm``:
    torch's OpenMP threads inherit the process's). A thread that ends
    while being read is left out."""
    try:
        tids = os.listdir('/proc/self/task')
    except OSError:
        return None
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    times = {}
    for tid in map(int, tids):
        try:
            name, seconds = proc_cpu_seconds(f'/proc/self/task/{tid}/stat')
        except OSError:
            continue
        times[tid] = (python_names.get(tid, name), seconds)
    return times


class ThreadSample(NamedTuple):
    """The threads' CPU seconds at one moment (None without /proc), and
    torch's intra-op and inter-op thread counts in this process then."""
    times: Optional[ThreadTimes]
    torch_threads: int
    torch_interop_threads: int


def sample_threads() -> ThreadSample:
    """:func:`thread_cpu_seconds` and torch's thread counts, now."""
    return ThreadSample(thread_cpu_seconds(), torch.get_num_threads(),
                        torch.get_num_interop_threads())


def _thread_entry(name: str, seconds: float, wall_s: float,
                  images: int) -> Dict:
    return dict(name=name, cpu_ms_per_image=1e3 * seconds / images,
                cores=seconds / wall_s)


def thread_report(start: ThreadSample, stop: ThreadSample, wall_s: float,
                  images: int) -> Optional[Dict]:
    """What each thread of this process spent between the ``start`` and
    ``stop`` samples (:func:`sample_threads`), over ``wall_s`` seconds and
    ``images`` images.

    ``top``: the :data:`TOP_THREADS` busiest threads (name, CPU ms per
    image, cores: CPU seconds per wall second); ``busy_threads``: how many
    were busier than :data:`BUSY_CORES` of a core; ``main_thread``: the
    process's first thread (the training loop's); torch's intra-op and
    inter-op thread counts at the start. A thread started in
    the window counts from zero; one that ended in it is missing (its time
    is in the process's CPU time only). The samples have the kernel's clock
    tick as resolution (10 ms on most systems). None without /proc.
    """
    if start.times is None or stop.times is None or wall_s <= 0:
        return None
    used = {
        tid: (name, seconds - start.times.get(tid, (name, 0.0))[1])
        for tid, (name, seconds) in stop.times.items()
    }
    ranked = sorted(used.items(), key=lambda item: -item[1][1])
    main = used.get(os.getpid())
    return dict(
        torch_num_threads=start.torch_threads,
        torch_num_interop_threads=start.torch_interop_threads,
        threads=len(used), busy_threads=sum(s / wall_s > BUSY_CORES
                                            for _, s in used.values()),
        main_thread=None if main is None else _thread_entry(
            *main, wall_s, images), top=[
                _thread_entry(name, seconds, wall_s, images)
                for _, (name, seconds) in ranked[:TOP_THREADS]
            ])
