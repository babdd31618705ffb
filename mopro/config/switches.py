"""The configs' top-level switches: ``data_root``, ``num_classes``,
``max_epochs``.

A config sets them once at its top and builds many keys from them: each
dataloader's ``dataset.data_root`` and ``dataset.num_classes``, the model's
class count, ``train_cfg.max_epochs`` and the length of an epoch-based
scheduler. mmengine substitutes them when it parses the file, so
``--cfg-options data_root=/my/data`` alone would change the top-level key
and nothing built from it. :func:`read_switches` (before ``--cfg-options``
are merged) finds the keys each switch set, by their value;
:func:`apply_switches` (after) moves them with an overridden switch and
logs what it set:

- ``data_root``: every ``*_dataloader.dataset.data_root`` equal to it;
- ``num_classes``: ``model.num_classes``, ``model.head.num_classes``,
  ``model.data_preprocessor.num_classes`` and every
  ``*_dataloader.dataset.num_classes`` equal to it;
- ``max_epochs``: ``train_cfg.max_epochs`` and the ``T_max``/``end`` of
  every epoch-based ``param_scheduler`` equal to it (milestones stay where
  the config puts them; one beyond the run is logged).

A key given in the same ``--cfg-options`` keeps the value given there.
Errors (:class:`ConfigError`, one line, before anything is built):
overriding a switch the config does not define or use; a switch whose
value differs from what it drives (a config that redefines ``data_root``
over its base, whose loaders mmengine set from the base's value); a
required switch left ``None``; ``num_classes`` and ``data_root`` switched
together while a dataloader with classes stays at another root (the
ImageNet test set of the WebVision configs); an evaluator's top-k above
the new class count.
"""
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

from ..utils.errors import ConfigError
from ..utils.validate import check_int, check_topk

SWITCHES = ('data_root', 'num_classes', 'max_epochs')
MODEL_CLASS_KEYS = ('model.num_classes', 'model.head.num_classes',
                    'model.data_preprocessor.num_classes')
# the key a switch must agree with where the config has it
PRIMARY_KEYS = {
    'data_root': ('train_dataloader.dataset.data_root', ),
    'num_classes': MODEL_CLASS_KEYS,
    'max_epochs': ('train_cfg.max_epochs', ),
}
HINTS = {
    'data_root': 'the folder of the image lists',
    'num_classes': 'the number of classes, the lines of classes.txt',
    'max_epochs': 'the number of training epochs',
}
_ABSENT = object()

# (switch, its value when the config was read, the keys it set)
Switch = Tuple[str, Any, List[str]]


def get_key(cfg: Any, key: str, default: Any = _ABSENT) -> Any:
    """The value at a dotted key (list items by index), else ``default``."""
    node = cfg
    for part in key.split('.'):
        if isinstance(node, (dict, Config)) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def _set_key(cfg: Config, key: str, value: Any) -> None:
    *parents, last = key.split('.')
    node = cfg
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _dataloaders(cfg: Config) -> List[str]:
    """The top-level ``*_dataloader`` keys whose dataset is a dict."""
    return [
        name for name in cfg.keys() if name.endswith('_dataloader')
        and isinstance(get_key(cfg, f'{name}.dataset', None), dict)
    ]


def candidate_keys(cfg: Config, switch: str) -> List[str]:
    """The keys of ``cfg`` that ``switch`` may set (present ones only)."""
    if switch == 'max_epochs':
        keys = ['train_cfg.max_epochs']
        schedulers = cfg.get('param_scheduler')
        if isinstance(schedulers, dict):
            schedulers, prefix = [schedulers], 'param_scheduler'
        else:
            prefix = 'param_scheduler.{}'
        for i, scheduler in enumerate(schedulers or []):
            if isinstance(scheduler, dict) and scheduler.get('by_epoch', True):
                where = prefix.format(i)
                keys += [f'{where}.T_max', f'{where}.end']
    else:
        field = switch
        keys = [f'{loader}.dataset.{field}' for loader in _dataloaders(cfg)]
        if switch == 'num_classes':
            keys = list(MODEL_CLASS_KEYS) + keys
    return [key for key in keys if get_key(cfg, key) is not _ABSENT]


def read_switches(cfg: Config, path: str) -> List[Switch]:
    """The switches ``cfg`` defines at its top, each with the keys it set
    (those of :func:`candidate_keys` holding its value), as read from
    ``path`` before ``--cfg-options``.

    Raises:
        ConfigError: a switch whose value differs from a key it drives
            (``data_root`` vs ``train_dataloader.dataset.data_root``,
            ``num_classes`` vs the model's classes, ``max_epochs`` vs
            ``train_cfg.max_epochs``): a config that redefined it over a
            base whose keys mmengine had already set.
    """
    switches = []
    for switch in SWITCHES:
        if switch not in cfg:
            continue
        value = cfg[switch]
        for key in PRIMARY_KEYS[switch]:
            found = get_key(cfg, key)
            if found is not _ABSENT and found != value:
                built = [
                    k for k in candidate_keys(cfg, switch)
                    if get_key(cfg, k) == found
                ]
                raise ConfigError(
                    f'{path}: {switch}={value!r} but {key}={found!r}: a '
                    f'config that sets {switch} over a base must set the '
                    f'keys the base built from it too ({", ".join(built)}; '
                    f'mmengine builds them when it reads the base), or '
                    f'leave {switch} to the base and pass --cfg-options '
                    f'{switch}=...')
        keys = [
            key for key in candidate_keys(cfg, switch)
            if get_key(cfg, key) == value
        ]
        switches.append((switch, value, keys))
    return switches


