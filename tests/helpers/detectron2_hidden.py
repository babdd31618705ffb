"""Subprocesses that see no detectron2, as where it is not installed.

A ``sitecustomize.py`` first on ``PYTHONPATH`` makes the path finder find
no ``detectron2`` module: ``import detectron2`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec('detectron2')``
returns None, as without the package.
"""
import os
from pathlib import Path
from typing import Dict, Optional

SITECUSTOMIZE = '''\
import importlib.machinery

_find_spec = importlib.machinery.PathFinder.find_spec


def _find_spec_without_detectron2(cls, fullname, path=None, target=None):
    if fullname.partition('.')[0] == 'detectron2':
        return None
    return _find_spec(fullname, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(
    _find_spec_without_detectron2)
'''


def env_without_detectron2(
        directory: Path, env: Optional[Dict[str,
                                            str]] = None) -> Dict[str, str]:
    """``env`` (default: this process's) for a process that sees no
    detectron2; writes the ``sitecustomize.py`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'sitecustomize.py').write_text(SITECUSTOMIZE)
    env = dict(os.environ if env is None else env)
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [str(directory), env.get('PYTHONPATH')]))
    return env
