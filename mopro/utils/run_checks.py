"""Checks of a Runner config before the work starts (``tools/train.py``,
``tools/test.py``, the demo).

mmengine and torch check many config values only when they use them: a
``val_interval`` of 0 divides by zero after the first epoch, a top-5
accuracy of 4 classes fails at the first validation, a negative lr or seed
is a traceback after the model is built and the image lists are read. Here
each is one :class:`ConfigError` naming the key and what it allows, before
the Runner is built (:func:`check_run_config`; the number of processes as
the launcher's environment tells it), or, for what needs the built Runner
(the dataset's size), before the first iteration (:func:`check_built_run`).
"""
import ast
import copy
import difflib
import inspect
import os
import traceback
from typing import (Any, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Set, Tuple)

import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.registry import DefaultScope
from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                             LogProcessor, Runner, TestLoop, ValLoop)
from torch.utils.data import DataLoader

from .cli import ConfigError, UserError
from .config_switches import SWITCHES
from .device import default_device
from .validate import check_int, check_number

# numpy's seeds (mmengine seeds numpy, torch and random from it)
MAX_SEED = 2**32 - 1
# the parts of a model that mmpretrain builds from the MODELS registry
MODEL_PARTS = ('backbone', 'neck', 'head', 'data_preprocessor', 'loss')
# the sets a training run evaluates
VAL = ('val', )
# the keys of each loop of mmengine's Runner
LOOP_KEYS = {
    'train': ('train_dataloader', 'train_cfg', 'optim_wrapper'),
    'val': ('val_dataloader', 'val_cfg', 'val_evaluator'),
    'test': ('test_dataloader', 'test_cfg', 'test_evaluator')
}
# where mmengine's init_dist reads the number of processes, per launcher
WORLD_SIZE_VARIABLES = {
    'pytorch': 'WORLD_SIZE',
    'slurm': 'SLURM_NTASKS',
    'mpi': 'OMPI_COMM_WORLD_SIZE'
}
# where it reads the process's GPU (slurm's is the rank modulo the GPUs)
LOCAL_RANK_VARIABLES = {
    'pytorch': 'LOCAL_RANK',
    'mpi': 'OMPI_COMM_WORLD_LOCAL_RANK'
}
# the top-level keys mmengine's Runner reads besides the arguments of its
# constructor (mmengine 0.10: the model wrapper, DDP's options,
# torch.compile, the memory savers), and those read when the config file
# is (mmengine's custom_imports, the tools' switches)
RUNNER_CONFIG_KEYS = ('model_wrapper_cfg', 'find_unused_parameters', 'sync_bn',
                      'compile', 'activation_checkpointing',
                      'efficient_conv_bn_eval')
FILE_KEYS = ('custom_imports', *SWITCHES)
# the keys of a component's config that its builder consumes beside the
# class's arguments (mmengine 0.10: Runner.build_dataloader,
# build_optim_wrapper, build_param_scheduler)
DATALOADER_EXTRA = ('num_batch_per_epoch', 'disable_subprocess_warning')
OPTIM_WRAPPER_EXTRA = ('optimizer', 'constructor', 'paramwise_cfg')
SCHEDULER_EXTRA = ('convert_to_iter_based', )
# the loop a loop config without a type builds (Runner.build_*_loop)
LOOPS = {
    'train_cfg': lambda cfg: EpochBasedTrainLoop
    if cfg.get('by_epoch', True) else IterBasedTrainLoop,
    'val_cfg': lambda cfg: ValLoop,
    'test_cfg': lambda cfg: TestLoop,
}


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
    all None: ``--cfg-options test_dataloader=None`` alone was a ValueError
    traceback from the Runner's constructor."""
    for loop, keys in LOOP_KEYS.items():
        unset = [key for key in keys if cfg.get(key) is None]
        if 0 < len(unset) < len(keys):
            rest = [key for key in keys if key not in unset]
            raise ConfigError(
                f'{", ".join(unset)} None but {", ".join(rest)} set: '
                f'mmengine runs the {loop} loop with all three or none '
                f'(add {" ".join(f"{key}=None" for key in rest)})')


