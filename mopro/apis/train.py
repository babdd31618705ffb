"""Training from a config (``tools/train.py``)."""
from typing import Optional

from mmengine.config import Config

from ..engine import MoProRunner
from ..utils.runner import (adapt_to_device, check_hook_args,
                            resolve_checkpoints, warn_inexact_resume)


def train_model(cfg: Config, resume: Optional[str] = None, amp: bool = False,
                auto_scale_lr: bool = False) -> MoProRunner:
    """Train ``cfg`` with :class:`~mopro.engine.MoProRunner` and return the
    runner.

    Mistakes in the config, the hooks' arguments, ``resume`` or
    ``load_from`` are one-line errors before training starts; a config
    whose resumed runs would not repeat uninterrupted ones (another
    sampler, no fixed seed) is a warning.

    Args:
        cfg: a config as :func:`mopro.utils.runner.load_config` returns it.
        resume: ``--resume``: None, ``'auto'`` (the work dir's latest
            checkpoint, or from the start when there is none) or a
            checkpoint (:func:`mopro.utils.runner.resolve_checkpoints`).
        amp: bf16 automatic mixed precision.
        auto_scale_lr: scale the lr to the actual total batch size.
    """
    check_hook_args(cfg)
    warn_inexact_resume(cfg)
    adapt_to_device(cfg, amp=amp)
    resolve_checkpoints(cfg, resume)
    if auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    runner = MoProRunner.from_cfg(cfg)
    runner.train()
    return runner
