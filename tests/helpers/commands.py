"""The tools as users run them: ``python tools/<tool>.py ARGS`` in a
subprocess, on the CPU, with the package of this checkout; or a tool's work
in this process inside ``run_tool(main)``, the error boundary that turns a
user error into one ``error: ...`` line and exit status 1
(``mopro.utils.errors``)."""
import importlib.util
import json
import os
import socket
import subprocess
import sys
from types import ModuleType
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from mopro.utils.errors import TRACEBACK_ENV, run_tool
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


def tool_module(tool: str) -> ModuleType:
    """``tools/<tool>.py`` imported as a module (not as ``__main__``): its
    ``main`` for :func:`call_tool`, its ``parse_args``."""
    path = os.path.join(ROOT, 'tools', f'{tool}.py')
    name = 'tool_' + tool.replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (a process
    group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def user_env() -> dict:
    """This environment without ``MOPRO_TRACEBACK``, on the CPU, one thread
    per process, and the package of this checkout first."""
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    env.update(
        CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            filter(None, [ROOT, env.get('PYTHONPATH')])))
    return env


def launcher_env() -> dict:
    """:func:`user_env` for a launcher (``tools/dist_*.sh``, torchrun):
    PYTHON this interpreter, PORT a free port for the rendezvous."""
    return dict(user_env(), PYTHON=sys.executable, PORT=str(free_port()))


def start(tool: str, args: Sequence,
          cwd: Optional[str] = None) -> subprocess.Popen:
    """``python tools/<tool>.py ARGS`` started in ``cwd`` (default: this
    process's); stdout and stderr apart."""
    return subprocess.Popen([
        sys.executable,
        os.path.join(ROOT, 'tools', f'{tool}.py'), *map(str, args)
    ], cwd=cwd, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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


def run(tool: str, args: Sequence, cwd: str,
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


# ``python TOOL --help`` for each tool, one after the other in one
# interpreter (``runpy``, as ``__main__``): the libraries are imported once.
# Prints {tool: [exit status, stdout, stderr]} as JSON.
_HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
answers = {}
for tool in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [tool, '--help']
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(tool, run_name='__main__')
            status = 0
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else int(
                exit.code is not None)
        except Exception:  # what an uncaught exception does to a process
            traceback.print_exc()
            status = 1
    answers[tool] = [status, out.getvalue(), err.getvalue()]
print(json.dumps(answers))
"""


def tools_help(tools: Sequence[str], env: dict,
               cwd: str) -> Dict[str, ToolResult]:
    """What ``python TOOL --help`` does for each of ``tools`` (paths), run
    in one process with ``env`` from ``cwd``: exit status, stderr, and
    stdout as the value. Use it where importing the libraries once per
    tool adds nothing to the check; a tool's own imports are checked one
    process per tool (``tests/test_utils/test_environment.py``)."""
    result = subprocess.run([sys.executable, '-c', _HELP_DRIVER, *tools],
                            env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.splitlines()[-1])
    return {
        tool: ToolResult(status, err, out)
        for tool, (status, out, err) in answers.items()
    }
