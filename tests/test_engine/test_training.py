"""Pretraining through mmengine's Runner: v1 config, launchers, exact
resume."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Optional

import pytest
import torch
from mmengine.runner import Runner

from mopro.checkpoint import load_checkpoint
from helpers import ROOT
from helpers.commands import launcher_env, user_env
from helpers.configs import tiny_mopro_options
from helpers.data import make_webvision
from helpers.training import V1, tiny_v1_cfg, train_v1


def _options_as_args(options: dict) -> list:

    def fmt(value):
        if isinstance(value, tuple):
            return '[' + ','.join(map(str, value)) + ']'
        return str(value)

    return [f'{k}={fmt(v)}' for k, v in options.items()]


def test_v1_config_runs_one_iteration(webvision_root, tmp_path):
    cfg = tiny_v1_cfg(webvision_root, str(tmp_path / 'work'), 'v1_one_iter')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1,
                         val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        by_epoch=False)
    runner = Runner.from_cfg(cfg)
    queue_before = runner.model.queue.clone()
    runner.train()
    assert int(runner.model.queue_ptr) == 4
    assert not torch.equal(runner.model.queue[:, :4], queue_before[:, :4])
    torch.testing.assert_close(runner.model.queue[:, 4:], queue_before[:, 4:])
    # the paper's ResNet-50 setting was kept, only shrunk by cfg options
    assert runner.cfg.model.momentum == 0.999
    assert runner.cfg.model.threshold == 0.8
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_1.pth'))


@pytest.mark.slow
def test_resume_is_exact(webvision_root, tmp_path):
    """N epochs straight == N/2, stop, --resume, N/2 more: weights, momentum
    encoder, queue, pointer, prototypes, optimizer state, lr and phase.
    Random views loaded in the process, three Runners one after the other
    in it."""
    straight = train_v1(webvision_root, str(tmp_path / 'a'), 'straight', 2)
    shutil.rmtree(tmp_path / 'a')  # compared from the Runner, in memory
    train_v1(webvision_root, str(tmp_path / 'b'), 'first_half', 1)
    # the Runner's checkpoint loads under torch's weights-only unpickler
    half = str(tmp_path / 'b' / 'epoch_1.pth')
    assert load_checkpoint(half)['meta']['epoch'] == 1
    resumed = train_v1(webvision_root, str(tmp_path / 'b'), 'second_half', 2,
                       resume=half)

    assert resumed.epoch == straight.epoch == 2
    model_a, model_b = straight.model, resumed.model
    assert model_b.correct_noise and model_b.use_proto_loss
    assert model_a.prototypes.abs().sum() > 0
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0,
                                   msg=key)
    opt_a = straight.optim_wrapper.state_dict()
    opt_b = resumed.optim_wrapper.state_dict()
    assert opt_a['param_groups'][0]['lr'] == opt_b['param_groups'][0]['lr']
    for idx, state in opt_a['state'].items():
        torch.testing.assert_close(state['momentum_buffer'],
                                   opt_b['state'][idx]['momentum_buffer'],
                                   rtol=0, atol=0)


def _dist_train_v1(
        data_root: str, work_dir: str,
        options: Optional[dict] = None) -> subprocess.CompletedProcess:
    """tools/dist_train.sh on the v1 config shrunk by tiny_mopro_options
    (one epoch, no test loop), ``options`` merged: 2 CPU processes."""
    merged = tiny_mopro_options(data_root, work_dir)
    merged.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None,
        **(options or {})
    })
    return subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), V1, '2', '--cfg-options',
        *_options_as_args(merged), 'test_dataloader=None',
        'test_evaluator=None', 'test_cfg=None'
    ], env=launcher_env(), capture_output=True, text=True, timeout=280)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_dist_train_two_cpu_processes(webvision_root, tmp_path):
    """tools/dist_train.sh with 2 processes (gloo) trains and checkpoints."""
    work_dir = str(tmp_path / 'work')
    result = _dist_train_v1(webvision_root, work_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    # 32 images, 2 ranks x 4 per batch: 4 iterations (1 process: 8), and the
    # queue received the keys of both ranks: 4 x 8 = 32 = R, back at 0
    assert ckpt['meta']['iter'] == 4
    assert int(ckpt['state_dict']['queue_ptr']) == 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_worker_crash_on_one_rank_stops_every_rank(webvision_root, tmp_path):
    """A dataloader-worker crash on rank 1 ends the whole job with an error
    (torchrun tears the group down; collectives also have a timeout) instead
    of leaving rank 0 waiting in a collective."""
    # rank 1 reads indices 1, 3, ... without shuffling; index 1 is broken
    open(osp.join(webvision_root, 'google/q0000/001.jpg'), 'wb').close()
    work_dir = str(tmp_path / 'work')
    start = time.monotonic()
    result = _dist_train_v1(
        webvision_root, work_dir, {
            'train_dataloader.num_workers': 1,
            'train_dataloader.sampler.shuffle': False,
            'train_dataloader.dataset.max_refetch': 0,
            'env_cfg.dist_cfg.timeout': 60
        })
    assert result.returncode != 0
    assert time.monotonic() - start < 240
    log = result.stdout + result.stderr
    assert 'Cannot find valid image' in log
    assert not osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_dist_train_refuses_a_global_batch_above_the_queue(
        webvision_root, tmp_path):
    """A batch of 4 fits a queue of 4 on one process, not on the 2 that
    dist_train.sh starts: a rank says so in one line before its Runner is
    built (no work dir, no log folder, no process group). Both ranks check;
    torchrun stops the other as soon as one exits, so on a loaded machine
    only the first may get to print."""
    work_dir = tmp_path / 'work'
    result = _dist_train_v1(webvision_root, str(work_dir),
                            {'model.queue_len': 4})
    assert result.returncode != 0
    message = ('error: model.queue_len=4 is smaller than the global batch 8 '
               '(train_dataloader.batch_size=4 x 2 process(es)): MoPro '
               'enqueues every batch')
    assert result.stderr.splitlines().count(message) in (1, 2), \
        result.stderr
    assert not work_dir.exists()


# Kill and resume through tools/train.py, as users meet it: the v1 configs
# shrunk by tiny_mopro_options (random crops, flips, colour jitter), workers
# as configured. 32 images, 4 per batch: 8 iterations per epoch, 2 epochs.
GPU_DATA = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1_gpu_data.py')
PERSISTENT = {
    'train_dataloader.num_workers': 2,
    'train_dataloader.persistent_workers': True
}
NON_PERSISTENT = {
    'train_dataloader.num_workers': 2,
    'train_dataloader.persistent_workers': False
}
IN_PROCESS = {
    'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False
}
KILL_MID_EPOCH_2 = "dict(type='KillAtIter', iteration=11)"
KILL_SAVING_EPOCH_2 = "dict(type='KillDuringSave', epoch=2)"


def _resume_config(tmp, name, base, *hooks) -> str:
    """``base`` with a fixed seed, MoPro's phases from epoch 1 (noise
    correction runs in epoch 2) and ``hooks`` (tests/helpers/kill_hook.py)."""
    path = tmp / f'{name}.py'
    path.write_text(
        f'_base_ = [{base!r}]\n'
        "custom_imports = dict(imports=['mopro', 'helpers.kill_hook'])\n"
        'randomness = dict(seed=0, deterministic=True)\n'
        "custom_hooks = [dict(type='MoProHook', start_proto_epoch=1, "
        f"start_clean_epoch=1), {', '.join(hooks)}]\n")
    return str(path)


def _tiny_gpu_data_options(data_root, work_dir) -> dict:
    """tiny_mopro_options for the GPU data path config: its views are made
    by the data preprocessor (32 px, eager), not by the pipeline."""
    options = {
        k: v
        for k, v in tiny_mopro_options(data_root, work_dir).items()
        if not k.startswith('train_dataloader.dataset.pipeline')
    }
    options.update({
        'model.data_preprocessor.crop_size': 32,
        'model.data_preprocessor.compile_views': False
    })
    return options


def _launch(config, work_dir, options, *extra, device='cpu', umask=None):
    """tools/train.py in a subprocess, 2 epochs, output in ``.log``."""
    options = dict(
        options, **{
            'train_cfg.max_epochs': 2,
            'train_cfg.val_interval': 100,
            'visualizer.vis_backends': None,
            'default_hooks.checkpoint.max_keep_ckpts': 1,
        })
    env = (
        user_env() if device == 'cpu' else dict(
            os.environ, CUBLAS_WORKSPACE_CONFIG=':4096:8'))
    # the tree under test, and tests/ for helpers.kill_hook
    env.update(
        PYTHONPATH=os.pathsep.join(
            filter(None,
                   [ROOT, osp.join(ROOT, 'tests'),
                    env.get('PYTHONPATH')])), OMP_NUM_THREADS='1')
    return subprocess.Popen([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        str(config), '--cfg-options', *_options_as_args(options),
        'test_dataloader=None', 'test_evaluator=None', 'test_cfg=None', *extra
    ], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=None if umask is None else
                            (lambda: os.umask(umask)))


def _finish(runs: dict, results: dict) -> None:
    for name, run in runs.items():
        results[name] = (run.communicate(timeout=900)[0], run.returncode)


def _listing(directory) -> list:
    """The checkpoints, their temporaries and the pointer in a work dir."""
    return sorted(
        n for n in os.listdir(directory)
        if n.endswith(('.pth', '.tmp')) or n == 'last_checkpoint')


class ResumeRuns:
    """The runs the kill-and-resume tests share (see ``resume_runs``)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.results = {}
        self.after_kill = {}

    def dir(self, name):
        return self.tmp / name

    def log(self, name):
        return self.results[name][0]

    def returncode(self, name):
        return self.results[name][1]

    def epoch_2(self, name):
        return load_checkpoint(str(self.tmp / name / 'epoch_2.pth'))


