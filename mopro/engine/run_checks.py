"""Checks of a Runner config before the work starts (``tools/train.py``,
``tools/test.py``, the demo).

mmengine and torch check many config values only when they use them: a
``val_interval`` of 0 divides by zero after the first epoch, a top-5
accuracy of 4 classes fails at the first validation, a negative lr or seed
is a traceback after the model is built and the image lists are read. Here
each is one :class:`~mopro.utils.errors.ConfigError` naming the key and
what it allows, before the Runner is built (:func:`check_run_config`; the
number of processes as the launcher's environment tells it), or, for what
needs the built Runner (the dataset's size), before the first iteration
(:func:`check_built_run`). The values the project's own components take
are checked by their constructors, when the Runner builds them.
"""
from typing import Any, Optional, Sequence

from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader

from ..config.arguments import (check_args, check_component, check_hook_args,
                                check_loop_args, check_model_args,
                                check_pipeline, check_runtime_args,
                                check_schedulers)
from ..models import check_queue_fits
from ..utils.errors import ConfigError
from ..utils.validate import check_int, check_number, check_topk
from .launch import check_launched_gpu, launched_world_size

# numpy's seeds (mmengine seeds numpy, torch and random from it)
MAX_SEED = 2**32 - 1
# the sets a training run evaluates
VAL = ('val', )
# the keys of each loop of mmengine's Runner
LOOP_KEYS = {
    'train': ('train_dataloader', 'train_cfg', 'optim_wrapper'),
    'val': ('val_dataloader', 'val_cfg', 'val_evaluator'),
    'test': ('test_dataloader', 'test_cfg', 'test_evaluator')
}
# the keys of a component's config that its builder consumes beside the
# class's arguments (mmengine 0.10: Runner.build_dataloader,
# build_optim_wrapper)
DATALOADER_EXTRA = ('num_batch_per_epoch', 'disable_subprocess_warning')
OPTIM_WRAPPER_EXTRA = ('optimizer', 'constructor', 'paramwise_cfg')


def check_run_config(cfg: Config, train: bool = True,
                     sets: Sequence[str] = VAL) -> None:
    """Raise a :class:`ConfigError` naming the key for a value of ``cfg``
    that mmengine or torch would reject only once it is used.

    Args:
        cfg: the config as the tool will build its Runner from it.
        train: check the training keys (``train_cfg``, ``optim_wrapper``,
            ``train_dataloader``, the hooks' intervals).
        sets: the evaluated sets (``'val'``, ``'test'``), whose dataloader
            and evaluator are checked when the config has them.
    """
    # the scope the Runner builds in (mmcv's wrappers build their inner
    # transforms from it)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        _check_run_config(cfg, train, sets)


def _check_run_config(cfg: Config, train: bool, sets: Sequence[str]) -> None:
    check_launched_gpu(cfg.get('launcher', 'none'))
    check_loop_keys(cfg)
    check_hook_args(cfg)
    model = cfg.get('model')
    if isinstance(model, dict):
        check_model_args(model)
    loaders = (['train'] if train else []) + list(sets)
    for name in loaders:
        check_dataloader(cfg, name)
    for name in sets:
        if cfg.get(f'{name}_dataloader') is not None:
            check_evaluator(cfg, name)
            check_loop_args(cfg, f'{name}_cfg')
    check_seed(cfg)
    check_runtime_args(cfg)
    if train:
        check_loop_args(cfg, 'train_cfg')
        check_train_loop(cfg)
        check_optimizer(cfg)
        check_schedulers(cfg)
        check_logger_interval(cfg)
        world_size = launched_world_size(cfg.get('launcher', 'none'))
        check_queue(cfg, world_size)
        check_shared_seed(cfg, world_size)


def check_loop_keys(cfg: Config) -> None:
    """mmengine's Runner takes each loop's keys (``LOOP_KEYS``) all set or
    all None; its constructor raises a bare ValueError for
    ``--cfg-options test_dataloader=None`` alone."""
    for loop, keys in LOOP_KEYS.items():
        unset = [key for key in keys if cfg.get(key) is None]
        if 0 < len(unset) < len(keys):
            rest = [key for key in keys if key not in unset]
            raise ConfigError(
                f'{", ".join(unset)} None but {", ".join(rest)} set: '
                f'mmengine runs the {loop} loop with all three or none '
                f'(add {" ".join(f"{key}=None" for key in rest)})')


def check_built_run(runner: Any) -> None:
    """Checks of a built Runner before it trains: the train dataloader
    (built here: it reads the image lists, not the images) yields at least
    one batch."""
    cfg = runner.cfg
    loader = runner.train_loop.dataloader
    if len(loader) > 0:
        return
    batch = cfg.train_dataloader.batch_size
    world = runner.world_size
    drop_last = getattr(loader, 'drop_last', False)
    raise ConfigError(
        f'train_dataloader makes no batch: {len(loader.dataset)} training '
        f'images, train_dataloader.batch_size={batch} x {world} '
        f'process(es), drop_last={drop_last}: lower the batch size' +
        (' or set train_dataloader.drop_last=False' if drop_last else ''))


def check_queue(cfg: Config, world_size: int = 1) -> None:
    """The training batch of ``cfg`` on ``world_size`` processes fits its
    model's queue (:func:`mopro.models.check_queue_fits`)."""
    model = cfg.get('model') or {}
    loader = cfg.get('train_dataloader') or {}
    queue_len = model.get('queue_len') if isinstance(model, dict) else None
    batch = loader.get('batch_size') if isinstance(loader, dict) else None
    if isinstance(batch, int):
        check_queue_fits(
            queue_len, batch * world_size,
            f'train_dataloader.batch_size={batch} x {world_size} '
            'process(es)')


