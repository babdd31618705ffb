"""``torch.compile`` of a model's sub-modules in place, with an eager fallback.

The ``model.compile`` switch of :class:`MoPro` and
:class:`CompilableImageClassifier`. Sub-modules are compiled the way
``nn.Module.compile`` does it (their ``__call__`` goes through the compiled
function), so parameter and buffer names, the state dict and every
checkpoint stay those of the eager model (no ``_orig_mod.`` prefix), and a
deep copy of a compiled module is an eager module (torch drops the compiled
call when it copies a module).

torch.compile builds lazily, at the first call (and again for a new mode,
e.g. eval or no-grad). When that build fails (no dynamo/inductor for this
Python or platform, no C++ or Triton compiler, a dynamo bug), the module
warns once and runs eagerly from then on. An error of the module itself
still surfaces: the eager re-run raises it. Where the failed build follows a
graph break, the part before it ran already (its BatchNorm statistics are
updated twice for that one batch). The backward graph is built at the first
``backward()``, outside this guard: a failure there (rare: the forward's
build has exercised the same toolchain) stops the run with torch's error.
"""
import warnings
from typing import Any, Callable, Iterable, Optional, Union

import torch
import torch.nn as nn

COMPILE_KEYS = ('backend', 'mode', 'dynamic', 'fullgraph', 'options')

CompileCfg = Union[bool, dict, None]


def compile_options(compile: CompileCfg) -> Optional[dict]:
    """The ``torch.compile`` keyword arguments of a ``model.compile`` value.

    ``False``/``None``: None (eager); ``True``: ``{}`` (torch's defaults:
    inductor, default mode, automatic dynamic shapes); a dict: its keys,
    among ``backend``, ``mode``, ``dynamic``, ``fullgraph``, ``options``.
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, dict):
        raise TypeError('model.compile must be a bool or a dict of '
                        f'torch.compile arguments, got {compile!r}')
    unknown = sorted(set(compile) - set(COMPILE_KEYS))
    if unknown:
        raise ValueError(f'model.compile: unknown keys {unknown}; expected '
                         f'some of {list(COMPILE_KEYS)}')
    return dict(compile)


class CompiledCall:
    """The ``_compiled_call_impl`` of a module: ``torch.compile`` of its
    ``_call_impl``, built at the first call, eager after a failed build."""

    def __init__(self, module: nn.Module, name: str, options: dict) -> None:
        self.name = name
        self.compiled: Optional[Callable] = torch.compile(
            module._call_impl, **options)
        self.eager = module._call_impl

    def __call__(self, *args, **kwargs) -> Any:
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (decided by the eager run)
            out = self.eager(*args, **kwargs)  # raises the module's own error
            # the first paragraph names the cause, on one line
            reason = ' '.join(str(err).strip().split('\n\n')[0].split())
            warnings.warn(
                f'torch.compile of {self.name} failed '
                f'({type(err).__name__}: {reason[:300]}); {self.name} runs '
                'eagerly', RuntimeWarning, stacklevel=2)
            self.compiled = None
            return out


def compile_submodules(model: nn.Module, names: Iterable[str],
                       compile: CompileCfg) -> bool:
    """Compile ``model.<name>`` in place for each name, as ``compile``
    (a ``model.compile`` value) says; True if anything is compiled.

    Without ``torch.compile`` (torch < 2.0) it warns once and leaves the
    model eager.
    """
    options = compile_options(compile)
    if options is None:
        return False
    if not hasattr(torch, 'compile'):
        warnings.warn(f'model.compile: torch {torch.__version__} has no '
                      'torch.compile; the model runs eagerly', RuntimeWarning)
        return False
    for name in names:
        module = getattr(model, name)
        module._compiled_call_impl = CompiledCall(
            module, f'{type(model).__name__}.{name}', options)
    return True


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module``'s calls go through a (not failed) compiled
    function."""
    call = module._compiled_call_impl
    return call is not None and getattr(call, 'compiled', call) is not None