@pytest.fixture(scope='module')
def resume_runs(tmp_path_factory):
    """Kill-and-resume runs through tools/train.py, on the CPU:

    - ``straight``: 2 epochs with 2 persistent workers, launched with
      ``--resume`` in an empty work dir;
    - ``killed``: 2 persistent workers, SIGKILLed in the middle of epoch 2,
      then resumed with ``--resume`` (2 persistent workers);
    - ``saving``: 2 non-persistent workers, umask 027, SIGKILLed while it
      saves epoch 2 with ``max_keep_ckpts=1``, then resumed with ``--resume``
      and loading in the process;
    - ``gpu_straight`` / ``gpu_killed``: the GPU data path config (views in
      the data preprocessor, on the CPU here), 2 persistent workers, straight
      and killed in the middle of epoch 2; the killed run's
      ``last_checkpoint`` is then emptied (as mmengine's non-atomic write
      leaves it when killed) and the run resumed.
    """
    tmp = tmp_path_factory.mktemp('resume')
    root = make_webvision(str(tmp / 'webvision'))
    runs = ResumeRuns(tmp)
    plain = _resume_config(tmp, 'plain', V1)
    gpu_plain = _resume_config(tmp, 'gpu_plain', GPU_DATA)

    def options(name, loader, gpu_data=False):
        tiny = _tiny_gpu_data_options if gpu_data else tiny_mopro_options
        return dict(tiny(root, str(tmp / name)), **loader)

    _finish(
        {
            'straight':
            _launch(plain, tmp / 'straight', options('straight', PERSISTENT),
                    '--resume'),
            'killed':
            _launch(
                _resume_config(tmp, 'killed', V1, KILL_MID_EPOCH_2),
                tmp / 'killed', options('killed', PERSISTENT)),
            'saving':
            _launch(
                _resume_config(tmp, 'saving', V1, KILL_SAVING_EPOCH_2), tmp /
                'saving', options('saving', NON_PERSISTENT), umask=0o027),
            'gpu_straight':
            _launch(gpu_plain, tmp / 'gpu_straight',
                    options('gpu_straight', PERSISTENT, gpu_data=True)),
            'gpu_killed':
            _launch(
                _resume_config(tmp, 'gpu_killed', GPU_DATA, KILL_MID_EPOCH_2),
                tmp / 'gpu_killed',
                options('gpu_killed', PERSISTENT, gpu_data=True)),
        }, runs.results)
    for name in ('killed', 'saving', 'gpu_killed'):
        pointer = tmp / name / 'last_checkpoint'
        runs.after_kill[name] = dict(
            listing=_listing(tmp / name),
            pointer=pointer.read_text() if pointer.exists() else None)
    (tmp / 'gpu_killed' / 'last_checkpoint').write_text('')
    _finish(
        {
            'killed_resumed':
            _launch(plain, tmp / 'killed', options('killed', PERSISTENT),
                    '--resume'),
            'saving_resumed':
            _launch(plain, tmp / 'saving', options('saving', IN_PROCESS),
                    '--resume', umask=0o027),
            'gpu_killed_resumed':
            _launch(gpu_plain, tmp / 'gpu_killed',
                    options('gpu_killed', PERSISTENT, gpu_data=True),
                    '--resume'),
        }, runs.results)
    return runs


