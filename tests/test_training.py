"""Pretraining through mmengine's Runner: v1 config, launchers, exact
resume."""
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, tiny_mopro_options
from mmengine.config import Config
from mmengine.runner import Runner

from mopro.utils.checkpoint import load_checkpoint
from mopro.utils.runner import adapt_to_device

V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _options_as_args(options: dict) -> list:
    def fmt(value):
        if isinstance(value, tuple):
            return '[' + ','.join(map(str, value)) + ']'
        return str(value)
    return [f'{k}={fmt(v)}' for k, v in options.items()]


def _cpu_env(**extra) -> dict:
    """Environment of a subprocess that must run on the CPU (2 gloo ranks
    on a one-GPU machine would otherwise take the nccl path), on a machine
    with GPUs as without."""
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', **extra)


def _tiny_cfg(data_root, work_dir, name, **extra) -> Config:
    cfg = Config.fromfile(V1)
    cfg.merge_from_dict(tiny_mopro_options(data_root, work_dir))
    cfg.merge_from_dict(extra)
    cfg.experiment_name = name
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    cfg.launcher = 'none'
    return adapt_to_device(cfg)


def test_v1_config_runs_one_iteration(webvision_root, tmp_path):
    cfg = _tiny_cfg(webvision_root, str(tmp_path / 'work'), 'v1_one_iter')
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
    torch.testing.assert_close(runner.model.queue[:, 4:],
                               queue_before[:, 4:])
    # the paper's ResNet-50 setting was kept, only shrunk by cfg options
    assert runner.cfg.model.momentum == 0.999
    assert runner.cfg.model.threshold == 0.8
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_1.pth'))


def _deterministic_views(cfg: Config) -> None:
    fixed = [dict(type='Resize', scale=(32, 32))]
    cfg.train_dataloader.dataset.pipeline[1].transforms = [fixed, fixed]


def _train(webvision_root, work_dir, name, max_epochs, resume=None,
           compile=False):
    cfg = _tiny_cfg(webvision_root, work_dir, name)
    cfg.model.compile = compile  # after adapt_to_device (off on CPU)
    _deterministic_views(cfg)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = 100
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.custom_hooks = [dict(type='MoProHook', start_proto_epoch=1,
                             start_clean_epoch=1)]
    if resume:
        cfg.resume, cfg.load_from = True, resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_resume_is_exact(webvision_root, tmp_path):
    """N epochs straight == N/2, stop, --resume, N/2 more: weights, momentum
    encoder, queue, pointer, prototypes, optimizer state, lr and phase."""
    straight = _train(webvision_root, str(tmp_path / 'a'), 'straight', 2)
    _train(webvision_root, str(tmp_path / 'b'), 'first_half', 1)
    # the Runner's checkpoint loads under torch's weights-only unpickler
    half = str(tmp_path / 'b' / 'epoch_1.pth')
    assert load_checkpoint(half)['meta']['epoch'] == 1
    resumed = _train(webvision_root, str(tmp_path / 'b'), 'second_half', 2,
                     resume=half)

    assert resumed.epoch == straight.epoch == 2
    model_a, model_b = straight.model, resumed.model
    assert model_b.correct_noise and model_b.use_proto_loss
    assert model_a.prototypes.abs().sum() > 0
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0,
                                   atol=0, msg=key)
    opt_a = straight.optim_wrapper.state_dict()
    opt_b = resumed.optim_wrapper.state_dict()
    assert opt_a['param_groups'][0]['lr'] == opt_b['param_groups'][0]['lr']
    for idx, state in opt_a['state'].items():
        torch.testing.assert_close(state['momentum_buffer'],
                                   opt_b['state'][idx]['momentum_buffer'],
                                   rtol=0, atol=0)


def test_train_tool_resume_auto(webvision_root, tmp_path):
    """tools/train.py --resume continues from the work dir's latest
    checkpoint."""
    work_dir = str(tmp_path / 'work')
    options = tiny_mopro_options(webvision_root, work_dir)
    options.update({'train_cfg.val_interval': 100,
                    'visualizer.vis_backends': None})
    args = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), V1,
            '--cfg-options', *_options_as_args(options),
            'test_dataloader=None', 'test_evaluator=None', 'test_cfg=None']
    env = _cpu_env(PYTHONPATH=ROOT)
    first = subprocess.run(args + ['train_cfg.max_epochs=1'], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(args + ['train_cfg.max_epochs=2', '--resume'],
                            env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    log = second.stdout + second.stderr
    assert 'resumed epoch: 1' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))


@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_dist_train_two_cpu_processes(webvision_root, tmp_path):
    """tools/dist_train.sh with 2 processes (gloo) trains and checkpoints."""
    work_dir = str(tmp_path / 'work')
    options = tiny_mopro_options(webvision_root, work_dir)
    options.update({'train_cfg.max_epochs': 1,
                    'visualizer.vis_backends': None})
    env = _cpu_env(PYTHON=sys.executable, PORT='29517', OMP_NUM_THREADS='1')
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), V1, '2',
         '--cfg-options', *_options_as_args(options), 'test_dataloader=None',
         'test_evaluator=None', 'test_cfg=None'],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    # 32 images, 2 ranks x 4 per batch: 4 iterations (1 process: 8), and the
    # queue received the keys of both ranks: 4 x 8 = 32 = R, back at 0
    assert ckpt['meta']['iter'] == 4
    assert int(ckpt['state_dict']['queue_ptr']) == 0