def launched_world_size(launcher: str,
                        environ: Optional[Mapping[str, str]] = None) -> int:
    """How many processes ``launcher`` started, read where mmengine's
    ``init_dist`` will read it (``WORLD_SIZE`` for torchrun,
    ``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE``): known before the Runner
    is built. 1 without a launcher, or when the variable is not a positive
    number (mmengine's own error then comes when it starts the group)."""
    environ = os.environ if environ is None else environ
    variable = WORLD_SIZE_VARIABLES.get(launcher)
    value = environ.get(variable, '') if variable else ''
    return int(value) if value.isdigit() and int(value) > 0 else 1


def check_launched_gpu(launcher: str, device: Optional[str] = None) -> None:
    """Under a launcher on CUDA (``device``, default: CUDA when available;
    one with an index is the user's choice), the GPU of this process, its
    local rank, is one that torch sees: ``tools/dist_train.sh CONFIG 8`` on
    a node that shows 4 GPUs was a CUDA 'invalid device ordinal' traceback
    from 4 of the ranks.

    Raises:
        UserError: the local rank, the GPUs seen, how many to launch.
    """
    variable = LOCAL_RANK_VARIABLES.get(launcher)
    device = default_device(device)
    if variable is None or device.type != 'cuda' or device.index is not None:
        return
    local_rank = os.environ.get(variable, '0')
    count = torch.cuda.device_count()
    if local_rank.isdigit() and int(local_rank) >= count:
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        raise UserError(
            f'{variable}={local_rank}, but this node shows {count} GPU(s)' +
            (f' (CUDA_VISIBLE_DEVICES={visible})' if visible is not None else
             '') + f': launch at most {count} process(es) per node')


def check_built_run(runner: Any) -> None:
    """Checks of a built Runner before it trains: the global batch fits
    MoPro's queue on the processes the group really has (as
    :func:`launched_world_size` expected), and the train dataloader (built
    here: it reads the image lists, not the images) yields at least one
    batch."""
    cfg = runner.cfg
    check_queue(cfg, runner.world_size)
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
    model's queue (:func:`check_queue_fits`)."""
    model = cfg.get('model') or {}
    loader = cfg.get('train_dataloader') or {}
    queue_len = model.get('queue_len') if isinstance(model, dict) else None
    batch = loader.get('batch_size') if isinstance(loader, dict) else None
    if isinstance(batch, int):
        check_queue_fits(
            queue_len, batch * world_size,
            f'train_dataloader.batch_size={batch} x {world_size} '
            'process(es)')


def check_queue_fits(queue_len: Any, global_batch: int,
                     batch_source: str) -> None:
    """MoPro enqueues the global batch (``batch_source`` says where it comes
    from) every iteration: it must fit ``model.queue_len`` (nothing to check
    for a model without a queue)."""
    if isinstance(queue_len, int) and global_batch > queue_len:
        raise ConfigError(
            f'model.queue_len={queue_len} is smaller than the global batch '
            f'{global_batch} ({batch_source}): MoPro enqueues every batch')


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
    from mmpretrain.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS
    for sampler in ('sampler', 'batch_sampler'):
        check_component(
            loader.get(sampler), f'{key}.{sampler}', DATA_SAMPLERS, 'sampler')
    dataset = loader.get('dataset')
    check_component(dataset, f'{key}.dataset', DATASETS, 'dataset')
    if isinstance(dataset, dict):
        transforms = list(
            _nested_types(
                dataset.get('pipeline') or [], f'{key}.dataset.pipeline'))
        for where, transform in transforms:
            cls = check_type(transform, where, TRANSFORMS, 'transform')
            accepted = _keyword_arguments(cls) if cls else None
            if accepted is not None:
                _check_keys(transform, accepted, where, cls)
        # inner transforms first, so that the message names the innermost
        for where, transform in reversed(transforms):
            _check_builds(transform, where, TRANSFORMS)


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
            if num_classes is not None and k > num_classes:
                raise ConfigError(
                    f'{where}.topk: top-{k} accuracy needs at least {k} '
                    f'classes, the model has {num_classes}')


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