def _assert_same_training_state(again: dict, straight: dict) -> None:
    """Weights, momentum encoder, queue, pointer, prototypes and optimizer
    state equal to the bit."""
    assert again['meta']['iter'] == straight['meta']['iter'] == 16
    state_a, state_b = straight['state_dict'], again['state_dict']
    assert state_a.keys() == state_b.keys()
    assert state_a['prototypes'].abs().sum() > 0  # noise correction ran
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=0, atol=0,
                                   msg=key)
    opt_a, opt_b = straight['optimizer'], again['optimizer']
    for idx, state in opt_a['state'].items():
        torch.testing.assert_close(opt_b['state'][idx]['momentum_buffer'],
                                   state['momentum_buffer'], rtol=0, atol=0)


@pytest.mark.slow
def test_resume_in_an_empty_work_dir_starts_from_epoch_1(resume_runs):
    log = resume_runs.log('straight')
    assert resume_runs.returncode('straight') == 0, log[-3000:]
    work_dir = resume_runs.dir('straight')
    assert f'no checkpoint in {work_dir}: starting from epoch 1' in log
    assert 'resumed epoch' not in log
    assert _listing(work_dir) == ['epoch_2.pth', 'last_checkpoint']


@pytest.mark.slow
def test_resume_with_persistent_workers_is_exact(resume_runs):
    """Killed in the middle of epoch 2 and resumed from epoch 1's
    checkpoint: the same state as the straight run, whose persistent
    workers carried on from epoch 1 to 2."""
    assert resume_runs.returncode('killed') == -9
    assert resume_runs.after_kill['killed']['listing'] == [
        'epoch_1.pth', 'last_checkpoint'
    ]
    log = resume_runs.log('killed_resumed')
    assert resume_runs.returncode('killed_resumed') == 0, log[-3000:]
    assert 'resumed epoch: 1' in log
    _assert_same_training_state(
        resume_runs.epoch_2('killed'), resume_runs.epoch_2('straight'))


