"""Commands as a user types them: ``python tools/<tool>.py ARGS`` in a
subprocess, from a working folder, on the CPU, with the package of this
checkout."""
import os
import subprocess
import sys
from typing import List, Sequence

from mopro.utils.cli import TRACEBACK_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    env.update(CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   filter(None, [ROOT, env.get('PYTHONPATH')])))
    return env


def start(tool: str, args: Sequence, cwd: str) -> subprocess.Popen:
    """``python tools/<tool>.py ARGS`` started in ``cwd``; stdout and
    stderr apart."""
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'tools', f'{tool}.py'),
         *map(str, args)], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def finish(procs: List[subprocess.Popen], timeout: int = 600
           ) -> List[subprocess.CompletedProcess]:
    """Wait for ``procs`` (started side by side)."""
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args,
                                                   proc.returncode, out,
                                                   err))
    return results


def run(tool: str, args: Sequence, cwd: str,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """``python tools/<tool>.py ARGS`` in ``cwd``, to its end."""
    return finish([start(tool, args, cwd)], timeout)[0]
