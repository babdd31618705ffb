"""CPU time of each stage of a data pipeline, inside the built pipeline.

:class:`StagedPipeline` wraps each transform object of a config's built
pipeline in a clock, so the stages run as in training (the same objects,
their own randomness); nothing is re-implemented. The clock is the
thread's CPU time (``time.thread_time``: user and system, so a file read
counts; time the thread waits for the core does not).

Stages, named so that a reader finds them in the config:

- a transform: its class name (a ``torchvision/...`` transform: the
  torchvision class's), ``#2`` added to a second one of the same name;
- the transforms of ``MultiView``'s i-th pipeline: ``view<i>.<name>``,
  and ``MultiView.copy``, the rest of ``MultiView``'s time (its copy of
  the sample for each view);
- inside a loading transform (:data:`INNER_STAGES`): the functions of its
  module it calls, wrapped there while the pipeline runs
  (``LoadWebImage.read``), and the rest of its time
  (``LoadWebImage.decode``).

So the stages' times add up to the transforms' whole time.
"""
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from mmengine.dataset import Compose

from .timing import unique_name

# a loading transform's class name -> ({stage: function of its module it
# calls}, the stage of the rest of its time)
INNER_STAGES = {
    'LoadWebImage': (dict(read='image_bytes'), 'decode'),
    'LoadWebImageBytes':
    (dict(read='image_bytes', header_check='baseline_jpeg_size',
          fallback_decode='decode_rgb_bytes'), 'to_tensor'),
}
MULTI_VIEW_REST = 'copy'


class StageClock:
    """Thread CPU seconds per stage. A stage with inner stages counts its
    whole time (inclusive); :meth:`own_seconds` takes the inner ones out
    and names the rest."""

    def __init__(self) -> None:
        self.inclusive: Dict[str, float] = {}
        self.inner: Dict[str, List[str]] = {}  # stage -> its inner stages
        self.rest: Dict[str, str] = {}  # stage -> the name of the rest

    def timed(self, name: str, fn: Callable) -> Callable:
        """``fn``, its time counted under ``name``."""
        self.inclusive[name] = 0.0
        inclusive = self.inclusive

        def call(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                inclusive[name] += time.thread_time() - start

        return call

    def reset(self) -> None:
        """Zero every stage (after a warm-up)."""
        for name in self.inclusive:
            self.inclusive[name] = 0.0

    def own_seconds(self, stages: List[str]) -> Dict[str, float]:
        """Seconds of ``stages`` (the outer ones, in the pipeline's order),
        each time counted once: an outer stage's inner stages, then its
        rest."""
        own: Dict[str, float] = {}
        for name in stages:
            inner = self.inner.get(name)
            if not inner:
                own[name] = self.inclusive[name]
                continue
            own.update(self.own_seconds(inner))
            own[self.rest[name]] = self.inclusive[name] - sum(
                self.inclusive[stage] for stage in inner)
        return own


def stage_name(transform) -> str:
    """A transform's class name; a ``torchvision/...`` transform (mmpretrain
    wraps it) has its torchvision class's."""
    inner = getattr(transform, 't', None)
    if type(transform).__name__ == 'TorchVisonTransformWrapper':
        return type(inner).__name__
    return type(transform).__name__


# (module, attribute, wrapped function): set while the pipeline runs
Patch = Tuple[object, str, Callable]


def instrument(transforms: list, clock: StageClock, prefix: str = '',
               taken: Optional[set] = None) -> Tuple[List[str], List[Patch]]:
    """Replace each transform of the list ``transforms`` (a ``Compose``'s)
    by the same transform timed by ``clock``. Returns their stage names and
    the module functions to wrap while the pipeline runs
    (:data:`INNER_STAGES`)."""
    taken = set() if taken is None else taken
    names: List[str] = []
    patches: List[Patch] = []
    for index, transform in enumerate(transforms):
        name = unique_name(prefix + stage_name(transform), taken)
        inner: List[str] = []
        if hasattr(transform, 'pipelines'):  # MultiView
            for view, pipeline in enumerate(transform.pipelines):
                view_names, view_patches = instrument(pipeline.transforms,
                                                      clock,
                                                      f'{prefix}view{view}.',
                                                      taken)
                inner += view_names
                patches += view_patches
            clock.rest[name] = f'{name}.{MULTI_VIEW_REST}'
        elif stage_name(transform) in INNER_STAGES:
            functions, rest = INNER_STAGES[stage_name(transform)]
            module = sys.modules[type(transform).__module__]
            for label, attr in functions.items():
                stage = unique_name(f'{name}.{label}', taken)
                patches.append(
                    (module, attr, clock.timed(stage, getattr(module, attr))))
                inner.append(stage)
            clock.rest[name] = f'{name}.{rest}'
        transforms[index] = clock.timed(name, transform)
        if inner:
            clock.inner[name] = inner
        names.append(name)
    return names, patches


@contextmanager
def patched(patches: List[Patch]) -> Iterator[None]:
    """The module functions of ``patches`` replaced by their timed
    versions inside the block."""
    saved = [(module, attr, getattr(module, attr))
             for module, attr, _ in patches]
    for module, attr, timed in patches:
        setattr(module, attr, timed)
    try:
        yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)


class StagedPipeline:
    """A built pipeline (``Compose``) whose transforms are timed in
    :attr:`clock`, called as the ``Compose`` is."""

    def __init__(self, pipeline: Compose) -> None:
        self.pipeline = pipeline
        self.clock = StageClock()
        self.stages, self.patches = instrument(pipeline.transforms, self.clock)

    def __call__(self, data: dict) -> Optional[dict]:
        with patched(self.patches):
            return self.pipeline(data)


def stage_report(staged: StagedPipeline, images: int,
                 instrumented_cpu_ms: float, pipeline_cpu_ms: float,
                 collate_cpu_ms: float, collate_batch: int) -> Dict:
    """CPU ms per image of each stage over ``images`` images; the stages'
    sum beside the whole pipeline's, with the clocks
    (``instrumented_cpu_ms``: only the pipeline's own loop is outside the
    stages) and without them (``pipeline_cpu_ms``, the same images and
    random draws: the clocks' cost); and the collate function's share per
    image (``collate_cpu_ms`` for a batch of ``collate_batch``)."""
    stages = {
        name: 1e3 * seconds / images
        for name, seconds in staged.clock.own_seconds(staged.stages).items()
    }
    total = sum(stages.values())
    collate = collate_cpu_ms / collate_batch
    return dict(
        cpu_ms_per_image=dict(stages, collate=collate),
        stages_sum_cpu_ms_per_image=total,
        instrumented_pipeline_cpu_ms_per_image=instrumented_cpu_ms,
        pipeline_cpu_ms_per_image=pipeline_cpu_ms,
        collate_batch_size=collate_batch,
        worker_cpu_ms_per_image=total + collate)