def check_schedulers(cfg: Config) -> None:
    """Each ``param_scheduler`` (a list, or a dict of lists per
    optimizer): registered type and arguments."""
    from mmpretrain.registry import PARAM_SCHEDULERS
    schedulers = cfg.get('param_scheduler')
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        items = [(f'param_scheduler.{name}', value)
                 for name, value in schedulers.items()]
    else:
        items = [('param_scheduler', schedulers)]
    for key, value in items:
        if isinstance(value, dict):
            value = [value]
            where = [key]
        else:
            value = value or []
            where = [f'{key}.{i}' for i in range(len(value))]
        for name, scheduler in zip(where, value):
            check_component(scheduler, name, PARAM_SCHEDULERS, 'scheduler',
                            extra=SCHEDULER_EXTRA)


def check_loop_args(cfg: Config, key: str) -> None:
    """``train_cfg``, ``val_cfg`` or ``test_cfg``: the arguments of the
    loop it builds (a registered ``type``, else mmengine's default
    loop)."""
    from mmpretrain.registry import LOOPS as REGISTERED_LOOPS
    loop = cfg.get(key)
    if isinstance(loop, dict):
        extra = ('by_epoch', ) if key == 'train_cfg' and 'type' not in loop \
            else ()
        check_component(loop, key, REGISTERED_LOOPS, 'loop', LOOPS[key](loop),
                        extra)


def check_runtime_args(cfg: Config) -> None:
    """The arguments of the visualiser and its backends, the log
    processor, the model wrapper, and ``randomness`` (the arguments of
    ``Runner.set_randomness``)."""
    from mmpretrain.registry import (LOG_PROCESSORS, MODEL_WRAPPERS,
                                     VISBACKENDS, VISUALIZERS)
    visualizer = cfg.get('visualizer')
    check_component(visualizer, 'visualizer', VISUALIZERS, 'visualizer')
    if isinstance(visualizer, dict):
        for i, backend in enumerate(visualizer.get('vis_backends') or []):
            check_component(backend, f'visualizer.vis_backends.{i}',
                            VISBACKENDS, 'visualization backend')
    check_component(
        cfg.get('log_processor'), 'log_processor', LOG_PROCESSORS,
        'log processor', LogProcessor)
    check_component(
        cfg.get('model_wrapper_cfg'), 'model_wrapper_cfg', MODEL_WRAPPERS,
        'model wrapper')
    randomness = cfg.get('randomness')
    if isinstance(randomness, dict):
        accepted = list(inspect.signature(
            Runner.set_randomness).parameters)[1:]
        _check_keys(randomness, accepted, 'randomness', Runner.set_randomness)


def check_logger_interval(cfg: Config) -> None:
    """``default_hooks.logger.interval``: an integer >= 1 (mmengine's
    ``LoggerHook`` raises a bare ValueError)."""
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if isinstance(logger, dict) and 'interval' in logger:
        check_int(logger.interval, 'default_hooks.logger.interval')


def check_model_args(model: dict, prefix: str = 'model') -> None:
    """Raise a :class:`ConfigError` naming the key for a model (or model
    part: ``backbone``, ``neck``, ``head``, ...) type that is not
    registered, an argument its class does not take (with the closest
    name), or a ResNet depth it has no architecture for."""
    from mmpretrain.registry import MODELS
    cls = check_type(model, prefix, MODELS, 'model')
    if cls is None:
        return
    accepted = _keyword_arguments(cls, follow_kwargs=True)
    if accepted is not None:
        _check_keys(model, accepted, prefix, cls)
    depths = getattr(cls, 'arch_settings', None)
    if 'depth' in model and isinstance(depths, dict) and \
            model['depth'] not in depths:
        raise ConfigError(
            f'{prefix}.depth: {cls.__name__} has no depth '
            f'{model["depth"]!r} (it has {", ".join(map(str, depths))})')
    for key, value in model.items():
        if key in MODEL_PARTS and isinstance(value, dict) and 'type' in value:
            check_model_args(value, f'{prefix}.{key}')


