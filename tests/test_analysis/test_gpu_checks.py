"""The GPU checks (mopro.analysis.gpu_checks, benchmarks/run_gpu_checks.sh,
tools/misc/gpu_wheels.py): every stage's command line is one its tool
accepts, the goals read the figures where the tools write them, stage
failures and time-outs are reported, the CUDA tests are counted from their
JUnit report, and the wheel folder installs on a machine without network.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile

import pytest

from mopro.analysis.gpu_checks import (SOURCE_PACKAGES, WHEEL_PACKAGES,
                                       GpuCheckSettings, Stage,
                                       constraint_versions, judge_goals,
                                       junit_counts, plan_stages, run_stage)
from mopro.utils.errors import UserError
from helpers import ROOT
from helpers.commands import call_tool, tool_module, user_env

SCRIPT = osp.join(ROOT, 'benchmarks', 'run_gpu_checks.sh')


def test_every_stage_command_is_accepted_by_its_tool(tmp_path):
    stages = plan_stages(GpuCheckSettings(out='x.json'), str(tmp_path))
    assert [s.name for s in stages] == [
        'step_256', 'step_32', 'end_to_end_256', 'end_to_end_32', 'gpu_tests'
    ]
    for stage in stages:
        if stage.junit:
            assert stage.argv[:2] == ['-m', 'pytest'] and '-m' in \
                stage.argv[2:] and 'gpu' in stage.argv
            continue
        args = tool_module(
            stage.argv[0][len('tools/'):-len('.py')]).parse_args(
                stage.argv[1:])
        batch = int(stage.name.rsplit('_', 1)[1])
        assert args.out == stage.out
        if stage.name.startswith('step'):
            assert args.batch_sizes == [batch] and not args.inference
            assert 'compiled' in args.modes
        else:
            assert args.runner and args.batch_size == batch


def test_skip_leaves_stages_out_and_names_unknown_ones(tmp_path):
    settings = GpuCheckSettings(out='x.json', skip=('gpu_tests', 'step_32'))
    names = [s.name for s in plan_stages(settings, str(tmp_path))]
    assert names == ['step_256', 'end_to_end_256', 'end_to_end_32']
    with pytest.raises(UserError, match=r"no stage named \['step_64'\]"):
        plan_stages(GpuCheckSettings(out='x', skip=('step_64', )), 'd')


def test_goals_read_the_committed_h200_figures():
    """The step and end-to-end JSONs measured on an H200 (batch 256)
    judged as the checks judge them: the Runner kept 0.81 of the compiled
    step (goal 0.97), the GPU data path made 1810 img/s (goal 4500). The
    step JSON predates the per-batch layout; it is moved under
    ``by_batch_size["256"]`` as the step benchmark's docstring maps it."""
    bench = osp.join(ROOT, 'benchmarks')
    step = json.load(open(osp.join(bench, 'mopro_step_h200.json')))
    assert step['batch_size'] == 256
    by_batch = {'256': dict(eager=step['eager'], compiled=step['compiled'])}
    stages = dict(
        step_256=dict(result=dict(by_batch_size=by_batch)),
        end_to_end_256=dict(
            result=json.load(open(osp.join(bench, 'data_loading_h200.json')))))
    goals = judge_goals(stages)
    runner = goals['runner_vs_step_compiled_batch_256']
    assert runner['value'] == pytest.approx(3777 / 4659, abs=0.005)
    assert runner['met'] is False and runner['target'] == 0.97
    end = goals['end_to_end_img_per_s_gpu_path_batch_256']
    assert end['value'] == pytest.approx(1810, abs=1) and not end['met']
    cpu = goals['training_process_cpu_ms_per_image_gpu_path_batch_256']
    assert cpu['value'] == pytest.approx(5.4, abs=0.05)
    assert cpu['met'] is False and cpu['comparison'] == 'at most'
    # batch 32 was never measured: no figure, no verdict
    small = goals['step_per_image_rate_batch_32_vs_256']
    assert small['value'] is None and small['met'] is None


def _python_stage(tmp_path, name: str, code: str, timeout: int = 60):
    out = str(tmp_path / f'{name}.json')
    return Stage(name, ['-c', code.replace('OUT', repr(out))], timeout, out)


def test_a_stage_that_writes_its_json_is_ok(tmp_path):
    stage = _python_stage(
        tmp_path, 'good',
        'import json; json.dump({"img_per_s": 12.5}, open(OUT, "w"))')
    entry = run_stage(stage, str(tmp_path))
    assert entry['status'] == 'ok' and entry['result'] == {'img_per_s': 12.5}
    assert 'output_tail' not in entry and entry['seconds'] >= 0


