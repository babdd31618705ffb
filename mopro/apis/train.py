"""Training from a config (``tools/train.py``)."""
from typing import Optional

from mmengine.config import Config

from ..config import check_config_copy
from ..engine import MoProRunner
from ..engine.launch import adapt_to_device
from ..engine.resume import (check_load_from_kept, resolve_checkpoints,
                             warn_inexact_resume)
from ..engine.run_checks import check_built_run, check_run_config
from ..utils.outputs import check_output_dir


def train_model(cfg: Config, resume: Optional[str] = None, amp: bool = False,
                auto_scale_lr: bool = False,
                trust_checkpoint: bool = False) -> MoProRunner:
    """Train ``cfg`` with :class:`~mopro.engine.MoProRunner` and return the
    runner.

    Mistakes in the config (:func:`~mopro.engine.run_checks.check_run_config`:
    the model's and hooks' arguments, registered types, batch sizes,
    intervals, lr, seed, top-k), a work dir that cannot be written,
    ``resume`` or ``load_from``, an output that is an input (the config
    copy of the work dir, a checkpoint of the run over ``load_from``), a
    global batch larger than MoPro's queue or a train dataloader without a
    batch are one-line errors before training starts; a config whose
    resumed runs would not repeat uninterrupted ones (another sampler, no
    fixed seed) is a warning.

    Args:
        cfg: a config as :func:`mopro.config.load_config` returns it.
        resume: ``--resume``: None, ``'auto'`` (the work dir's latest
            checkpoint, or from the start when there is none) or a
            checkpoint (:func:`mopro.engine.resume.resolve_checkpoints`).
        amp: bf16 automatic mixed precision.
        auto_scale_lr: scale the lr to the actual total batch size.
        trust_checkpoint: unpickle arbitrary objects in the checkpoint of
            ``resume`` or ``load_from`` (``--trust-checkpoint``; the
            weights-only unpickler otherwise).
    """
    check_run_config(cfg)
    check_output_dir(cfg.work_dir, what='work dir')
    warn_inexact_resume(cfg)
    adapt_to_device(cfg, amp=amp)
    resolve_checkpoints(cfg, resume, trust=trust_checkpoint)
    check_config_copy(cfg, [cfg.get('load_from')])
    check_load_from_kept(cfg)
    if auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    runner = MoProRunner.from_cfg(cfg)
    runner.trust_checkpoint = trust_checkpoint
    check_built_run(runner)
    runner.train()
    return runner
