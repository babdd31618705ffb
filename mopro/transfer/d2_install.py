"""Install detectron2 into the running Python environment (idempotent).

detectron2 is not published on the package registry under its own name.
:func:`install` (``tools/misc/install_detectron2.py``):

1. If ``detectron2`` is importable already, report it and stop (after
   installing any missing runtime dependency if step 3 installed it).
2. If its git repository answers (``git ls-remote`` within 20 s), build the
   full package with its compiled C++/CUDA ops from source::

       pip install --no-build-isolation \\
           'git+https://github.com/facebookresearch/detectron2.git'

3. Otherwise install the v0.6 Python sources carried by the registry's
   ``pb1-detectron2==0.6`` sdist (identical to upstream v0.6, without the
   C++/CUDA sources, so it cannot be ``pip install``-ed): download it, put
   only its ``detectron2/`` package into site-packages with a dist-info
   (so ``pip show/uninstall detectron2`` work), and install the pure-Python
   dependencies. :mod:`mopro.transfer.d2_compat` makes these sources run
   without the compiled ``_C`` (see its docstring).

If the git build fails (no compiler or CUDA toolkit), step 3 follows.
``source='git'`` / ``source='pypi'`` force step 2 / 3.
"""
import glob
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from typing import List

from ..utils.errors import UserError
from .d2_compat import detectron2_dir, detectron2_version, has_compiled_ops

GIT_URL = 'https://github.com/facebookresearch/detectron2'
SDIST = 'pb1-detectron2==0.6'
VERSION = '0.6'
INSTALLER = 'mopro-tools-install_detectron2'
SOURCES = ('auto', 'git', 'pypi')

# Pure-Python runtime dependencies of detectron2 v0.6 for
# ``import detectron2.{modeling,engine,evaluation,data}`` and training
# with DefaultTrainer; pins are versions that install on Python 3.11 here.
RUNTIME_DEPS = [
    # v0.6 requires fvcore>=0.1.5,<0.1.6; this is the last 0.1.5 release
    'fvcore==0.1.5.post20221221',
    # v0.6 requires iopath>=0.1.7,<0.1.10; this is the last such release
    'iopath==0.1.9',
    # v0.6 requires omegaconf>=2.1 (engine/defaults.py imports it);
    # hydra-core 1.3.2 requires omegaconf>=2.2,<2.4
    'omegaconf==2.3.0',
    # v0.6 requires hydra-core>=1.1 (utils/registry.locate falls back to it);
    # 1.3.2 is the release that installs with omegaconf 2.3 here
    'hydra-core==1.3.2',
    # yacs CfgNode is detectron2's config class; 0.1.8 is v0.6's minimum
    'yacs==0.1.8',
    # the rest are unpinned in v0.6 and kept unpinned here
    'tabulate',  # logger, data/build.py, coco_evaluation.py
    'tqdm>4.29.0',  # v0.6's lower bound
    'cloudpickle',  # utils/serialize.py, config/lazy.py
    'termcolor>=1.1',  # v0.6's lower bound; logger, data/build.py
    'pycocotools>=2.0.2',  # COCO loading and evaluation
    'matplotlib',  # utils/visualizer.py (imported by the evaluators)
    'tensorboard',  # DefaultTrainer's TensorboardXWriter
]
# distribution name and exact pin of a RUNTIME_DEPS entry
_REQUIREMENT = re.compile(r'^([A-Za-z0-9_.-]+)(?:==(\S+))?')


def step(message: str) -> None:
    print(f'[install_detectron2] {message}', flush=True)


def pip(args: List[str], check: bool = True) -> bool:
    """Run pip of this interpreter; on failure raise :class:`UserError` if
    ``check`` else return False."""
    command = [sys.executable, '-m', 'pip'] + args
    result = subprocess.run(command)
    if result.returncode != 0 and check:
        raise UserError(f'`{" ".join(command)}` failed '
                        f'(exit {result.returncode})')
    return result.returncode == 0


def missing_deps() -> List[str]:
    """Requirements of RUNTIME_DEPS not installed: absent, or not at the
    pinned version (lower bounds are met by any release installable now)."""
    missing = []
    for requirement in RUNTIME_DEPS:
        name, pinned = _REQUIREMENT.match(requirement).groups()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if pinned and version != pinned:
            missing.append(requirement)
    return missing


def installed_by_us() -> bool:
    """Whether detectron2 was installed from the sdist by this module
    (then pip knows none of its dependencies; a git build declares them)."""
    try:
        installer = importlib.metadata.distribution('detectron2').read_text(
            'INSTALLER')
    except importlib.metadata.PackageNotFoundError:
        return False
    return (installer or '').strip() == INSTALLER


def describe(package_dir: str) -> str:
    """``detectron2 0.6 at DIR (Python sources only, no compiled ops)``."""
    version = detectron2_version(package_dir) or 'unknown version'
    ops = ('with compiled ops' if has_compiled_ops(package_dir) else
           'Python sources only, no compiled ops')
    return f'detectron2 {version} at {package_dir} ({ops})'


