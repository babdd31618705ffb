"""tools/misc/install_detectron2.py and mopro.transfer.d2_install: a quick
no-op where detectron2 is installed, only the sdist's detectron2/ package
installed otherwise, and one home for the probes of an installation
(mopro.transfer.d2_compat). Needs no detectron2 except where it says so."""
import io
import os
import subprocess
import sys
import tarfile

import pytest

from mopro.transfer import d2_compat, d2_install
from mopro.utils.errors import UserError
from helpers import ROOT


@pytest.mark.slow
def test_installer_is_quick_when_installed():
    if d2_compat.detectron2_dir() is None:
        pytest.skip('detectron2 is not installed')
    result = subprocess.run(
        [sys.executable, 'tools/misc/install_detectron2.py'], cwd=ROOT,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'already installed: detectron2 ' in result.stdout
    assert 'installing' not in result.stdout


def fake_sdist(directory):
    """A stand-in for the pb1-detectron2 sdist: detectron2/ plus files that
    must not be installed."""
    path = os.path.join(directory, 'pb1-detectron2-0.6.tar.gz')
    files = {
        'pb1-detectron2-0.6/setup.py': 'import torch\n',
        'pb1-detectron2-0.6/detectron2/__init__.py': '__version__ = "0.6"\n',
        'pb1-detectron2-0.6/detectron2/layers/nms.py': 'X = 1\n',
        'pb1-detectron2-0.6/tools/train_net.py': '',
        'pb1-detectron2-0.6/projects/PointRend/x.py': '',
    }
    with tarfile.open(path, 'w:gz') as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_installer_extracts_only_the_package(tmp_path, monkeypatch):
    purelib = tmp_path / 'site-packages'
    purelib.mkdir()
    calls = []

    def fake_pip(args):
        calls.append(args)
        fake_sdist(args[args.index('-d') + 1])

    monkeypatch.setattr(d2_install, 'pip', fake_pip)
    monkeypatch.setattr(d2_install.sysconfig, 'get_paths',
                        lambda: {'purelib': str(purelib)})
    d2_install.install_from_sdist()
    assert calls[0][:4] == [
        'download', '--quiet', '--no-deps', '--no-build-isolation'
    ]
    assert 'pb1-detectron2==0.6' in calls[0]
    assert sorted(
        os.listdir(purelib)) == ['detectron2', 'detectron2-0.6.dist-info']
    assert (purelib / 'detectron2' / 'layers' / 'nms.py').read_text() == \
        'X = 1\n'
    record = (purelib / 'detectron2-0.6.dist-info' / 'RECORD').read_text()
    assert 'detectron2/layers/nms.py,,' in record
    assert 'setup.py' not in record
    metadata = (purelib / 'detectron2-0.6.dist-info' / 'METADATA').read_text()
    assert 'Name: detectron2\nVersion: 0.6\n' in metadata
    assert 'Requires-Dist: iopath==0.1.9' in metadata
    # the installed sources, as the installer and d2_compat describe them
    package = str(purelib / 'detectron2')
    assert d2_compat.detectron2_version(package) == '0.6'
    assert not d2_compat.has_compiled_ops(package)
    assert d2_install.describe(package) == (
        f'detectron2 0.6 at {package} (Python sources only, no compiled '
        'ops)')
    (purelib / 'detectron2' / '_C.cpython-311-x86_64-linux-gnu.so').touch()
    assert d2_compat.has_compiled_ops(package)


def test_installer_rejects_unknown_source():
    with pytest.raises(UserError, match='source must be one of'):
        d2_install.install('conda')