@pytest.mark.slow
def test_empty_last_checkpoint_resumes_the_newest_checkpoint(resume_runs):
    log = resume_runs.log('gpu_killed_resumed')
    assert resume_runs.returncode('gpu_killed_resumed') == 0, log[-3000:]
    work_dir = resume_runs.dir('gpu_killed')
    assert (f'{work_dir}/last_checkpoint is empty: resuming from the newest '
            f'complete checkpoint, {work_dir}/epoch_1.pth') in log
    assert 'resumed epoch: 1' in log


@pytest.mark.slow
def test_kill_while_saving_keeps_the_previous_checkpoint(resume_runs):
    """SIGKILL while epoch 2's checkpoint is being written, with
    ``max_keep_ckpts=1``: epoch 1's checkpoint and the pointer to it
    remain; the resumed run removes the temporary file, and epoch 1's
    checkpoint only once epoch 2's is complete. Files get the umask's
    permissions (027: 0640)."""
    assert resume_runs.returncode('saving') == -9
    after_kill = resume_runs.after_kill['saving']
    listing = after_kill['listing']
    assert len(listing) == 3, listing
    assert listing[0].startswith('.epoch_2.pth.'), listing
    assert listing[0].endswith('.tmp'), listing
    assert listing[1:] == ['epoch_1.pth', 'last_checkpoint'], listing
    work_dir = resume_runs.dir('saving')
    assert after_kill['pointer'] == f'{work_dir}/epoch_1.pth'

    log = resume_runs.log('saving_resumed')
    assert resume_runs.returncode('saving_resumed') == 0, log[-3000:]
    assert 'resumed epoch: 1' in log
    assert ('removed the temporary file of an interrupted save: '
            f'{work_dir}/{listing[0]}') in log
    assert _listing(work_dir) == ['epoch_2.pth', 'last_checkpoint']
    assert (work_dir / 'last_checkpoint').read_text() == \
        f'{work_dir}/epoch_2.pth'
    for name in ('epoch_2.pth', 'last_checkpoint'):
        assert os.stat(work_dir / name).st_mode & 0o777 == 0o640, name


