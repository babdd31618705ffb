"""``torch.compile`` of a model's sub-modules in place, and of functions,
with an eager fallback.

The ``model.compile`` switch of :class:`MoPro` and
:class:`CompilableImageClassifier`. Sub-modules are compiled the way
``nn.Module.compile`` does it (their ``__call__`` goes through the compiled
function), so parameter and buffer names, the state dict and every
checkpoint stay those of the eager model (no ``_orig_mod.`` prefix), and a
deep copy of a compiled module is an eager module (torch drops the compiled
call when it copies a module).

torch.compile builds lazily, at the first call (and again for a new mode,
e.g. eval or no-grad). When that build fails (no dynamo/inductor for this
Python or platform, no C++ or Triton compiler, a dynamo bug), the module or
function warns once and runs eagerly from then on. An error of the module
itself still surfaces: the eager re-run raises it. An out-of-memory error is
raised as it is and leaves the compiled function in place (a smaller batch,
or memory freed, lets it run compiled again). Where the failed build follows
a graph break, the part before it ran already (its BatchNorm statistics are
updated twice for that one batch). The backward graph is built at the first
``backward()``, outside this guard: a failure there (rare: the forward's
build has exercised the same toolchain) stops the run with torch's error.

Recompile budget and dynamic shapes: dynamo keeps its graphs, and counts
recompilations against ``torch._dynamo.config.recompile_limit`` (8), per
code object. Two modules of one class (the encoder's and the momentum
encoder's ResNet) share their ``forward``'s code object, so they would
share one budget; each compiled module and function here enters through
its own code object (:func:`_own_entry`), so each has its own budget.
Dynamo's automatic-dynamic state (which input sizes it has seen change, and
so compiles as symbols) is kept per process, and with a
``torch.compiler.config.job_id`` across runs (profile-guided), under a code
identity, not a code object: the file's hash, first line and name of the
code, and its closure's code objects (``CodeId`` in
``torch/_dynamo/pgo.py``). Each entry is named with a serial number of its
own, so one model's sizes (a backbone that evaluated at 512) do not make
another model's training graph dynamic; within one compiled module the
state is shared as torch intends: its eval-mode graph, built at a batch
size other than training's, has a dynamic batch dimension, so validation,
noise cleaning and feature extraction do not recompile per batch size,
while the training graph keeps its static shapes.
"""
import itertools
import types
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


def out_of_memory(err: BaseException) -> Optional[BaseException]:
    """The out-of-memory error that ``err`` is, was raised from or wraps
    (dynamo and inductor wrap the errors of a build), else None; else
    ``err`` if it is a RuntimeError that says "out of memory"
    (torchvision's nvjpeg decoder re-raises CUDA's so)."""
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = (
            getattr(err, 'inner_exception', None) or err.__cause__
            or err.__context__)
    for err in chain:
        if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
            return err
    if isinstance(chain[0], RuntimeError) and 'out of memory' in str(chain[0]):
        return chain[0]
    return None


# serial numbers of the compiled entries of this process
_ENTRY_SERIALS = itertools.count()


def _own_entry(call: Callable, name: str) -> Callable:
    """A function that calls ``call``, with a code object of its own, named
    ``<name>_<serial>``: dynamo's graph cache and recompile budget are per
    code object, its automatic-dynamic state per code name (module
    docstring), so each entry has all three to itself. The serial counts
    the entries this process made, so a resumed run that builds its models
    in the same order finds its profile-guided state under the same
    names."""

    def entry(*args, **kwargs):
        return call(*args, **kwargs)

    name = f'{name}_{next(_ENTRY_SERIALS)}'
    code = entry.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, entry.__globals__, name,
                              entry.__defaults__, entry.__closure__)


class CompiledCall:
    """``torch.compile`` of ``eager`` (a module's ``_call_impl`` or a
    function), built at the first call, eager after a failed build.

    Args:
        eager: what to compile.
        name: named in the warning of a failed build.
        options: ``torch.compile`` keyword arguments.
    """

    def __init__(self, eager: Callable, name: str, options: dict) -> None:
        self.name = name
        self.eager = eager
        entry = _own_entry(eager, 'compiled_' + name.replace('.', '_'))
        self.compiled: Optional[Callable] = torch.compile(entry, **options)

    def __call__(self, *args, **kwargs) -> Any:
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (decided by the eager run)
            oom = out_of_memory(err)
            if oom is not None:
                raise oom from None
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
        warnings.warn(
            f'model.compile: torch {torch.__version__} has no '
            'torch.compile; the model runs eagerly', RuntimeWarning)
        return False
    for name in names:
        module = getattr(model, name)
        module._compiled_call_impl = CompiledCall(
            module._call_impl, f'{type(model).__name__}.{name}', options)
    return True


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module``'s calls go through a (not failed) compiled
    function."""
    call = module._compiled_call_impl
    return call is not None and getattr(call, 'compiled', call) is not None