def check_shared_seed(cfg: Config, world_size: int = 1) -> None:
    """MoPro's shuffle across ranks (``model.shuffle_bn``, on by default)
    draws the same permutation of the global batch on every rank from the
    Runner's seed (:mod:`mopro.models.utils.shuffle`):
    ``randomness.diff_rank_seed=True`` gives each rank its own seed, and
    the ranks would exchange images by different plans."""
    model = cfg.get('model') or {}
    if world_size < 2 or not isinstance(model, dict) or \
            model.get('type') != 'MoPro' or not model.get('shuffle_bn', True):
        return
    if (cfg.get('randomness') or {}).get('diff_rank_seed'):
        raise ConfigError(
            'randomness.diff_rank_seed=True gives every rank its own seed, '
            "but MoPro's shuffle across ranks (model.shuffle_bn=True) draws "
            'one permutation on all of them from a shared seed: set '
            'randomness.diff_rank_seed=False or model.shuffle_bn=False')


def check_dataloader(cfg: Config, name: str) -> None:
    """``<name>_dataloader``: batch size >= 1, workers >= 0, registered
    dataset, sampler and transform types, and the arguments of the
    dataloader, its dataset and its samplers."""
    key = f'{name}_dataloader'
    loader = cfg.get(key)
    if not isinstance(loader, dict):
        return
    check_args(loader, key, DataLoader, DATALOADER_EXTRA)
    if 'batch_size' in loader:
        check_int(loader.batch_size, f'{key}.batch_size')
    if 'num_workers' in loader:
        check_int(loader.num_workers, f'{key}.num_workers', minimum=0)
    from mmpretrain.registry import DATA_SAMPLERS, DATASETS
    for sampler in ('sampler', 'batch_sampler'):
        check_component(
            loader.get(sampler), f'{key}.{sampler}', DATA_SAMPLERS, 'sampler')
    dataset = loader.get('dataset')
    check_component(dataset, f'{key}.dataset', DATASETS, 'dataset')
    if isinstance(dataset, dict):
        check_pipeline(dataset.get('pipeline'), f'{key}.dataset.pipeline')


def check_evaluator(cfg: Config, name: str) -> None:
    """``<name>_evaluator``: registered metric types, and no top-k above
    the model's number of classes (mmpretrain's ``Accuracy`` fails at the
    end of the first validation)."""
    from mmpretrain.registry import METRICS
    key = f'{name}_evaluator'
    evaluator = cfg.get(key)
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        key, evaluator = f'{key}.metrics', evaluator['metrics']
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else \
        [evaluator]
    num_classes = _num_classes(cfg.get('model'))
    for i, metric in enumerate(metrics):
        where = key if len(metrics) == 1 else f'{key}.{i}'
        if not isinstance(metric, dict):
            continue
        check_component(metric, where, METRICS, 'metric')
        topk = metric.get('topk')
        for k in topk if isinstance(topk, (list, tuple)) else [topk]:
            if k is None:
                continue
            check_int(k, f'{where}.topk')
            if num_classes is not None:
                check_topk(k, num_classes, f'{where}.topk',
                           f'the model has {num_classes}')


def check_seed(cfg: Config) -> None:
    """``randomness.seed``: None or an integer in [0, 2**32 - 1] (numpy's
    seeds)."""
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is None:
        return
    check_int(seed, 'randomness.seed', minimum=0)
    if seed > MAX_SEED:
        raise ConfigError(f'randomness.seed must be <= 2**32 - 1, got {seed}')


def check_train_loop(cfg: Config) -> None:
    """``train_cfg``: at least one epoch (iteration), validation every
    N >= 1 epochs (mmengine divides by it after the first epoch)."""
    train_cfg = cfg.get('train_cfg')
    if not isinstance(train_cfg, dict):
        return
    for key in ('max_epochs', 'max_iters', 'val_interval'):
        if key in train_cfg:
            check_int(train_cfg[key], f'train_cfg.{key}')


def check_optimizer(cfg: Config) -> None:
    """``optim_wrapper`` and its ``optimizer``: registered types and their
    arguments; lr, momentum and weight decay finite numbers >= 0 (torch
    checks them when it builds the optimizer, after the image lists are
    read)."""
    from mmpretrain.registry import OPTIM_WRAPPERS, OPTIMIZERS
    wrapper = cfg.get('optim_wrapper')
    check_component(wrapper, 'optim_wrapper',
                    OPTIM_WRAPPERS, 'optimizer wrapper',
                    OPTIM_WRAPPERS.get('OptimWrapper'), OPTIM_WRAPPER_EXTRA)
    optimizer = wrapper.get('optimizer') if isinstance(wrapper, dict) else None
    if not isinstance(optimizer, dict):
        return
    check_component(optimizer, 'optim_wrapper.optimizer', OPTIMIZERS,
                    'optimizer')
    for key in ('lr', 'momentum', 'weight_decay'):
        if key in optimizer:
            check_number(optimizer[key], f'optim_wrapper.optimizer.{key}', 0)


def check_logger_interval(cfg: Config) -> None:
    """``default_hooks.logger.interval``: an integer >= 1 (mmengine's
    ``LoggerHook`` raises a bare ValueError)."""
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if isinstance(logger, dict) and 'interval' in logger:
        check_int(logger.interval, 'default_hooks.logger.interval')


def _num_classes(model: Any) -> Optional[int]:
    """The number of classes a model config scores: ``model.num_classes``
    (MoPro) or ``model.head.num_classes`` (a classifier)."""
    if not isinstance(model, dict):
        return None
    head = model.get('head')
    for value in (model.get('num_classes'),
                  head.get('num_classes') if isinstance(head, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
