"""The GPU checks of docs/speed.md as one run and one JSON.

:func:`run_gpu_checks` runs, one after the other on one GPU (so that no
timing shares the device), the project's own benchmark tools and the CUDA
tests as subprocesses, each with a time limit, and gathers their outputs
into one JSON with the goals of docs/speed.md judged against them
(:func:`judge_goals`). A stage that fails or runs out of time is reported
with the end of its output and the run goes on. The stages
(:func:`plan_stages`): the training step at the two recipes' batches (the
paper's 256 on one GPU, the 8-GPU recipe's 32 per GPU), eager, compiled
and compiled with its launches captured, and in the Runner loop; both data
paths end to end through the Runner at both batches (the CPU data path as
the control); the CUDA tests (``pytest -m gpu``).

A GPU machine with torch but without network gets the OpenMMLab packages
from a folder of wheels made beforehand where the package registry
answers (:func:`download_wheels`, ``tools/misc/gpu_wheels.py``);
``benchmarks/run_gpu_checks.sh --wheels DIR`` installs them first.
"""
import json
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from ..utils.errors import UserError

STEP_TOOL = 'tools/analysis_tools/benchmark.py'
DATA_TOOL = 'tools/analysis_tools/benchmark_data.py'
CONFIG = 'configs/mopro_r50_webvision_v1.py'
GPU_DATA_CONFIG = 'configs/mopro_r50_webvision_v1_gpu_data.py'
# the paper's batch on one GPU, and the 8-GPU recipe's batch per GPU
RECIPE_BATCHES = (256, 32)
# the step's modes at each batch: CUDA graphs where launches may bound it
STEP_MODES = {
    256: ('eager', 'compiled'),
    32: ('eager', 'compiled', 'reduce-overhead')
}
TAIL_CHARS = 3000  # of a failed stage's output, in the JSON

# What a GPU image with torch, torchvision and the scientific stack lacks
# to run the checks (mopro's requirements and their undeclared imports),
# at the versions of constraints.txt: those the registry has as wheels...
WHEEL_PACKAGES = ('mmengine', 'mmpretrain', 'mmcv-lite', 'addict', 'yapf',
                  'platformdirs', 'termcolor', 'model-index', 'modelindex',
                  'ordered-set', 'mat4py', 'pycocotools', 'iopath', 'yacs',
                  'omegaconf', 'hydra-core')
# ...and those it has only as sources, built into wheels with the GPU
# machine's Python (liblinear-official compiles C; the others are pure)
SOURCE_PACKAGES = ('liblinear-official', 'fvcore', 'antlr4-python3-runtime')


@dataclass
class Stage:
    """One subprocess of the checks: ``argv`` after the interpreter;
    ``out`` the JSON it writes, or with ``junit`` the tests' JUnit XML
    report."""
    name: str
    argv: List[str]
    timeout_s: int
    out: str
    junit: bool = False


@dataclass
class GpuCheckSettings:
    """What :func:`run_gpu_checks` runs (the tool's flags)."""
    out: str
    step_iters: int = 30
    runner_iters: int = 30
    warmup: int = 10
    num_images: int = 2048
    workers: int = 15  # the CPU data path's, the control
    gpu_workers: int = 4  # the GPU data path's (the goal: at most 4)
    test_workers: int = 4
    skip: Sequence[str] = field(default_factory=tuple)  # stage names


def plan_stages(settings: GpuCheckSettings, folder: str) -> List[Stage]:
    """The stages of the module docstring, their JSONs in ``folder``. The
    step at 32 images is also timed with its launches captured (CUDA
    graphs), where launches may bound it; the inference batches are left
    out (they are the step benchmark's own figures, not goals here)."""
    stages = []
    for batch in RECIPE_BATCHES:
        out = osp.join(folder, f'step_{batch}.json')
        modes = STEP_MODES[batch]
        stages.append(
            Stage(f'step_{batch}', [
                STEP_TOOL, CONFIG, '--batch-sizes',
                str(batch), '--modes', *modes, '--iters',
                str(settings.step_iters), '--warmup',
                str(settings.warmup), '--no-inference', '--out', out
            ], 120 * len(modes), out))
    for batch in RECIPE_BATCHES:
        out = osp.join(folder, f'end_to_end_{batch}.json')
        stages.append(
            Stage(f'end_to_end_{batch}', [
                DATA_TOOL, CONFIG, '--runner', '--batch-size',
                str(batch), '--num-images',
                str(settings.num_images), '--runner-iters',
                str(settings.runner_iters), '--warmup',
                str(settings.warmup), '--workers',
                str(settings.workers), '--gpu-workers',
                str(settings.gpu_workers), '--out', out
            ], 300, out))
    report = osp.join(folder, 'gpu_tests.xml')
    stages.append(
        Stage('gpu_tests', [
            '-m', 'pytest', '-q', '-m', 'gpu', '-n',
            str(settings.test_workers), '-p', 'no:cacheprovider', '--junitxml',
            report
        ], 420, report, junit=True))
    unknown = sorted(set(settings.skip) - {s.name for s in stages})
    if unknown:
        raise UserError(f'--skip: no stage named {unknown}; the stages are '
                        f'{[s.name for s in stages]}')
    return [s for s in stages if s.name not in settings.skip]


