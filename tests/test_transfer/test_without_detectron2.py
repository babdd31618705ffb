"""Detectron2 is optional: where it is not installed, the tests that need
it skip, naming the installer, and the others pass (the tools' one-line
hint: tests/test_utils/test_environment.py)."""
import re
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.detectron2_hidden import env_without_detectron2


@pytest.mark.slow
def test_detectron2_tests_skip_without_it(tmp_path):
    env = env_without_detectron2(tmp_path / 'hide')
    env.update(CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    result = subprocess.run([
        sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider',
        f'--basetemp={tmp_path / "basetemp"}',
        'tests/test_transfer/test_detectron2.py',
        'tests/test_transfer/test_install_detectron2.py',
        'tests/test_transfer/test_convert_to_d2.py'
    ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    skipped = sorted(
        re.findall(r'^SKIPPED \[1\] (tests/\S+?):\d+: (.*)$', result.stdout,
                   re.M))
    assert skipped == [
        ('tests/test_transfer/test_detectron2.py',
         'run tools/misc/install_detectron2.py first'),
        ('tests/test_transfer/test_install_detectron2.py',
         'detectron2 is not installed'),
    ], result.stdout[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r'\d+ passed, 2 skipped(, \d+ warnings?)? in .*',
                        summary), summary
    assert int(summary.split()[0]) >= 26  # the installer's and converter's
