"""mmpretrain's ``ImageClassifier`` with MoPro's ``model.compile`` switch.

The cross-entropy baselines (``configs/ce_r50_webvision_*.py``) compile
their backbone like MoPro's encoder, with the same component
(:mod:`mopro.models.utils.compile`), so the two are timed and trained alike.
"""
from typing import Union

from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from ..utils.compile import compile_submodules


@MODELS.register_module()
class CompilableImageClassifier(ImageClassifier):
    """``ImageClassifier`` whose backbone may be compiled in place.

    Args:
        compile: as :class:`MoPro`'s ``compile``: ``False``, ``True`` or a
            dict of ``torch.compile`` arguments. State-dict keys are those
            of ``ImageClassifier``.
        **kwargs: ``ImageClassifier``'s arguments.
    """

    def __init__(self, compile: Union[bool, dict] = False, **kwargs) -> None:
        super().__init__(**kwargs)
        compile_submodules(self, ('backbone', ), compile)
