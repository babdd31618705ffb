"""``import mopro`` applies every library patch through one idempotent
``setup_environment()`` (mopro.environment)."""
import copyreg
import os
import subprocess
import sys
import warnings

import torch
from mmengine.logging import HistoryBuffer

import mopro
from mopro.checkpoint.io import SAFE_GLOBALS
from helpers import ROOT


def _state() -> tuple:
    return (list(warnings.filters), list(sys.meta_path),
            dict(copyreg.dispatch_table),
            list(torch.serialization.get_safe_globals()))


def test_import_applied_every_patch():
    assert sys.modules['mmpretrain.utils.dependency'].WITH_MULTIMODAL is \
        False
    safe = torch.serialization.get_safe_globals()
    assert all(g in safe for g in SAFE_GLOBALS)
    buffer = HistoryBuffer([1.0, 2.0], [1, 1], max_length=5)
    reducer = copyreg.dispatch_table[HistoryBuffer]
    assert reducer(buffer) == (HistoryBuffer, ([1.0, 2.0], [1, 1], 5))


def test_setup_environment_is_idempotent():
    before = _state()
    mopro.setup_environment()
    mopro.setup_environment()
    assert _state() == before


def test_import_silences_mmcv_ops_warning():
    # mmcv-lite warns at import that its compiled ops are missing
    env = dict(os.environ, PYTHONPATH=ROOT)
    code = 'import mopro, mmpretrain.models'
    result = subprocess.run([sys.executable, '-c', code], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'MultiScaleDeformableAttention' not in result.stderr