@pytest.mark.slow
def test_resume_loading_in_process_is_exact(resume_runs):
    """Epoch 1 with 2 non-persistent workers, epoch 2 (resumed) loaded in
    the process == 2 epochs with 2 persistent workers: the views depend on
    the seed, the epoch and the sample's position only."""
    log = resume_runs.log('saving_resumed')
    assert resume_runs.returncode('saving_resumed') == 0, log[-3000:]
    _assert_same_training_state(
        resume_runs.epoch_2('saving'), resume_runs.epoch_2('straight'))


@pytest.mark.slow
def test_gpu_data_path_resume_is_exact(resume_runs):
    """configs/mopro_r50_webvision_v1_gpu_data.py (views drawn by the data
    preprocessor, here on the CPU) resumes exactly too."""
    for name in ('gpu_straight', 'gpu_killed_resumed'):
        log = resume_runs.log(name)
        assert resume_runs.returncode(name) == 0, log[-3000:]
    assert resume_runs.returncode('gpu_killed') == -9
    assert 'resumed epoch: 1' in resume_runs.log('gpu_killed_resumed')
    _assert_same_training_state(
        resume_runs.epoch_2('gpu_killed'), resume_runs.epoch_2('gpu_straight'))


@pytest.mark.slow
@pytest.mark.gpu
def test_kill_and_resume_on_cuda_is_exact(webvision_root, tmp_path):
    """On CUDA with the config's bf16 AmpOptimWrapper (deterministic
    algorithms, as ``randomness.deterministic`` asks), random views, 2
    persistent workers: killed in the middle of epoch 2 and resumed, the
    same state as a straight run, to the bit."""
    plain = _resume_config(tmp_path, 'plain', V1)
    killed = _resume_config(tmp_path, 'killed', V1, KILL_MID_EPOCH_2)

    def options(name):
        return dict(
            tiny_mopro_options(webvision_root, str(tmp_path / name)),
            **PERSISTENT)

    results = {}
    _finish(
        {
            'straight': _launch(plain, tmp_path / 'a', options('a'),
                                device='cuda'),
            'killed': _launch(killed, tmp_path / 'b', options('b'),
                              device='cuda')
        }, results)
    assert results['straight'][1] == 0, results['straight'][0][-3000:]
    assert results['killed'][1] == -9, results['killed'][0][-3000:]
    _finish(
        {
            'resumed':
            _launch(plain, tmp_path / 'b', options('b'), '--resume',
                    device='cuda')
        }, results)
    log, returncode = results['resumed']
    assert returncode == 0, log[-3000:]
    assert 'resumed epoch: 1' in log
    assert 'no CUDA device' not in log
    _assert_same_training_state(
        load_checkpoint(str(tmp_path / 'b' / 'epoch_2.pth')),
        load_checkpoint(str(tmp_path / 'a' / 'epoch_2.pth')))