def test_a_failed_stage_keeps_the_end_of_its_output(tmp_path):
    stage = _python_stage(tmp_path, 'bad',
                          'print("warming up"); raise SystemExit("no GPU")')
    entry = run_stage(stage, str(tmp_path))
    assert entry['status'] == 'failed' and 'result' not in entry
    assert 'warming up' in entry['output_tail']
    assert 'no GPU' in entry['output_tail']


def test_a_stage_past_its_limit_is_a_timeout(tmp_path):
    stage = _python_stage(
        tmp_path, 'slow', 'import time; print("started", flush=True); '
        'time.sleep(30)', timeout=2)
    entry = run_stage(stage, str(tmp_path))
    assert entry['status'] == 'timeout' and entry['seconds'] < 20
    assert 'started' in entry['output_tail']


def test_test_counts_come_from_the_junit_report(tmp_path):
    (tmp_path / 'test_probe.py').write_text(
        'import pytest\n'
        'def test_ok():\n    assert True\n'
        'def test_broken():\n    assert 1 == 2\n'
        '@pytest.mark.skip(reason="no CUDA")\n'
        'def test_cuda():\n    pass\n')
    report = str(tmp_path / 'report.xml')
    stage = Stage('tests', [
        '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--rootdir',
        str(tmp_path),
        str(tmp_path / 'test_probe.py'), '--junitxml', report
    ], 120, report, junit=True)
    entry = run_stage(stage, str(tmp_path))
    assert entry['status'] == 'failed'
    assert entry['result'] == dict(passed=1, failed=1, skipped=1,
                                   failures=['test_probe::test_broken'])
    assert junit_counts(report) == entry['result']


def test_every_offline_package_has_a_tested_version():
    versions = constraint_versions(osp.join(ROOT, 'constraints.txt'))
    assert versions['mmengine'] == '0.10.7'
    for package in WHEEL_PACKAGES + SOURCE_PACKAGES:
        assert package in versions, package


def _wheel(folder, name: str) -> str:
    """A minimal pure-Python wheel of a module ``name``."""
    path = osp.join(folder, f'{name}-1.0-py3-none-any.whl')
    info = f'{name}-1.0.dist-info'
    with zipfile.ZipFile(path, 'w') as whl:
        whl.writestr(f'{name}.py', 'VALUE = 42\n')
        whl.writestr(f'{info}/METADATA',
                     f'Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n')
        whl.writestr(
            f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\n'
            'Root-Is-Purelib: true\nTag: py3-none-any\n')
        whl.writestr(f'{info}/RECORD', '')
    return path


@pytest.mark.slow
def test_the_script_installs_the_wheel_folder_offline(tmp_path):
    wheels = tmp_path / 'wheels'
    (wheels / 'site').mkdir(parents=True)
    _wheel(str(wheels), 'gpu_check_probe')
    site, out = tmp_path / 'site', tmp_path / 'checks.json'
    env = dict(user_env(), PYTHON=sys.executable, MOPRO_GPU_SITE=str(site),
               PIP_NO_INDEX='1')
    run = subprocess.run([
        'bash', SCRIPT, '--wheels',
        str(wheels), '--out',
        str(out), '--skip', 'step_256', 'step_32', 'end_to_end_256',
        'end_to_end_32', 'gpu_tests'
    ], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'installed 1 wheels into' in run.stdout
    assert (site / 'gpu_check_probe.py').read_text() == 'VALUE = 42\n'
    results = json.load(open(out))
    assert results['stages'] == {}
    assert all(goal['met'] is None for goal in results['goals'].values())


def test_the_script_refuses_an_empty_wheel_folder(tmp_path):
    env = dict(user_env(), PYTHON=sys.executable,
               MOPRO_GPU_SITE=str(tmp_path / 'site'))
    run = subprocess.run([
        'bash', SCRIPT, '--wheels',
        str(tmp_path), '--out',
        str(tmp_path / 'x.json')
    ], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f'error: no wheels in {tmp_path} (tools/misc/gpu_wheels.py '
        'makes them)')
    assert not os.path.exists(tmp_path / 'x.json')


def test_gpu_wheels_refuses_a_build_python_of_another_version(
        tmp_path, capsys, monkeypatch):
    """Checked before anything is downloaded: the wheels it would build
    would not install on the GPU machine's Python."""
    tool = tool_module('misc/gpu_wheels')
    result = call_tool(tool, [
        str(tmp_path / 'wheels'), '--python-version', '3.12', '--build-python',
        sys.executable
    ], capsys, monkeypatch)
    version = '.'.join(map(str, sys.version_info[:3]))
    assert result.error == (
        f'error: --build-python {sys.executable}: not a CPython 3.12 that '
        f'runs here (found cpython {version}); it builds the wheels of '
        'liblinear-official, fvcore, antlr4-python3-runtime for the GPU '
        'machine')
    assert not os.path.exists(tmp_path / 'wheels')
