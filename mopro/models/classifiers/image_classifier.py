"""mmpretrain's ``ImageClassifier`` with MoPro's ``model.compile`` switch
and non-finite guard.

The cross-entropy baselines (``configs/ce_*.py``), classifier re-training
(``configs/crt_*.py``) and fine-tuning (``configs/finetune_*.py``) use it:
their backbone compiles like MoPro's encoder, with the same component
(:mod:`mopro.models.utils.compile`), so the two are timed and trained
alike, and a non-finite loss stops (or skips) their runs as it does
MoPro's (:class:`~mopro.models.nonfinite.NonFiniteGuard`).
"""
from typing import Dict, List, Union

import torch
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...utils.errors import ConfigError
from ..nonfinite import NonFiniteGuard
from ..utils.compile import compile_options, compile_submodules


@MODELS.register_module()
class CompilableImageClassifier(ImageClassifier):
    """``ImageClassifier`` whose backbone may be compiled in place and whose
    training losses are watched for NaN and infinity.

    Args:
        compile: as :class:`MoPro`'s ``compile``: ``False``, ``True`` or a
            dict of ``torch.compile`` arguments. State-dict keys are those
            of ``ImageClassifier``.
        nonfinite: ``'raise'`` or ``'skip'``, as :class:`MoPro`'s (the check
            before a checkpoint is :class:`NonFiniteCheckHook`'s).
        max_consecutive_skips: as :class:`MoPro`'s.
        **kwargs: ``ImageClassifier``'s arguments.
    """

    def __init__(self, compile: Union[bool,
                                      dict] = False, nonfinite: str = 'raise',
                 max_consecutive_skips: int = 10, **kwargs) -> None:
        try:
            compile_options(compile)
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
        finite_guard = NonFiniteGuard(nonfinite, max_consecutive_skips,
                                      name=type(self).__name__)
        super().__init__(**kwargs)
        self.finite_guard = finite_guard
        compile_submodules(self, ('backbone', ), compile)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """``ImageClassifier``'s losses, through the non-finite guard."""
        self.finite_guard.before_step(self)
        losses = super().loss(inputs, data_samples)
        losses, _ = self.finite_guard.after_step(self, losses)
        return losses
