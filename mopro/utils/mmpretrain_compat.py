"""Import mmpretrain 1.2.0 without its multimodal models.

mmpretrain decides once, in ``mmpretrain.utils.dependency.WITH_MULTIMODAL``,
whether to import its multimodal models (BLIP, Flamingo, ...): it does when
pycocotools and transformers>=4.28 are both installed. pycocotools is a
requirement of this project (COCO evaluation), and under transformers 5 that
import fails (``TypeError: NoneType takes no arguments`` at
``class BertPreTrainedModel(PreTrainedModel)``), so ``import mmpretrain``, and
with it ``import mopro``, would fail in an ordinary ML environment.

This project uses none of those models, so :func:`install` (called by
``import mopro``) sets ``WITH_MULTIMODAL = False`` before mmpretrain's
models read it: mmpretrain then registers its placeholders for the
multimodal models, exactly as it does when transformers is absent, whatever
transformers version is installed. That holds also when a script imported
mmpretrain's light modules (``mmpretrain.registry``, ``.structures``) before
``import mopro``, as isort's order puts them. This module is the only place
that works around mmpretrain.
"""
import importlib.util
import os.path as osp
import sys
from types import ModuleType
from typing import Optional

_DEPENDENCY = 'mmpretrain.utils.dependency'


def install() -> None:
    """Turn mmpretrain's multimodal import off while that still matters.

    Does nothing once ``mmpretrain.models`` is imported (it then either
    imported fine or it is too late) or when mmpretrain is not installed
    (its import then fails with the usual error).
    """
    if 'mmpretrain.models' in sys.modules:
        return
    module = sys.modules.get(_DEPENDENCY) or _load_dependency()
    if module is not None:
        module.WITH_MULTIMODAL = False


def _load_dependency() -> Optional[ModuleType]:
    """``mmpretrain.utils.dependency`` executed on its own, without its
    package's ``__init__`` (which would import mmpretrain)."""
    package = importlib.util.find_spec('mmpretrain')
    if package is None or package.origin is None:
        return None
    path = osp.join(osp.dirname(package.origin), 'utils', 'dependency.py')
    spec = importlib.util.spec_from_file_location(_DEPENDENCY, path)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_DEPENDENCY] = module
    return module
