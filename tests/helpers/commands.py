"""The tools as users run them: ``python tools/<tool>.py ARGS`` in a
subprocess, on the CPU, with the package of this checkout; or a tool's work
in this process inside ``run_tool(main)``, the error boundary that turns a
user error into one ``error: ...`` line and exit status 1
(``mopro.utils.cli``)."""
import os
import subprocess
import sys
from typing import Any, List, NamedTuple, Optional, Sequence

from mopro.utils.cli import TRACEBACK_ENV, run_tool
from . import ROOT


class ToolResult(NamedTuple):
    code: int
    stderr: str
    # what main returned (in-process runs) or printed (processes)
    value: Any = None

    @property
    def error(self) -> str:
        """The one ``error: ...`` line; asserts there is exactly one."""
        lines = [
            line for line in self.stderr.splitlines()
            if line.startswith('error: ')
        ]
        assert self.code == 1 and len(lines) == 1, self
        assert 'Traceback' not in self.stderr, self.stderr
        return lines[0]


def call_tool(tool, argv: Optional[Sequence], capsys,
              monkeypatch) -> ToolResult:
    """``tool.main(argv)`` (``tool``: a module with ``main``) or
    ``tool()`` (a package function, ``argv`` None) inside ``run_tool``, in
    this process."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    capsys.readouterr()
    value, code = None, 0
    try:
        if argv is None:
            value = run_tool(tool)
        else:
            value = run_tool(tool.main, [str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return ToolResult(code, capsys.readouterr().err, value)


def _env() -> dict:
    """This environment without ``MOPRO_TRACEBACK``, on the CPU, one thread
    per process, and the package of this checkout first."""
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    env.update(
        CUDA_VISIBLE_DEVICES='',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            filter(None, [ROOT, env.get('PYTHONPATH')])))
    return env


def start(tool: str,
          args: Sequence,
          cwd: Optional[str] = None) -> subprocess.Popen:
    """``python tools/<tool>.py ARGS`` started in ``cwd`` (default: this
    process's); stdout and stderr apart."""
    return subprocess.Popen([
        sys.executable,
        os.path.join(ROOT, 'tools', f'{tool}.py'), *map(str, args)
    ],
                            cwd=cwd,
                            env=_env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)


def finish(procs: List[subprocess.Popen],
           timeout: int = 600) -> List[subprocess.CompletedProcess]:
    """Wait for ``procs`` (started side by side)."""
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append(
            subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def run(tool: str,
        args: Sequence,
        cwd: str,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """``python tools/<tool>.py ARGS`` in ``cwd``, to its end."""
    return finish([start(tool, args, cwd)], timeout)[0]


def run_tools(commands: List[Sequence],
              timeout: int = 600) -> List[ToolResult]:
    """``python tools/<name>.py ARGS`` for each ``[name, *args]``, as a
    user runs it (the processes run side by side)."""
    done = finish([start(name, args) for name, *args in commands], timeout)
    return [
        ToolResult(proc.returncode, proc.stderr, proc.stdout) for proc in done
    ]
