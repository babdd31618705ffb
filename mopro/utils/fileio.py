"""Atomic file writes: a tool never leaves a half-written output behind."""
import contextlib
import fnmatch
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterator, List, Optional, Union

from mmengine.fileio import LocalBackend, register_backend

# ``.<target name>.<random token>.tmp`` beside the target; the token is
# alphanumeric (older versions used tempfile.mkstemp's 8 characters)
_TEMPORARY = re.compile(r'\.(?P<target>.+)\.[A-Za-z0-9_]{8,}\.tmp')


def _create_temporary(path: str) -> str:
    """Create an empty temporary file beside ``path`` and return its path.

    It is created with mode 0666 less the umask, as ``open(path, 'w')``
    would create ``path`` (``tempfile.mkstemp`` always makes 0600 files,
    which colleagues on a shared cluster could not read).
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    while True:
        tmp = os.path.join(directory, f'.{name}.{secrets.token_hex(8)}.tmp')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # 2**-64 per try
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on
    success, delete it on any error.

    The output gets the permissions the umask gives a new file (0644 under
    umask 022). A process killed (SIGKILL) while writing leaves the
    temporary, ``.<name>.<token>.tmp``, which
    :func:`remove_stale_temporaries` removes.

    Example::

        with atomic_path('out.json') as tmp:
            with open(tmp, 'w') as f:
                json.dump(result, f)
    """
    tmp = _create_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def remove_stale_temporaries(directory: str, pattern: str) -> List[str]:
    """Remove the temporaries :func:`atomic_path` left in ``directory`` for
    targets whose name matches the glob ``pattern`` (a write that was
    killed), and return their paths.

    Only for a directory no other process is writing such files to, e.g. a
    training run's checkpoints when the run starts.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        match = _TEMPORARY.fullmatch(name)
        if match and fnmatch.fnmatchcase(match['target'], pattern):
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        f.write(text)


def write_json(path: str, obj: Any, indent: Optional[int] = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + '\n')


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic writes.

    Checkpoints are written to a temporary file and renamed, so a job killed
    while saving never leaves a truncated latest checkpoint. Select it with
    ``default_hooks.checkpoint.backend_args=dict(backend='atomic_local')``
    (``configs/_base_/default_runtime.py`` does).
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        with atomic_path(str(filepath)) as tmp, open(tmp, 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)