def apply_switches(cfg: Config, switches: List[Switch],
                   options: Optional[Dict[str, Any]], path: str) -> None:
    """Move the keys of every switch ``options`` (``--cfg-options``, merged
    into ``cfg`` already) overrode to its new value, with one log line per
    switch; then check what the run needs (module docstring).

    Raises:
        ConfigError: see the module docstring.
    """
    options = options or {}
    defined = {switch: (value, keys) for switch, value, keys in switches}
    for switch in SWITCHES:
        if switch in options and switch not in defined:
            raise ConfigError(_undefined(cfg, switch, path))
    moved = {}
    for switch, (value, keys) in defined.items():
        if switch not in options:
            continue
        # a key can be gone: test_dataloader=None in the same --cfg-options
        keys = [key for key in keys if get_key(cfg, key) is not _ABSENT]
        if not keys:
            raise ConfigError(
                f'--cfg-options {switch}: {path} sets {switch}={value!r} '
                f'but uses it for no key; {_keys_hint(cfg, switch)}')
        moved[switch] = _move(cfg, switch, keys, options)
    _check_roots(cfg, defined, moved)
    for switch in defined:
        if cfg.get(switch) is None:
            raise ConfigError(
                f'{path}: {switch} is not set: pass --cfg-options '
                f'{switch}=... ({HINTS[switch]}; configs/README.md, '
                'Switches)')
    if 'num_classes' in moved:
        _check_topk(cfg)
    if 'max_epochs' in moved:
        _warn_beyond_the_run(cfg)


def _move(cfg: Config, switch: str, keys: List[str],
          options: Dict[str, Any]) -> List[str]:
    """Set ``keys`` (but those given in ``options``) to the switch's value,
    log it, and return the keys set."""
    value = cfg[switch]
    if switch in ('num_classes', 'max_epochs'):
        check_int(value, f'--cfg-options {switch}')
    elif not isinstance(value, str):
        raise ConfigError(f'--cfg-options {switch} must be a path, got '
                          f'{value!r}')
    kept = [key for key in keys if _given(key, options)]
    moved = [key for key in keys if key not in kept]
    for key in moved:
        _set_key(cfg, key, value)
    line = f'--cfg-options {switch}={value} set {", ".join(moved) or "-"}'
    if kept:
        line += f' ({", ".join(kept)} as given)'
    print_log(line, logger='current')
    return moved


def _given(key: str, options: Dict[str, Any]) -> bool:
    """Whether ``options`` set ``key`` or a key above it."""
    parts = key.split('.')
    return any('.'.join(parts[:n]) in options
               for n in range(1,
                              len(parts) + 1))


def _undefined(cfg: Config, switch: str, path: str) -> str:
    return (f'--cfg-options {switch}: {path} has no top-level {switch} '
            f'switch; {_keys_hint(cfg, switch)}')


def _keys_hint(cfg: Config, switch: str) -> str:
    """Which keys to set instead."""
    keys = candidate_keys(cfg, switch)
    if not keys:
        return f'nothing in it is built from {switch}'
    shown = ', '.join(f'{key}={get_key(cfg, key)!r}' for key in keys)
    return f'set the keys themselves ({shown})'


def _check_roots(cfg: Config, defined: dict, moved: dict) -> None:
    """With both ``data_root`` and ``num_classes`` switched, a dataloader
    that was set from ``num_classes`` must have been moved to the new root
    too: it would evaluate other data with the new classes."""
    if not ('data_root' in moved and 'num_classes' in moved):
        return
    for key in moved['num_classes']:
        loader = key.split('.', 1)[0]
        if not loader.endswith('_dataloader') or \
                f'{loader}.dataset.data_root' in moved['data_root']:
            continue
        root = get_key(cfg, f'{loader}.dataset.data_root')
        kind = get_key(cfg, f'{loader}.dataset.type')
        stage = loader[:-len('_dataloader')]
        raise ConfigError(
            f'--cfg-options data_root=... num_classes=...: {loader} reads '
            f'{kind} at {root}, which data_root does not move, with '
            f'{defined["num_classes"][0]} classes; pass '
            f'{loader}=None {stage}_evaluator=None {stage}_cfg=None, or '
            f'set {loader}.dataset too')


def _check_topk(cfg: Config) -> None:
    """Each evaluator's top-k against the new class count
    (:func:`~mopro.utils.validate.check_topk`)."""
    num_classes = cfg.num_classes
    for name in [k for k in cfg.keys() if k.endswith('_evaluator')]:
        evaluators = cfg[name]
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        for evaluator in evaluators or []:
            topk = evaluator.get('topk') if isinstance(evaluator,
                                                       dict) else None
            topk = (topk, ) if isinstance(topk, int) else topk
            if topk:
                check_topk(
                    max(topk), num_classes, f'{name}.topk={tuple(topk)}',
                    f'num_classes={num_classes}; pass --cfg-options '
                    f'{name}.topk=[1]')


def _warn_beyond_the_run(cfg: Config) -> None:
    """Log the epochs of a run with a new length that it never reaches: lr
    milestones, MoPro's phases."""
    max_epochs = cfg.max_epochs
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for i, scheduler in enumerate(schedulers):
        late = [
            m for m in scheduler.get('milestones') or [] if m >= max_epochs
        ]
        if late:
            print_log(
                f'param_scheduler.{i}.milestones: {late} lie beyond '
                f'max_epochs={max_epochs}; the lr does not decay there',
                logger='current', level=30)
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        for key in ('start_proto_epoch', 'start_clean_epoch'):
            epoch = hook.get(key) if isinstance(hook, dict) else None
            if epoch is not None and epoch >= max_epochs:
                print_log(
                    f'custom_hooks.{i}.{key}={epoch} (0-based) is not '
                    f'reached in max_epochs={max_epochs}', logger='current',
                    level=30)