def run_stage(stage: Stage, folder: str,
              env: Optional[Dict[str, str]] = None) -> Dict:
    """Run ``stage``; its status (``ok``, ``failed``, ``timeout``),
    seconds, result (the JSON it wrote, or the tests' counts) and, unless
    ok, the end of its output."""
    start = time.perf_counter()
    log = osp.join(folder, stage.name + '.log')
    with open(log, 'w') as out:
        try:
            code = subprocess.run([sys.executable] + stage.argv, stdout=out,
                                  stderr=subprocess.STDOUT, env=env,
                                  timeout=stage.timeout_s).returncode
            status = 'ok' if code == 0 else 'failed'
        except subprocess.TimeoutExpired:
            status = 'timeout'
    entry = dict(
        command=shlex.join(['python'] + stage.argv), status=status,
        seconds=round(time.perf_counter() - start, 1))
    if stage.junit and osp.exists(stage.out):
        entry['result'] = junit_counts(stage.out)
    elif status == 'ok':
        with open(stage.out) as f:
            entry['result'] = json.load(f)
    if status != 'ok':
        with open(log) as f:
            entry['output_tail'] = f.read()[-TAIL_CHARS:]
    return entry


def junit_counts(path: str) -> Dict:
    """Passed, failed, skipped and the failed tests' names of a pytest
    JUnit XML report."""
    root = ElementTree.parse(path).getroot()
    counts = dict(passed=0, failed=0, skipped=0, failures=[])
    for case in root.iter('testcase'):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find('failure') is not None or \
                case.find('error') is not None:
            counts['failed'] += 1
            counts['failures'].append(name)
        elif case.find('skipped') is not None:
            counts['skipped'] += 1
        else:
            counts['passed'] += 1
    return counts


def _get(results: Dict, path: str) -> Optional[float]:
    """``results[a][b]...`` for ``path`` 'a.b...', or None where missing."""
    value = results
    for key in path.split('.'):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


@dataclass
class Goal:
    """A goal of docs/speed.md: ``measure(results)`` against ``target``
    (at least, or with ``at_most`` at most)."""
    name: str
    measure: Callable[[Dict], Optional[float]]
    target: float
    at_most: bool = False


def _step_rate(results: Dict, batch: int, mode: str) -> Optional[float]:
    return _get(
        results, f'step_{batch}.result.by_batch_size.{batch}.{mode}.mopro.'
        'img_per_s')


def _best_step_rate(results: Dict, batch: int) -> Optional[float]:
    """The faster of the compiled step and the same with CUDA graphs."""
    rates = [
        rate for rate in (_step_rate(results, batch, mode)
                          for mode in STEP_MODES[batch]
                          if mode != 'eager') if rate is not None
    ]
    return max(rates) if rates else None


def _over(num: Optional[float], den: Optional[float]) -> Optional[float]:
    return None if num is None or not den else num / den


def goals() -> List[Goal]:
    """The goals, each read from the stages' results (keyed by stage)."""
    big, small = RECIPE_BATCHES
    return [
        Goal('end_to_end_img_per_s_gpu_path_batch_256',
             lambda r: _get(r, f'end_to_end_{big}.result.gpu_path.img_per_s'),
             4500),
        Goal(
            'runner_vs_step_compiled_batch_256', lambda r: _over(
                _get(
                    r, f'step_{big}.result.by_batch_size.{big}.compiled.'
                    'mopro_runner.img_per_s'), _step_rate(r, big, 'compiled')),
            0.97),
        Goal(
            'training_process_cpu_ms_per_image_gpu_path_batch_256',
            lambda r: _get(
                r, f'end_to_end_{big}.result.gpu_path.'
                'main_process_cpu_ms_per_image'), 1.0, at_most=True),
        Goal(
            'step_per_image_rate_batch_32_vs_256', lambda r: _over(
                _best_step_rate(r, small), _step_rate(r, big, 'compiled')),
            0.75),
        Goal(
            'end_to_end_vs_step_batch_32', lambda r: _over(
                _get(r, f'end_to_end_{small}.result.gpu_path.img_per_s'),
                _best_step_rate(r, small)), 0.9),
    ]


