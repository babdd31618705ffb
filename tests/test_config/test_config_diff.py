"""Configs compared as they resolve (``mopro/config/diff.py``) and
``tools/misc/diff_configs.py``, which compares two revisions of
``configs/``."""
import os.path as osp
import subprocess
import textwrap

import pytest

from mopro.config.diff import MISSING, compare_config_dirs, config_differences
from helpers import ROOT
from helpers.commands import run


def test_config_differences_names_every_key():
    before = {
        'model': {
            'threshold': 0.8,
            'drop': 1
        },
        'schedule': [dict(T_max=90), dict(T_max=5)],
        'size': (224, 224),
        'seed': 0,
    }
    after = {
        'model': {
            'threshold': 0.6,
            'new': 'x'
        },
        'schedule': [dict(T_max=90), dict(T_max=6)],
        'size': [224, 224],
        'seed': 0,
    }
    assert sorted(config_differences(before, after)) == [
        ('model.drop', '1', MISSING),
        ('model.new', MISSING, "'x'"),
        ('model.threshold', '0.8', '0.6'),
        ('schedule.1.T_max', '5', '6'),
        ('size', '(224, 224)', '[224, 224]'),
    ]
    assert list(config_differences(before, before)) == []


def write(folder, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def config_dirs(tmp_path):
    """Two revisions of a configs folder: a key moved from the base into
    the config (same run), one value changed, one config gone, one new."""
    base, new = tmp_path / 'base', tmp_path / 'new'
    write(base, '_base_/schedule.py', 'max_epochs = 90\nlr = 0.1\n')
    write(base, 'run.py', "_base_ = ['_base_/schedule.py']\nseed = 0\n")
    write(base, 'old.py', 'seed = 1\n')
    write(new, '_base_/schedule.py', 'max_epochs = 90\n')
    write(new, 'run.py',
          "_base_ = ['_base_/schedule.py']\nseed = 0\nlr = 0.2\n")
    write(new, 'added.py', 'seed = 2\n')
    return str(base), str(new)


def test_compare_config_dirs_counts_what_is_not_allowed(config_dirs):
    lines, unexpected = compare_config_dirs(*config_dirs)
    assert lines == [
        'old.py: only at the base revision', 'added.py: new',
        'run.py: 1 keys differ', '  ! lr: 0.1 -> 0.2'
    ]
    assert unexpected == 2
    lines, unexpected = compare_config_dirs(*config_dirs, allow=['l*'])
    assert lines[-1] == '    lr: 0.1 -> 0.2'
    assert unexpected == 1


def test_compare_config_dirs_sees_through_moved_keys(tmp_path):
    """The same run written two ways: nothing to report."""
    base, new = tmp_path / 'base', tmp_path / 'new'
    write(base, '_base_/a.py', 'lr = 0.1\n')
    write(base, 'run.py', "_base_ = ['_base_/a.py']\nseed = 0\n")
    write(new, 'run.py', 'seed = 0\nlr = 0.1\n')
    assert compare_config_dirs(str(base),
                               str(new)) == (['run.py: identical'], 0)


@pytest.mark.skipif(not osp.exists(osp.join(ROOT, '.git')),
                    reason='needs a git checkout')
def test_diff_configs_tool_between_revisions(tmp_path):
    """``HEAD`` against itself: every config of the repository resolves
    and none differs (exit 0); an unknown revision is one error line."""
    same, unknown = (
        run('misc/diff_configs', args, cwd=str(tmp_path))
        for args in (['HEAD', '--rev', 'HEAD'], ['no-such-rev']))
    assert same.returncode == 0, same.stderr
    lines = same.stdout.splitlines()
    assert lines[-1] == 'no unexpected differences'
    assert 'configs/mopro_r50_webvision_v1.py' not in same.stdout
    assert 'mopro_r50_webvision_v1.py: identical' in lines
    assert unknown.returncode == 1
    assert unknown.stderr.startswith('error: git archive no-such-rev: ')
    assert len(unknown.stderr.splitlines()) == 1
    head = subprocess.run(['git', '-C', ROOT, 'ls-files', 'configs/*.py'],
                          capture_output=True, text=True).stdout.split()
    configs = [p for p in head if '/_base_/' not in p]
    assert sum(line.endswith(': identical') for line in lines) == len(configs)
