"""What a wheel of the package holds: every file of ``mopro/`` that is not
Python is declared as package data in ``setup.cfg``, or ``pip install .``
would leave it out (an editable install would not show it)."""
import configparser
import fnmatch
import os
import os.path as osp

from helpers import ROOT


def _package_data() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(ROOT, 'setup.cfg'))
    return {
        package: value.split()
        for package, value in cfg['options.package_data'].items()
    }


def _data_files() -> dict:
    """{package: [file names that are not Python]} below mopro/."""
    found = {}
    for folder, dirs, files in os.walk(osp.join(ROOT, 'mopro')):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        package = osp.relpath(folder, ROOT).replace(os.sep, '.')
        names = [f for f in files if not f.endswith(('.py', '.pyc'))]
        if names:
            found[package] = sorted(names)
    return found


def test_every_data_file_is_package_data():
    declared, found = _package_data(), _data_files()
    for package, names in found.items():
        patterns = declared.get(package, [])
        for name in names:
            assert any(fnmatch.fnmatch(name, p) for p in patterns), (
                f'{package}/{name}: not in [options.package_data]')
    for package, patterns in declared.items():
        for pattern in patterns:
            assert any(
                fnmatch.fnmatch(name, pattern)
                for name in found.get(package, [])), (
                    f'[options.package_data] {package} = {pattern}: no file')