def judge_goals(results: Dict) -> Dict:
    """Each goal's measured value, target and whether it is met (None
    where its stage did not produce the figure)."""
    judged = {}
    for goal in goals():
        value = goal.measure(results)
        met = None if value is None else (
            value <= goal.target if goal.at_most else value >= goal.target)
        judged[goal.name] = dict(
            value=value, target=goal.target,
            comparison='at most' if goal.at_most else 'at least', met=met)
    return judged


def run_gpu_checks(settings: GpuCheckSettings,
                   env: Optional[Dict[str, str]] = None) -> Dict:
    """Every stage of :func:`plan_stages`, then the goals; the JSON's
    content (the stages' logs are kept beside ``settings.out``)."""
    logs = osp.splitext(settings.out)[0] + '_logs'
    os.makedirs(logs, exist_ok=True)
    results: Dict = dict(stages={})
    started = time.perf_counter()
    for stage in plan_stages(settings, logs):
        print(f'[gpu checks] {stage.name}: {shlex.join(stage.argv)}',
              flush=True)
        entry = run_stage(stage, logs, env)
        results['stages'][stage.name] = entry
        print(
            f'[gpu checks] {stage.name}: {entry["status"]} in '
            f'{entry["seconds"]} s', flush=True)
    results['seconds'] = round(time.perf_counter() - started, 1)
    results['goals'] = judge_goals(results['stages'])
    return results


def constraint_versions(path: str) -> Dict[str, str]:
    """``name -> version`` of a pip constraints file's ``name==version``
    lines (names normalised as pip does)."""
    versions = {}
    with open(path) as f:
        for line in f:
            match = re.match(r'\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)', line)
            if match:
                name = re.sub(r'[-_.]+', '-', match.group(1)).lower()
                versions[name] = match.group(2)
    return versions


def download_wheels(folder: str, constraints: str, python_version: str,
                    build_python: str,
                    detectron2_dir: Optional[str] = None) -> List[str]:
    """Into ``folder``, for CPython ``python_version`` on x86-64 Linux:
    the wheels of :data:`WHEEL_PACKAGES` downloaded and those of
    :data:`SOURCE_PACKAGES` built with ``build_python`` (that Python,
    here), at their ``constraints`` versions; and detectron2's Python
    package (not on the package registry) copied into ``folder/site``
    when given. Returns the files added."""
    versions = constraint_versions(constraints)
    missing = [
        p for p in WHEEL_PACKAGES + SOURCE_PACKAGES if p not in versions
    ]
    if missing:
        raise UserError(f'{constraints}: no version of {missing}')
    check_build_python(build_python, python_version)
    os.makedirs(folder, exist_ok=True)
    before = set(os.listdir(folder))
    platforms = []
    for tag in ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64',
                'manylinux2014_x86_64'):
        platforms += ['--platform', tag]
    pinned = [f'{p}=={versions[p]}' for p in WHEEL_PACKAGES]
    subprocess.run([
        sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
        '--only-binary=:all:', '--python-version', python_version,
        '--implementation', 'cp', '-d', folder
    ] + platforms + pinned, check=True)
    pinned = [f'{p}=={versions[p]}' for p in SOURCE_PACKAGES]
    subprocess.run([
        build_python, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '-w',
        folder
    ] + pinned, check=True)
    if detectron2_dir:
        target = osp.join(folder, 'site', 'detectron2')
        if osp.exists(target):
            shutil.rmtree(target)
        shutil.copytree(detectron2_dir, target,
                        ignore=shutil.ignore_patterns('__pycache__'))
    return sorted(set(os.listdir(folder)) - before)


def check_build_python(python: str, version: str) -> None:
    """``python`` runs here and is CPython ``version``: the wheels built
    with it are for the GPU machine's Python."""
    try:
        found = subprocess.run([
            python, '-c', 'import platform, sys; print(sys.implementation'
            '.name, platform.python_version())'
        ], capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        found = []
    if len(found) != 2 or found[0] != 'cpython' or \
            not found[1].startswith(version + '.'):
        raise UserError(
            f'--build-python {python}: not a CPython {version} that runs '
            f'here (found {" ".join(found) or "nothing"}); it builds the '
            f'wheels of {", ".join(SOURCE_PACKAGES)} for the GPU machine')
