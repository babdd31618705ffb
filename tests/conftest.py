"""Fixtures and hooks shared by every test; what the tests share besides
is in ``tests/helpers``."""
import logging
import shutil
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope

from helpers import ROOT
from helpers.data import make_webvision

# the package of this checkout first
sys.path.insert(0, ROOT)
import mopro  # noqa: E402,F401

# as a Runner does: nested transforms (MultiView) resolve in mmpretrain
init_default_scope('mmpretrain')


def pytest_configure(config) -> None:
    config.addinivalue_line(
        'markers', 'gpu: needs a CUDA device (make test-gpu runs only '
        'these); skipped without one')
    config.addinivalue_line(
        'markers', 'slow: trains through the Runner or launches tools for '
        'minutes; `pytest -m "not slow"` leaves these out')


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the ``gpu`` tests cleanly where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def log_to_a_live_stream():
    """An mmengine logger made in a test that captured ``sys.stdout``
    (``capsys``) writes to that test's stream, closed when it ended: its
    next line would end in a logging error on stderr, in whatever test
    logs next. Such handlers are pointed at the current ``sys.stdout``."""
    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(
                    handler.stream, 'closed', False):
                # (setStream would flush the closed one)
                handler.stream = sys.stdout
    yield


@pytest.fixture(scope='module', autouse=True)
def module_temporaries(request, tmp_path_factory):
    """Remove what a test module left in the base temporary folder once its
    tests are done, unless one of them failed: the folders of its
    module-scoped fixtures (``tmp_path_factory.mktemp``: a trained run, a
    dataset several tests read), which would otherwise stay until the
    session ends, checkpoints included. Each test's own ``tmp_path`` goes
    at the test's end (``tmp_path_retention_policy = failed``, setup.cfg).
    The modules of a process run one after the other, so what appeared
    meanwhile is this module's."""
    basetemp = tmp_path_factory.getbasetemp()
    before = set(basetemp.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(basetemp.iterdir()) - before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture
def webvision_root(tmp_path) -> str:
    return make_webvision(str(tmp_path / 'webvision'))
