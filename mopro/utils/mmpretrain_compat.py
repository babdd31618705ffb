"""Import mmpretrain 1.2.0 without its multimodal models.

mmpretrain decides once, in ``mmpretrain.utils.dependency.WITH_MULTIMODAL``,
whether to import its multimodal models (BLIP, Flamingo, ...): it does when
pycocotools and transformers>=4.28 are both installed. pycocotools is a
requirement of this project (COCO evaluation), and under transformers 5 that
import fails (``TypeError: NoneType takes no arguments`` at
``class BertPreTrainedModel(PreTrainedModel)``), so ``import mmpretrain``, and
with it ``import mopro``, would fail in an ordinary ML environment.

This project uses none of those models, so :func:`install` (called by
``import mopro`` before anything imports mmpretrain) loads the dependency
module on its own and sets ``WITH_MULTIMODAL = False``: mmpretrain then
registers its placeholders for the multimodal models, exactly as it does
when transformers is absent, whatever transformers version is installed.
This module is the only place that works around mmpretrain.
"""
import importlib.util
import os.path as osp
import sys

_DEPENDENCY = 'mmpretrain.utils.dependency'


def install() -> None:
    """Pre-load ``mmpretrain.utils.dependency`` with multimodal off.

    Does nothing when mmpretrain is already imported (then it either
    imported fine or it is too late) or is not installed (its import then
    fails with the usual error).
    """
    if 'mmpretrain' in sys.modules or _DEPENDENCY in sys.modules:
        return
    package = importlib.util.find_spec('mmpretrain')
    if package is None or package.origin is None:
        return
    path = osp.join(osp.dirname(package.origin), 'utils', 'dependency.py')
    spec = importlib.util.spec_from_file_location(_DEPENDENCY, path)
    if spec is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.WITH_MULTIMODAL = False
    sys.modules[_DEPENDENCY] = module
