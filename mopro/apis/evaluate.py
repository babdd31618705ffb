"""Evaluating a checkpoint on a config's validation and test sets
(``tools/test.py``)."""
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmpretrain.utils import get_ori_model

from ..checkpoint import load_model_weights
from ..config import check_config_copy
from ..engine.launch import adapt_to_device
from ..engine.run_checks import check_run_config
from ..engine.runner import MoProRunner
from ..utils.errors import ConfigError
from ..utils.outputs import check_output_dir

SETS = ('val', 'test')


def sets_to_run(cfg: Config,
                requested: Optional[Sequence[str]] = None) -> List[str]:
    """The requested sets (all the config has when None); a requested set
    the config lacks is an error naming its key."""
    present = [
        name for name in SETS if cfg.get(f'{name}_dataloader') is not None
    ]
    if requested is None:
        if not present:
            raise ConfigError(f'{cfg.filename}: neither val_dataloader nor '
                              'test_dataloader is set; nothing to evaluate')
        return present
    for name in requested:
        if name not in present:
            raise ConfigError(
                f'{cfg.filename}: --sets {name}: the config has no '
                f'{name}_dataloader (it has: {", ".join(present) or "none"})')
    return list(requested)


def evaluate_checkpoint(cfg: Config, checkpoint: str,
                        sets: Optional[Sequence[str]] = None,
                        trust_checkpoint: bool = False) -> Dict[str, float]:
    """The metrics of ``checkpoint`` on the config's ``sets`` (default:
    those it has), keyed ``<set>/<metric>``.

    The checkpoint (this project's or the released code's) is loaded
    strictly into the model the config builds (MoPro or a classifier):
    another depth, class count or format is an error that says what does
    not match. Config values that would fail only once used (batch sizes,
    top-k above the number of classes, ...) are one-line errors before the
    model is built (:func:`~mopro.engine.run_checks.check_run_config`).
    """
    sets = sets_to_run(cfg, sets)
    check_output_dir(cfg.work_dir, what='work dir')
    check_config_copy(cfg, [checkpoint])
    # no training loop: mmpretrain's VisualizationHook asks the runner for
    # its epoch after every val iteration, which would build the training
    # dataloader (and read the training lists) otherwise
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler'):
        cfg[key] = None
    check_run_config(cfg, train=False, sets=sets)
    adapt_to_device(cfg)
    cfg.load_from = None
    runner = MoProRunner.from_cfg(cfg)
    load_model_weights(
        get_ori_model(runner.model), checkpoint, trust=trust_checkpoint)
    metrics = {}
    for name in sets:
        result = runner.val() if name == 'val' else runner.test()
        metrics.update({f'{name}/{k}': v for k, v in result.items()})
    return metrics