def check_hook_args(cfg: Config) -> None:
    """Raise a :class:`ConfigError` naming the key for an argument that a
    hook of ``default_hooks`` or ``custom_hooks`` does not take.

    Checked against the hook class's signature before anything is built:
    mmengine's ``CheckpointHook`` takes any keyword (it passes them to
    ``Runner.save_checkpoint``, which takes none of them), so a misspelled
    ``default_hooks.checkpoint.max_keep_ckpt`` would fail at the first save
    and lose that epoch.
    """
    from mmpretrain.registry import HOOKS
    hooks = [(f'default_hooks.{name}', hook)
             for name, hook in (cfg.get('default_hooks') or {}).items()]
    hooks += [(f'custom_hooks.{i}', hook)
              for i, hook in enumerate(cfg.get('custom_hooks') or [])]
    for prefix, hook in hooks:
        cls = check_type(hook, prefix, HOOKS, 'hook')
        if cls is None:
            continue
        accepted = _keyword_arguments(cls)
        if accepted is not None:
            _check_keys(hook, accepted + ['priority'], prefix, cls)


def check_component(cfg: Any, key: str, registry: Any, what: str,
                    default: Any = None, extra: Sequence = ()) -> Any:
    """The class that the component config ``cfg`` at ``key`` builds (its
    ``type`` in ``registry``, else ``default``), after checking that it is
    registered and takes each key of ``cfg`` (:func:`check_args`); None
    when there is nothing to check."""
    if not isinstance(cfg, dict):
        return None
    cls = check_type(cfg, key, registry, what) if 'type' in cfg else default
    if cls is not None:
        check_args(cfg, key, cls, extra)
    return cls


def check_args(cfg: dict, key: str, cls: Any,
               extra: Sequence[str] = ()) -> None:
    """Raise a :class:`ConfigError` naming ``<key>.<name>`` and the closest
    argument for a key of ``cfg`` that ``cls`` does not take (its named
    arguments, and those of the base classes it hands ``**kwargs`` to) and
    that its builder does not consume (``extra``). Nothing is checked for
    a class that takes any keyword."""
    accepted = _keyword_arguments(cls, follow_kwargs=True)
    if accepted is not None:
        _check_keys(cfg, accepted + list(extra), key, cls)


def check_type(cfg: Any, key: str, registry: Any, what: str) -> Optional[type]:
    """The class ``cfg['type']`` names in ``registry`` (a class given as
    itself too); None when ``cfg`` is no dict with a ``type``; a
    :class:`ConfigError` naming ``<key>.type`` when no such type is
    registered."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return None
    name = cfg['type']
    if not isinstance(name, str):
        return name if inspect.isclass(name) else None
    cls = registry.get(name)
    if cls is not None:
        return cls if inspect.isclass(cls) else None
    close = difflib.get_close_matches(name, _registered(registry), n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    raise ConfigError(f'{key}.type: no {what} named {name!r} is '
                      f'registered{hint}')


def read_top_level_keys() -> Set[str]:
    """The top-level keys something reads once the config is read: the
    arguments of mmengine's Runner (``Runner.from_cfg`` passes each key of
    that name) and :data:`RUNNER_CONFIG_KEYS`, :data:`FILE_KEYS`."""
    arguments = list(inspect.signature(Runner.__init__).parameters)[1:]
    return (set(arguments) - {'cfg'}) | set(RUNNER_CONFIG_KEYS) | \
        set(FILE_KEYS)


def check_top_level_keys(cfg: Config, files: Sequence[str],
                         cfg_options: Optional[Iterable[str]] = None) -> None:
    """Raise a :class:`ConfigError` for a top-level key that nothing reads,
    with the closest key that is read.

    - a key of ``--cfg-options`` (``train_dataloder.batch_size=4`` made a
      new top-level key and trained with the config's batch): also a
      variable of the config, which was substituted into the keys built
      from it when the file was read;
    - a key of the config ``files`` (the config first, then its bases)
      that no file of them uses either (``train_dataloder = dict(...)``),
      named by its file and line.
    """
    read = read_top_level_keys()
    used = _names_used(files)
    for option in cfg_options or ():
        top = option.split('.')[0]
        if top in read:
            continue
        hint = (' (a variable of the config: mmengine substituted it into '
                'the keys built from it when it read the file; set those '
                'keys)' if top in used else _closest(top, read))
        raise ConfigError(f'--cfg-options {option}: nothing reads the '
                          f'top-level key {top!r}{hint}')
    for key in cfg:
        if key not in read and key not in used:
            raise ConfigError(f'{_assigned_at(files, key)}: nothing reads '
                              f'the top-level key {key!r}'
                              f'{_closest(key, read)}')


def _closest(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f' (did you mean {close[0]!r}?)' if close else ''


def _parse(path: str) -> Optional[ast.Module]:
    try:
        with open(path, encoding='utf-8') as f:
            return ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _names_used(files: Sequence[str]) -> Set[str]:
    """The names the config ``files`` read: ``name`` and mmengine's
    ``{{_base_.name}}``."""
    used: Set[str] = set()
    for path in files:
        tree = _parse(path)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                used.add(node.id)
            elif isinstance(node, ast.Attribute) and \
                    isinstance(node.value, ast.Name) and \
                    node.value.id == '_base_':
                used.add(node.attr)
    return used


def _assigned_at(files: Sequence[str], name: str) -> str:
    """``file:line`` of the first top-level assignment of ``name`` in
    ``files`` (the config before its bases), else the config."""
    for path in files:
        tree = _parse(path)
        for node in tree.body if tree is not None else ():
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return f'{path}:{node.lineno}'
    return files[0] if files else 'the config'


def _check_builds(cfg: dict, key: str, registry: Any) -> None:
    """Build ``cfg`` from ``registry`` (a transform: cheap, no data) and
    turn a failed ``assert`` of its constructor, mmcv's and mmpretrain's
    argument check, into a :class:`ConfigError` naming the key and the
    assertion; other errors propagate."""
    try:
        registry.build(copy.deepcopy(cfg))
    except AssertionError as err:
        frame = traceback.extract_tb(err.__traceback__)[-1]
        check = f'{frame.line} ({err})' if str(err) else frame.line
        raise ConfigError(f'{key}: {cfg["type"]} rejects its arguments: '
                          f'{check}') from None


def _registered(registry: Any) -> List[str]:
    """The names of ``registry`` and of its parents (mmengine's)."""
    names: List[str] = []
    while registry is not None:
        names += list(registry.module_dict)
        registry = registry.parent
    return names


def _nested_types(items: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """``(key, dict)`` of every dict with a ``type`` in a pipeline, also
    in the lists of lists of transforms that wrapper transforms take
    (``MultiView.transforms``)."""
    if isinstance(items, dict) and 'type' in items:
        yield key, items
        for name, value in items.items():
            if isinstance(value, (list, tuple)):
                yield from _nested_types(value, f'{key}.{name}')
    elif isinstance(items, (list, tuple)):
        for i, item in enumerate(items):
            yield from _nested_types(item, f'{key}.{i}')


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


def _check_keys(cfg: dict, accepted: List[str], prefix: str, cls: Any) -> None:
    for key in cfg:
        if key not in accepted and key not in ('type', '_scope_'):
            raise ConfigError(f'{prefix}.{key}: {cls.__qualname__} has no '
                              f'argument {key!r}{_closest(key, accepted)}')


def _keyword_arguments(cls: type,
                       follow_kwargs: bool = False) -> Optional[List[str]]:
    """The named arguments of ``cls``; None if it takes any keyword
    (``**kwargs``), except for a ``CheckpointHook``, which passes them to a
    method that takes none of them.

    With ``follow_kwargs``, a class whose ``__init__`` passes ``**kwargs``
    on to its base class's (a model wrapping mmpretrain's) takes the named
    arguments of both.
    """
    names: List[str] = []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = list(inspect.signature(
            klass.__init__).parameters.values())[1:]
        names += [
            p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params) or \
                issubclass(cls, CheckpointHook):
            return names
        if not follow_kwargs:
            return None
    return None
