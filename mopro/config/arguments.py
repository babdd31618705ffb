"""The keys of a component's config (model, hook, transform, optimizer,
...) against the class it builds: a type that is not registered, or a key
its class takes no argument for, is a one-line
:class:`~mopro.utils.errors.ConfigError` naming the key and the closest
name, before anything is built. mmengine passes the keys on as keyword
arguments, so a misspelled one fails only when that component is built
(``default_hooks.checkpoint.max_keep_ckpt``: at the first save, after an
epoch of training)."""
import copy
import difflib
import inspect
import traceback
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                             LogProcessor, Runner, TestLoop, ValLoop)

from ..utils.errors import ConfigError

# the parts of a model that mmpretrain builds from the MODELS registry
MODEL_PARTS = ('backbone', 'neck', 'head', 'data_preprocessor', 'loss')
# the key of a scheduler's config that mmengine's builder consumes beside
# the class's arguments (mmengine 0.10: Runner.build_param_scheduler)
SCHEDULER_EXTRA = ('convert_to_iter_based', )
# the loop a loop config without a type builds (Runner.build_*_loop)
LOOPS = {
    'train_cfg': lambda cfg: EpochBasedTrainLoop
    if cfg.get('by_epoch', True) else IterBasedTrainLoop,
    'val_cfg': lambda cfg: ValLoop,
    'test_cfg': lambda cfg: TestLoop,
}


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` with the closest of ``names``, or ''."""
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f' (did you mean {close[0]!r}?)' if close else ''


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
        check_keys(model, accepted, prefix, cls)
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
            check_keys(hook, accepted + ['priority'], prefix, cls)


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
        check_keys(randomness, accepted, 'randomness', Runner.set_randomness)


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
        check_keys(cfg, accepted + list(extra), key, cls)


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
    raise ConfigError(f'{key}.type: no {what} named {name!r} is '
                      f'registered{did_you_mean(name, _registered(registry))}')


def check_pipeline(pipeline: Any, key: str) -> None:
    """Each transform of a dataset's ``pipeline`` at ``key``, also those
    that wrapper transforms hold (``MultiView.transforms``): registered
    type, its arguments, and built once (cheap, no data), so that a failed
    ``assert`` of its constructor names the key."""
    from mmpretrain.registry import TRANSFORMS
    transforms = list(_nested_types(pipeline or [], key))
    for where, transform in transforms:
        cls = check_type(transform, where, TRANSFORMS, 'transform')
        accepted = _keyword_arguments(cls) if cls else None
        if accepted is not None:
            check_keys(transform, accepted, where, cls)
    # inner transforms first, so that the message names the innermost
    for where, transform in reversed(transforms):
        _check_builds(transform, where, TRANSFORMS)


def check_keys(cfg: dict, accepted: List[str], prefix: str, cls: Any) -> None:
    """A :class:`ConfigError` naming ``<prefix>.<key>`` and the closest of
    ``accepted`` for a key of ``cfg`` that is not in it."""
    for key in cfg:
        if key not in accepted and key not in ('type', '_scope_'):
            raise ConfigError(f'{prefix}.{key}: {cls.__qualname__} has no '
                              f'argument {key!r}{did_you_mean(key, accepted)}')


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
