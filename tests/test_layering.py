"""The package is built in floors: a module imports from its own package
and from the floors below, never from a floor above, so each floor can be
read (and tested) without those above it. The ground floor's modules stay
small, and applying the library patches registers no component: every
registration is an import of ``mopro/__init__.py``."""
import ast
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, Iterator, Tuple

from helpers import ROOT

PACKAGE = osp.join(ROOT, 'mopro')
# floor by floor, from the ground up; a module's room is its first name
# below mopro ('' for mopro/__init__.py); rooms on one floor import
# nothing from each other
FLOORS = (
    # errors and the tools' error boundary, argparse types, value rules,
    # devices, atomic writes, output checks, mmpretrain's import patch
    'utils version',
    # reading a config (switches, keys nothing reads, component arguments);
    # reading, converting and matching checkpoints
    'config checkpoint',
    # the registered components
    'datasets models',
    'gpu_data evaluation visualization',
    # the Runner, its hooks, launching, resuming, the checks of a run
    'engine',
    # what the tools do
    'apis analysis demo transfer',
    # the library patches
    'environment',
    # the package: applies them, then registers every component ('')
    '',
)
FLOOR = {
    room: i
    for i, rooms in enumerate(FLOORS)
    for room in rooms.split() or ['']
}
# the ground floor and the engine's set-up: modules of at most this many
# lines
SMALL_ROOMS = ('utils', 'config', 'checkpoint', 'engine', 'environment', '')
MAX_LINES = 300


def modules() -> Dict[str, str]:
    """``{dotted module name: path}`` of every module of the package."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            parts = osp.relpath(path, ROOT)[:-len('.py')].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            found['.'.join(parts)] = path
    return found


def room(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def imported(module: str, path: str) -> Iterator[Tuple[int, str]]:
    """``(line, module)`` of every import of the package in ``path``, at
    the top or inside a function; relative imports resolved."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    package = module if path.endswith('__init__.py') else \
        module.rpartition('.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package.split('.')[:len(package.split('.')) -
                                            node.level + 1]
                base = '.'.join(parent + ([base] if base else []))
            names = [base]
        else:
            continue
        for name in names:
            if name == 'mopro' or name.startswith('mopro.'):
                yield node.lineno, name


def test_every_room_has_a_floor():
    rooms = {room(module) for module in modules()}
    assert rooms - set(FLOOR) == set(), 'add new rooms to FLOORS'


def test_no_import_runs_up_a_floor():
    wrong = []
    for module, path in sorted(modules().items()):
        here = room(module)
        for line, target in imported(module, path):
            there = room(target)
            if there != here and FLOOR.get(there, -1) >= FLOOR.get(here, 0):
                wrong.append(f'{osp.relpath(path, ROOT)}:{line} imports '
                             f'{target} (floor {FLOOR.get(there)}, not below '
                             f'{here or "mopro"}\'s {FLOOR.get(here)})')
    assert not wrong, '\n'.join(wrong)


def test_ground_floor_modules_are_small():
    large = []
    for module, path in sorted(modules().items()):
        if room(module) in SMALL_ROOMS:
            with open(path, encoding='utf-8') as f:
                lines = len(f.read().splitlines())
            if lines > MAX_LINES:
                large.append(f'{osp.relpath(path, ROOT)}: {lines} lines')
    assert not large, large


# Applies the library patches with the package's own __init__ left out (a
# bare package object stands in for it), then lists what the registries
# hold from the package: the patches alone must register nothing.
PATCHES_ONLY = '''
import sys, types
package = types.ModuleType('mopro')
package.__path__ = [sys.argv[1]]
sys.modules['mopro'] = package
from mopro.environment import setup_environment
setup_environment()
from mmengine import registry as engine_registry
from mmengine.fileio.backends import backends
from mmpretrain import registry as pretrain_registry
found = sorted(
    key for module in (engine_registry, pretrain_registry)
    for registry in vars(module).values()
    if isinstance(registry, engine_registry.Registry)
    for key, cls in registry.module_dict.items()
    if getattr(cls, '__module__', '').startswith('mopro'))
found += [name for name, cls in backends.items()
          if cls.__module__.startswith('mopro')]
print(' '.join(found))
'''


def test_library_patches_register_nothing():
    result = subprocess.run([sys.executable, '-c', PATCHES_ONLY, PACKAGE],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == []
