"""The package beside an ordinary ML environment: a transformers 5 next to
mmpretrain 1.2 (mopro.utils.mmpretrain_compat), the installed package found
by every tool, and requirements as ranges with the tested set as
constraints."""
import configparser
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from mopro.transfer.d2_compat import INSTALL_COMMAND, detectron2_dir
from helpers import ROOT
from helpers.commands import tools_help
from helpers.detectron2_hidden import env_without_detectron2

TOOLS = sorted(
    glob.glob(osp.join(ROOT, 'tools', '*.py')) +
    glob.glob(osp.join(ROOT, 'tools', '*', '*.py')))

# Stands in for transformers 5 as mmpretrain 1.2.0 meets it: the package
# imports, but the modules mmpretrain's multimodal models import from are not
# what they expect (under the real 5.x: "TypeError: NoneType takes no
# arguments" at `class BertPreTrainedModel(PreTrainedModel)`).
FAKE_TRANSFORMERS = "__version__ = '5.17.0'\n"


@pytest.fixture(scope='module')
def transformers5(tmp_path_factory) -> dict:
    """The environment of a process that sees a transformers 5.17 beside
    this project's pycocotools (a directory first on PYTHONPATH)."""
    site = tmp_path_factory.mktemp('site')
    (site / 'transformers').mkdir()
    (site / 'transformers' / '__init__.py').write_text(FAKE_TRANSFORMERS)
    info = site / 'transformers-5.17.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: transformers\nVersion: 5.17.0\n')
    (info / 'RECORD').write_text('')
    env = dict(
        os.environ, CUDA_VISIBLE_DEVICES='', PYTHONPATH=os.pathsep.join(
            filter(None, [str(site), os.environ.get('PYTHONPATH')])))
    return env


def _python(code: str, env: dict, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_mmpretrain_alone_fails_beside_transformers5(transformers5, tmp_path):
    # the stand-in reproduces the trap: mmpretrain on its own imports its
    # multimodal models (pycocotools and transformers>=4.28 are installed)
    pytest.importorskip('pycocotools')
    result = _python('import mmpretrain.models', transformers5, str(tmp_path))
    assert result.returncode != 0
    assert 'transformers' in result.stderr.splitlines()[-1]


# `import mopro` first, as the tools do, or after mmpretrain's light modules,
# as a script sorted by isort does (third-party imports first), and as the
# processes torch.multiprocessing.spawn starts meet it
IMPORT_ORDERS = {
    'mopro_first':
    'import mopro\n',
    'mmpretrain_first': ('from mmpretrain.registry import MODELS\n'
                         'from mmpretrain.structures import DataSample\n'
                         'import mopro\n'),
}


@pytest.mark.parametrize('order', sorted(IMPORT_ORDERS))
def test_import_mopro_beside_transformers5(transformers5, tmp_path, order):
    result = _python(
        IMPORT_ORDERS[order] +
        'from mmpretrain.utils.dependency import WITH_MULTIMODAL\n'
        'from mmpretrain.registry import MODELS\n'
        'print(WITH_MULTIMODAL,\n'
        '      MODELS.get("MoPro").__name__, MODELS.get("ResNet").__name__)',
        transformers5, str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ['False', 'MoPro', 'ResNet']


# Detectron2 is optional: without it, the tools that need it say in one
# line how to install it, also for --help; the others run
DETECTRON2_TOOLS = {'train_d2.py'}


def _needs_detectron2_line(name: str) -> str:
    return (f'error: tools/{name} needs Detectron2, which this Python '
            f'environment lacks; install it with: {INSTALL_COMMAND}')


def _answers_help(name: str, code: int, out: str, err: str,
                  without_detectron2: bool) -> bool:
    if without_detectron2 and name in DETECTRON2_TOOLS:
        return (code, out,
                err.splitlines()) == (1, '', [_needs_detectron2_line(name)])
    return code == 0 and 'usage:' in out


@pytest.mark.slow
def test_every_tool_runs_beside_transformers5(transformers5, tmp_path):
    """``tools/X.py --help`` for every tool, one process each, from another
    directory: each finds the installed package (no tool edits sys.path)
    and imports everything it needs, or, for a tool that needs a missing
    Detectron2, says how to install it."""
    without = detectron2_dir() is None
    procs = {
        osp.basename(tool):
        subprocess.Popen([sys.executable, tool, '--help'], env=transformers5,
                         cwd=str(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for tool in TOOLS
    }
    failed = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if not _answers_help(name, proc.returncode, out, err, without):
            failed[name] = err[-1500:]
    assert not failed, failed
    assert len(procs) >= 12


@pytest.mark.slow
def test_every_tool_runs_without_detectron2(transformers5, tmp_path):
    """The same with Detectron2 hidden, the tools run in one process (each
    tool's own imports are checked above, one process each): only the
    tools that need Detectron2 stop, with the line that says how to
    install it."""
    if detectron2_dir() is None:
        pytest.skip('detectron2 is not installed: the test above runs the '
                    'tools without it')
    env = env_without_detectron2(tmp_path / 'hide', transformers5)
    answers = tools_help(TOOLS, env, str(tmp_path))
    assert sorted(answers) == TOOLS
    failed = {
        osp.basename(tool): answer.stderr[-1500:]
        for tool, answer in answers.items() if not _answers_help(
            osp.basename(tool), answer.code, answer.value, answer.stderr,
            without_detectron2=True)
    }
    assert not failed, failed


def test_no_tool_edits_sys_path():
    # one way to find the package: it is installed (tools/misc/setup_env.sh:
    # pip install -e .), or on PYTHONPATH (tools/dist_train.sh)
    for tool in TOOLS:
        with open(tool) as f:
            assert 'sys.path' not in f.read(), tool


def _setup_cfg_requirements() -> dict:
    parser = configparser.ConfigParser()
    parser.read(osp.join(ROOT, 'setup.cfg'))
    lines = [
        line.strip()
        for line in parser['options']['install_requires'].splitlines()
    ]
    return {
        Requirement(line).name.lower(): Requirement(line)
        for line in lines if line and not line.startswith('#')
    }


def _constraints() -> dict:
    pins = {}
    with open(osp.join(ROOT, 'constraints.txt')) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line:
                req = Requirement(line)
                (spec, ) = req.specifier
                assert spec.operator == '==', line
                pins[req.name.lower().replace('_',
                                              '-')] = Version(spec.version)
    return pins


def test_requirements_are_ranges_and_constraints_pin_them():
    requirements = _setup_cfg_requirements()
    pins = _constraints()
    for name, req in requirements.items():
        assert not any(s.operator == '==' for s in req.specifier), req
        assert name in pins, f'{name} is not in constraints.txt'
        assert req.specifier.contains(pins[name]), (req, pins[name])
    # torch, torchvision and numpy: from the oldest release run to below
    # the next major
    for name, oldest, below in (('torch', '2.11', '3'), ('torchvision', '0.26',
                                                         '1'), ('numpy', '2.4',
                                                                '3')):
        spec = requirements[name].specifier
        assert spec.contains(oldest) and not spec.contains(below), name
    parser = configparser.ConfigParser()
    parser.read(osp.join(ROOT, 'setup.cfg'))
    python = parser['options']['python_requires']
    assert all(
        Requirement(f'python{python}').specifier.contains(v)
        for v in ('3.11', '3.12'))


def test_installed_versions_are_the_constraints():
    # the environment the suite runs in is the tested set (where it was
    # built by tools/misc/setup_env.sh; skipped in a user's own environment)
    import importlib.metadata as metadata
    venv = osp.join(ROOT, '.venv')
    if not (osp.isdir(venv) and osp.samefile(sys.prefix, venv)):
        pytest.skip("not the project's .venv")
    for name, version in _constraints().items():
        installed = Version(metadata.version(name))
        assert Version(re.sub(r'\+.*', '', str(installed))) == version, name