def install_deps() -> None:
    missing = missing_deps()
    if not missing:
        step('runtime dependencies: all present')
        return
    step(f'runtime dependencies: installing {" ".join(missing)}')
    pip(['install'] + missing)


def git_reachable() -> bool:
    if shutil.which('git') is None:
        return False
    try:
        result = subprocess.run(['git', 'ls-remote', '--heads', GIT_URL],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                env=dict(os.environ,
                                         GIT_TERMINAL_PROMPT='0'), timeout=20)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def install_from_git(check: bool) -> bool:
    """Build and install detectron2 with its compiled ops (needs a C++
    compiler, and nvcc for the CUDA ops); return whether it succeeded."""
    step(f'building detectron2 from {GIT_URL} (compiled ops)')
    return pip(['install', '--no-build-isolation', f'git+{GIT_URL}.git'],
               check=check)


def _dist_info(staging: str, files: List[str]) -> str:
    """Write a dist-info for ``files`` into ``staging``; return its name."""
    name = f'detectron2-{VERSION}.dist-info'
    info = os.path.join(staging, name)
    os.makedirs(info)
    deps = ''.join(f'Requires-Dist: {req}\n' for req in RUNTIME_DEPS)
    contents = {
        'METADATA': ('Metadata-Version: 2.1\nName: detectron2\n'
                     f'Version: {VERSION}\nSummary: detectron2 v{VERSION} '
                     f'Python sources (from the {SDIST} sdist; no compiled '
                     f'ops)\n{deps}'),
        'INSTALLER':
        f'{INSTALLER}\n',
        'top_level.txt':
        'detectron2\n',
    }
    for filename, text in contents.items():
        with open(os.path.join(info, filename), 'w') as f:
            f.write(text)
    record = files + [f'{name}/{n}' for n in contents] + [f'{name}/RECORD']
    with open(os.path.join(info, 'RECORD'), 'w') as f:
        f.writelines(f'{path},,\n' for path in record)
    return name


def _extract_package(archive: str, staging: str) -> List[str]:
    """Extract only the ``detectron2/`` package of the sdist ``archive``
    into ``staging``; return its files, relative to ``staging``."""
    with tarfile.open(archive) as tar:
        members = [
            m for m in tar.getmembers()
            if m.name.split('/')[1:2] == ['detectron2']
        ]
        for member in members:
            member.name = member.name.split('/', 1)[1]
        tar.extractall(staging, members=members, filter='data')
    package = os.path.join(staging, 'detectron2')
    if not os.path.isfile(os.path.join(package, '__init__.py')):
        raise UserError(f'{archive} has no detectron2/ package')
    return sorted(
        os.path.relpath(os.path.join(root, name), staging)
        for root, _, names in os.walk(package) for name in names)


def install_from_sdist() -> None:
    """Step 3 of the module docstring: the sdist's ``detectron2/`` and a
    dist-info, moved into site-packages (the package last: once it is
    importable, the installation is complete)."""
    if importlib.util.find_spec('torch') is None:
        raise UserError('torch must be installed first (the '
                        f'{SDIST} setup.py imports it)')
    purelib = sysconfig.get_paths()['purelib']
    with tempfile.TemporaryDirectory(dir=purelib,
                                     prefix='.detectron2-install-') as tmp:
        step(f'downloading the {SDIST} sdist (detectron2 v{VERSION} Python '
             'sources)')
        pip([
            'download', '--quiet', '--no-deps', '--no-build-isolation', SDIST,
            '-d', tmp
        ])
        archives = glob.glob(os.path.join(tmp, '*.tar.gz'))
        if len(archives) != 1:
            raise UserError(f'expected one sdist in {tmp}, found '
                            f'{archives}')
        staging = os.path.join(tmp, 'staging')
        files = _extract_package(archives[0], staging)
        info = _dist_info(staging, files)
        step(f'extracted {len(files)} files of detectron2/ from '
             f'{os.path.basename(archives[0])}')
        for name in (info, 'detectron2'):
            target = os.path.join(purelib, name)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
        step(f'installed detectron2/ and {info} into {purelib}')


def install(source: str = 'auto') -> str:
    """Install detectron2 unless it is importable (see the module
    docstring); return the description of the installed package."""
    if source not in SOURCES:
        raise UserError(f'source must be one of {SOURCES}, got {source!r}')
    package_dir = detectron2_dir()
    if package_dir is not None:
        step(f'already installed: {describe(package_dir)}')
        if installed_by_us():
            install_deps()
        return describe(package_dir)
    built = False
    if source == 'git' or (source == 'auto' and git_reachable()):
        built = install_from_git(check=source == 'git')
        if not built:
            step('the git build failed: falling back to the registry sdist')
    elif source == 'auto':
        step(f'{GIT_URL} is unreachable: using the registry sdist')
    if not built:
        install_deps()
        install_from_sdist()
    importlib.invalidate_caches()
    package_dir = detectron2_dir()
    if package_dir is None:
        raise UserError('detectron2 is still not importable')
    step(f'done: {describe(package_dir)}')
    return describe(package_dir)
