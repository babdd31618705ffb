"""Compatibility for the detectron2 v0.6 Python sources without their C++ ops.

detectron2 is not on the package registry under its own name; where its git
repository cannot be reached, ``tools/misc/install_detectron2.py`` installs the
v0.6 Python sources from the registry's ``pb1-detectron2`` sdist, which lack
the compiled ``detectron2._C``. Two things then break at import time, and
this module (the only place that works around detectron2) mends them:

(a) ``from detectron2 import _C`` in ``evaluation/fast_eval_api.py``: a stub
    module stands in and raises a clear error if a compiled op is actually
    used. Mask R-CNN R50-FPN needs none (ROIAlign and NMS come from
    torchvision); COCO evaluation must use ``use_fast_impl=False``.
(b) v0.6 references ``PIL.Image.LINEAR``, removed in Pillow 10; it is an
    alias of ``Image.BILINEAR``.

With a complete detectron2 (compiled ``_C``, release after 0.6) ``install``
does nothing.

The probes of an installed detectron2 (:func:`detectron2_dir`,
:func:`detectron2_version`, :func:`has_compiled_ops`) and the one-line
hint of a tool that needs a missing detectron2 (:func:`require_detectron2`)
live here too; none of them imports detectron2.
"""
import glob
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from typing import Optional

from ..utils.errors import UserError

_STUB_NAME = 'detectron2._C'
# run from the repository with the environment's interpreter
INSTALL_COMMAND = 'python tools/misc/install_detectron2.py'


class _MissingOps(types.ModuleType):
    """Stand-in for ``detectron2._C`` that fails only when an op is used.

    It answers the build queries of ``detectron2.utils.collect_env``, which
    ``detectron2.engine.default_setup`` runs in every training script.
    """

    @staticmethod
    def get_compiler_version() -> str:
        return 'none (Python sources only)'

    @staticmethod
    def get_cuda_version() -> str:
        return 'none (Python sources only)'

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ImportError(
            f'detectron2._C.{name} is unavailable: detectron2 was installed '
            'without its compiled ops (see README, "Detectron2"). For COCO '
            'evaluation use COCOEvaluator(..., use_fast_impl=False).')


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _STUB_NAME:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return _MissingOps(spec.name)

    def exec_module(self, module):
        pass


def detectron2_dir() -> Optional[str]:
    """Directory of an importable detectron2 package, or None."""
    spec = importlib.util.find_spec('detectron2')
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def detectron2_version(package_dir: str) -> str:
    """``__version__`` of the detectron2 sources at ``package_dir``, read
    without importing them ('' if absent)."""
    with open(os.path.join(package_dir, '__init__.py')) as f:
        match = re.search(r'__version__\s*=\s*["\']([^"\']+)', f.read())
    return match.group(1) if match else ''


def has_compiled_ops(package_dir: Optional[str] = None) -> bool:
    """Whether the detectron2 at ``package_dir`` (default: the installed
    one) has its compiled ``_C``."""
    package_dir = package_dir or detectron2_dir()
    return bool(package_dir and glob.glob(os.path.join(package_dir, '_C*')))


def require_detectron2(tool: str) -> None:
    """Raise a one-line :class:`UserError` telling how to install
    detectron2 when ``tool`` needs it and it is not installed."""
    if detectron2_dir() is None:
        raise UserError(f'{tool} needs Detectron2, which this Python '
                        f'environment lacks; install it with: '
                        f'{INSTALL_COMMAND}')


def install() -> None:
    """Apply (a) and (b) where needed; cheap, and imports no detectron2."""
    package_dir = detectron2_dir()
    if package_dir is None:
        return
    if not has_compiled_ops(package_dir) and not any(
            isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.append(_StubFinder())
    if detectron2_version(package_dir).startswith('0.6'):
        from PIL import Image
        if not hasattr(Image, 'LINEAR'):
            Image.LINEAR = Image.BILINEAR
