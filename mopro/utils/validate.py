"""Type and range checks of config values, when the config is built.

A model, hook or dataset checks its arguments in ``__init__`` (the Runner
builds the model and hooks before it reads any data), so a wrong value
stops the run at once with one :class:`ConfigError` naming the key
(``model.threshold``) and what it allows, not when the value is first used
(noise correction starts at epoch 11).
"""
import math
from numbers import Integral, Real
from typing import Any, Optional, Sequence

from .errors import ConfigError


def _interval(low: Optional[float], high: Optional[float], low_open: bool,
              high_open: bool) -> str:
    """``'in [0, 1)'``, ``'> 0'``, ...: what a value must be."""
    if high is None:
        return f'{">" if low_open else ">="} {low:g}'
    if low is None:
        return f'{"<" if high_open else "<="} {high:g}'
    return (f'in {"(" if low_open else "["}{low:g}, {high:g}'
            f'{")" if high_open else "]"}')


def check_number(value: Any, key: str, low: Optional[float] = None,
                 high: Optional[float] = None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` if it is a finite real number within the interval; else a
    :class:`ConfigError` naming ``key`` and the interval.

    ``low``/``high`` None leave that side unbounded; ``*_open`` excludes
    the bound itself.
    """
    interval = _interval(low, high, low_open, high_open) \
        if low is not None or high is not None else 'that is finite'
    if isinstance(value, bool) or not isinstance(value, Real) or \
            not math.isfinite(value):
        raise ConfigError(f'{key} must be a number {interval}, got '
                          f'{value!r}')
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise ConfigError(f'{key} must be {interval}, got {value!r}')
    return value


def check_int(value: Any, key: str, minimum: int = 1) -> int:
    """``value`` as an integer ``>= minimum``; else a :class:`ConfigError`
    naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f'{key} must be an integer >= {minimum}, got '
                          f'{value!r}')
    if value < minimum:
        raise ConfigError(f'{key} must be >= {minimum}, got {value!r}')
    return int(value)


def check_bool(value: Any, key: str) -> bool:
    """``value`` as a bool (True or False only)."""
    if not isinstance(value, bool):
        raise ConfigError(f'{key} must be True or False, got {value!r}')
    return value


def check_choice(value: Any, key: str, choices: Sequence) -> Any:
    """``value`` if it is one of ``choices``; else a :class:`ConfigError`
    naming ``key`` and the choices."""
    if value not in choices:
        raise ConfigError(f'{key} must be one of {tuple(choices)}, got '
                          f'{value!r}')
    return value


def check_topk(k: int, num_classes: int, key: str, classes: str) -> None:
    """Top-``k`` accuracy needs at least ``k`` classes (mmpretrain's
    ``Accuracy`` fails at the end of the first evaluation otherwise): a
    :class:`ConfigError` naming ``key``; ``classes`` says where the class
    count comes from and what to do."""
    if k > num_classes:
        raise ConfigError(f'{key}: top-{k} accuracy needs at least {k} '
                          f'classes, {classes}')
