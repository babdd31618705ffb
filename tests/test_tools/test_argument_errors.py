"""Bad command-line arguments through the tools as users run them (a
process per command, side by side): argparse's usage error, exit status 2,
naming the argument, before any model, data or output is made; the
launcher scripts' usage line, before any process is launched; and the
command the Slurm launchers hand to srun (dist_train.sh and dist_test.sh
are run with torchrun in test_training.py and test_distributed_tools.py).
"""
import os
import os.path as osp
import subprocess

import pytest

from helpers import ROOT
from helpers.commands import run_tools

DEMO = osp.join(ROOT, 'configs', 'mopro_r18_demo.py')

# Arguments that used to end in a traceback after the models were built, or
# in output with exit 0 (a negative --test-per-class made a demo dataset);
# the processes see no GPU (``helpers.commands.user_env``).
BAD_ARGUMENTS = {
    'gpu_is_no_device': ('analysis_tools/benchmark', 'CONFIG', '--device',
                         'gpu', "'gpu': expected cpu, cuda or cuda:N"),
    'no_cuda_here': ('svm_eval', '--dataset', 'voc07', '--device', 'cuda',
                     'cuda: this process sees no CUDA device'),
    'zero_iterations': ('analysis_tools/benchmark', 'CONFIG', '--iters', '0',
                        '0: must be at least 1'),
    'negative_workers': ('noise_cleaning', 'CONFIG', 'CKPT', '--out', 'OUT',
                         '--num-workers', '-1', '-1: must be at least 0'),
    'negative_seed': ('dataset_converters/folder_to_lists', 'OUT', '--seed',
                      '-1', '-1: must be at least 0'),
    'zero_shard_size':
    ('dataset_converters/lists_to_shards', 'folder', 'OUT', '--out', 'OUT',
     '--shard-mb', '0', '0: must be above 0'),
    'prefix_with_a_space':
    ('dataset_converters/lists_to_shards', 'folder', 'OUT', '--out', 'OUT',
     '--prefix', 'my shards',
     "'my shards': use letters, digits, \".\", \"_\" and \"-\""),
    'negative_test_images':
    ('dataset_converters/make_demo_dataset', '--out', 'OUT',
     '--test-per-class', '-1', '-1: must be at least 1'),
    'zero_epochs':
    ('run_demo', '--out-dir', 'OUT', '--epochs', '0', '0: must be at least 1'),
}


@pytest.fixture(scope='module')
def bad_arguments(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('arguments')
    names = {
        'CONFIG': osp.join(ROOT, 'configs', 'mopro_r18_demo.py'),
        'CKPT': str(tmp / 'absent.pth'),
        'OUT': str(tmp / 'out'),
    }
    commands = [[names.get(a, a) for a in case[:-1]]
                for case in BAD_ARGUMENTS.values()]
    return tmp, dict(zip(BAD_ARGUMENTS, run_tools(commands)))


@pytest.mark.slow
@pytest.mark.parametrize('case', BAD_ARGUMENTS)
def test_bad_arguments_end_the_tool_as_it_starts(bad_arguments, case):
    """argparse's usage error (exit 2, the argument and why) before any
    model, data or output is made."""
    tmp, results = bad_arguments
    tool, *args, message = BAD_ARGUMENTS[case]
    flag = next(a for a in reversed(args) if a.startswith('--'))
    result = results[case]
    assert result.code == 2, result
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'{osp.basename(tool)}.py: error: argument {flag}: {message}')
    assert not osp.exists(tmp / 'out')


@pytest.mark.parametrize(
    'script, args, message',
    [
        ('dist_train.sh', ['CONFIG'], 'usage: {script} CONFIG GPUS'),
        ('dist_train.sh', ['CONFIG', 'eight'],
         "{script}: GPUS must be a positive integer, got 'eight'"),
        ('dist_train.sh', ['CONFIG', '0'],
         "{script}: GPUS must be a positive integer, got '0'"),
        ('dist_test.sh', ['CONFIG', 'CKPT'
                          ], 'usage: {script} CONFIG CKPT GPUS'),
        ('dist_test.sh', ['CONFIG', 'CKPT', '-1'],
         "{script}: GPUS must be a positive integer, got '-1'"),
        ('slurm_test.sh', ['PARTITION', 'JOB', 'CONFIG'],
         'usage: {script} PARTITION JOB_NAME CONFIG CKPT'),
        ('slurm_train.sh', ['PARTITION', 'JOB', 'CONFIG'],
         'usage: {script} PARTITION JOB_NAME CONFIG WORK_DIR'),
        # a config or checkpoint that is no file (torchrun used to start every
        # rank, each ending in a traceback, then its ChildFailedError)
        ('dist_train.sh', ['missing.py', '2'
                           ], "{script}: CONFIG 'missing.py': no such file"),
        ('dist_test.sh', [DEMO, 'missing.pth', '2'
                          ], "{script}: CKPT 'missing.pth': no such file"),
        ('slurm_train.sh', ['PARTITION', 'JOB', 'missing.py', 'WORK_DIR'
                            ], "{script}: CONFIG 'missing.py': no such file"),
        ('slurm_test.sh', ['PARTITION', 'JOB', DEMO, 'missing.pth'
                           ], "{script}: CKPT 'missing.pth': no such file"),
    ])
def test_launchers_print_their_usage(script, args, message, tmp_path):
    """A missing or bad launcher argument: one line and exit status 2,
    before any process is launched (it was ``$2: unbound variable``)."""
    path = osp.join(ROOT, 'tools', script)
    result = subprocess.run(['bash', path, *args], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ''
    assert result.stderr.count('\n') == 1
    assert result.stderr.startswith(message.format(script=path))


@pytest.mark.parametrize('script, tool, tool_args', [
    ('slurm_train.sh', 'train.py', ['my config.py', '--work-dir=work dir']),
    ('slurm_test.sh', 'test.py', ['my config.py', 'work dir']),
])
def test_slurm_launchers_build_the_srun_command(script, tool, tool_args,
                                                tmp_path):
    """The Slurm launchers as on a cluster, with an ``srun`` on PATH that
    records what it is given: the job's shape from GPUS, GPUS_PER_NODE and
    CPUS_PER_TASK, SRUN_ARGS split into words, then the tool with its
    arguments (train.py: the work dir as --work-dir), the slurm launcher
    and the extra arguments unchanged."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    srun.chmod(0o755)
    (tmp_path / 'my config.py').write_text('')
    (tmp_path / 'work dir').write_text('')  # slurm_test.sh: the checkpoint
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='6',
               SRUN_ARGS='--quotatype=auto --time=1-00:00:00', PYTHON='py')
    result = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools',
                 script), 'gpu-part', 'mopro v1', 'my config.py', 'work dir',
        '--cfg-options', 'model.threshold=0.6', '--flag'
    ], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '-p', 'gpu-part', '--job-name=mopro v1', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=6', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=1-00:00:00', 'py', '-u',
        osp.join(ROOT, 'tools', tool), *tool_args, '--launcher=slurm',
        '--cfg-options', 'model.threshold=0.6', '--flag'
    ]