@pytest.mark.skipif(sys.platform != 'linux', reason='torchrun on linux')
def test_worker_crash_on_one_rank_stops_every_rank(webvision_root, tmp_path):
    """A dataloader-worker crash on rank 1 ends the whole job with an error
    (torchrun tears the group down; collectives also have a timeout) instead
    of leaving rank 0 waiting in a collective."""
    # rank 1 reads indices 1, 3, ... without shuffling; index 1 is broken
    open(osp.join(webvision_root, 'google/q0000/001.jpg'), 'wb').close()
    work_dir = str(tmp_path / 'work')
    options = tiny_mopro_options(webvision_root, work_dir)
    options.update({'train_cfg.max_epochs': 1,
                    'train_dataloader.num_workers': 1,
                    'train_dataloader.sampler.shuffle': False,
                    'train_dataloader.dataset.max_refetch': 0,
                    'env_cfg.dist_cfg.timeout': 60,
                    'visualizer.vis_backends': None})
    env = _cpu_env(PYTHON=sys.executable, PORT='29533', OMP_NUM_THREADS='1')
    start = time.monotonic()
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), V1, '2',
         '--cfg-options', *_options_as_args(options), 'test_dataloader=None',
         'test_evaluator=None', 'test_cfg=None'],
        env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode != 0
    assert time.monotonic() - start < 240
    log = result.stdout + result.stderr
    assert 'Cannot find valid image' in log
    assert not osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


KILL_CONFIG = '''\
_base_ = [{base!r}]
# fixed views: the resumed run must see the images the straight run saw
fixed = [dict(type='Resize', scale=(32, 32))]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadWebImage'),
    dict(type='MultiView', num_views=[1, 1], transforms=[fixed, fixed]),
    dict(type='PackInputs', meta_keys=['sample_idx', 'img_path']),
]))
randomness = dict(seed=0, deterministic=True)
custom_hooks = [dict(type='MoProHook', start_proto_epoch=1,
                     start_clean_epoch=1)]
'''


@pytest.mark.parametrize('device', [
    'cpu', pytest.param('cuda', marks=pytest.mark.gpu)])
def test_kill_and_resume_continues_exactly(webvision_root, tmp_path, device):
    """tools/train.py killed with SIGKILL in the middle of epoch 2, then
    ``--resume``d, ends with the same weights, momentum encoder, queue,
    pointer, prototypes and optimizer state as an uninterrupted run, to the
    bit. On CUDA with the config's bf16 AmpOptimWrapper (deterministic
    algorithms, as ``randomness.deterministic`` asks)."""
    base = tmp_path / 'tiny.py'
    base.write_text(KILL_CONFIG.format(base=V1))
    killed = tmp_path / 'killed.py'
    killed.write_text(
        f'_base_ = [{str(base)!r}]\n'
        "custom_imports = dict(imports=['mopro', 'kill_hook'])\n"
        'custom_hooks = [dict(type="MoProHook", start_proto_epoch=1, '
        'start_clean_epoch=1), dict(type="KillAtIter", iteration=11)]\n')
    env = (_cpu_env() if device == 'cpu' else dict(
        os.environ, CUBLAS_WORKSPACE_CONFIG=':4096:8'))
    env['PYTHONPATH'] = osp.dirname(osp.abspath(__file__))

    def train(config, work_dir, *extra):
        options = tiny_mopro_options(webvision_root, str(work_dir))
        options.update({'train_cfg.max_epochs': 2,
                        'train_cfg.val_interval': 100,
                        'visualizer.vis_backends': None})
        return subprocess.Popen(
            [sys.executable, osp.join(ROOT, 'tools', 'train.py'),
             str(config), '--cfg-options', *_options_as_args(options),
             'test_dataloader=None', 'test_evaluator=None', 'test_cfg=None',
             *extra], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    # 32 images, 4 per batch: 8 iterations per epoch; killed before
    # iteration 11, i.e. in the middle of the second epoch
    runs = [train(base, tmp_path / 'straight'),
            train(killed, tmp_path / 'b')]
    logs = [run.communicate(timeout=600)[0] for run in runs]
    assert runs[0].returncode == 0, logs[0][-3000:]
    assert runs[1].returncode == -9, logs[1][-3000:]
    assert not osp.exists(tmp_path / 'b' / 'epoch_2.pth')
    resumed = train(base, tmp_path / 'b', '--resume')
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log[-3000:]
    assert 'resumed epoch: 1' in log
    on_cpu = 'no CUDA device: training in float32' in log
    assert on_cpu == (device == 'cpu')

    straight = load_checkpoint(str(tmp_path / 'straight' / 'epoch_2.pth'))
    again = load_checkpoint(str(tmp_path / 'b' / 'epoch_2.pth'))
    assert again['meta']['iter'] == straight['meta']['iter'] == 16
    state_a, state_b = straight['state_dict'], again['state_dict']
    assert state_a.keys() == state_b.keys()
    assert state_a['prototypes'].abs().sum() > 0  # noise correction ran
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=0,
                                   atol=0, msg=key)
    opt_a, opt_b = straight['optimizer'], again['optimizer']
    for idx, state in opt_a['state'].items():
        torch.testing.assert_close(opt_b['state'][idx]['momentum_buffer'],
                                   state['momentum_buffer'], rtol=0, atol=0)
