"""MoProHook: training phases derived from ``runner.epoch`` (0-based).

Released ``train.py``: prototype loss from epoch > 0, noise correction from
``start_clean_epoch`` (11). The phase is a function of the epoch only, so
a resumed run is in the right phase.
"""
import types

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from mopro.engine import MoProHook
from mopro.utils.errors import ConfigError
from helpers.configs import tiny_mopro_cfg


def fake_runner(model, epoch: int):
    return types.SimpleNamespace(
        model=model, epoch=epoch,
        logger=MMLogger.get_instance('test_mopro_hook'),
        message_hub=MessageHub.get_instance('test_mopro_hook'))


class FakeMoPro:
    use_proto_loss = None
    correct_noise = None


@pytest.mark.parametrize('epoch, proto, clean', [(0, False, False),
                                                 (1, True, False),
                                                 (10, True, False),
                                                 (11, True, True),
                                                 (12, True, True),
                                                 (89, True, True)])
def test_default_schedule(epoch, proto, clean):
    model = FakeMoPro()
    MoProHook().before_train_epoch(fake_runner(model, epoch))
    assert (model.use_proto_loss, model.correct_noise) == (proto, clean)


@pytest.mark.parametrize('epoch, proto, clean', [(0, True, False),
                                                 (2, True, False),
                                                 (3, True, True)])
def test_custom_start_epochs(epoch, proto, clean):
    hook = MoProHook(start_proto_epoch=0, start_clean_epoch=3)
    assert hook.phase(epoch) == dict(use_proto_loss=proto, correct_noise=clean)
    model = FakeMoPro()
    hook.before_train_epoch(fake_runner(model, epoch))
    assert (model.use_proto_loss, model.correct_noise) == (proto, clean)


def test_resumed_epoch_is_not_sticky():
    # a run resumed at epoch 12 is cleaning from its first epoch; the flags
    # follow the epoch both ways
    model = FakeMoPro()
    hook = MoProHook()
    hook.before_train_epoch(fake_runner(model, 12))
    assert model.use_proto_loss and model.correct_noise
    hook.before_train_epoch(fake_runner(model, 0))
    assert not model.use_proto_loss and not model.correct_noise


def test_real_mopro_and_wrapped_model():
    from mmpretrain.registry import MODELS
    model = MODELS.build(tiny_mopro_cfg(queue_len=8))
    assert (model.use_proto_loss, model.correct_noise) == (False, False)
    wrapped = torch.nn.DataParallel(model)  # a registered model wrapper
    MoProHook().before_train_epoch(fake_runner(wrapped, 11))
    assert (model.use_proto_loss, model.correct_noise) == (True, True)


def test_rejects_other_models_and_negative_epochs():
    with pytest.raises(
            ConfigError, match='MoProHook needs a MoPro model, '
            'got model.type=Linear'):
        MoProHook().before_train_epoch(fake_runner(torch.nn.Linear(2, 2), 0))
    with pytest.raises(
            ConfigError, match=r'MoProHook.start_clean_epoch must '
            r'be >= 0, got -1'):
        MoProHook(start_clean_epoch=-1)
    with pytest.raises(
            ConfigError, match='MoProHook.start_proto_epoch must '
            "be an integer >= 0, got 'one'"):
        MoProHook(start_proto_epoch='one')


def test_after_train_iter_logs_phase():
    model = FakeMoPro()
    runner = fake_runner(model, 11)
    hook = MoProHook()
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0)
    scalars = runner.message_hub.log_scalars
    assert scalars['train/noise_correction'].current() == 1.0
    assert scalars['train/proto_loss_on'].current() == 1.0


# ----------------------------------------------------------------------
# with a real mmengine Runner, including a resumed run
class TwoViews(Dataset):
    """Random uint8 image pairs with labels, as a MoPro pipeline gives."""

    def __init__(self, n=8, num_classes=3):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 2, 3, 32, 32), generator=gen,
                                    dtype=torch.uint8)
        self.labels = torch.arange(n) % num_classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return dict(
            inputs=[self.images[i, 0], self.images[i, 1]],
            data_samples=DataSample().set_gt_label(int(self.labels[i])))


class PhaseRecorder(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        self.seen.append(
            (runner.epoch, model.use_proto_loss, model.correct_noise))


def make_runner(work_dir, max_epochs, recorder, **kwargs):
    from mmengine.dataset import default_collate
    loader = DataLoader(TwoViews(), batch_size=4, shuffle=False,
                        collate_fn=default_collate)
    return Runner(
        model=tiny_mopro_cfg(), work_dir=str(work_dir),
        train_dataloader=loader, train_cfg=dict(by_epoch=True,
                                                max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=1)), custom_hooks=[
                dict(type='MoProHook', start_proto_epoch=1,
                     start_clean_epoch=2), recorder
            ], default_scope='mmpretrain', randomness=dict(seed=0), **kwargs)


def test_runner_sets_phases_and_resume_keeps_them(tmp_path):
    recorder = PhaseRecorder()
    runner = make_runner(tmp_path, 3, recorder)
    runner.train()
    # 2 iterations per epoch
    assert recorder.seen == [(0, False, False)] * 2 + \
        [(1, True, False)] * 2 + [(2, True, True)] * 2
    assert runner.message_hub.get_scalar(
        'train/noise_correction').current() == 1.0
    state = {
        k: v.clone()
        for k, v in runner.model.state_dict().items()
        if k in ('queue', 'queue_ptr', 'prototypes')
    }
    assert state['queue_ptr'].item() == (3 * 8) % 16

    # resume from the end of epoch 2 (0-based epochs 0, 1 done)
    resumed_recorder = PhaseRecorder()
    resumed = make_runner(tmp_path / 'resumed', 3, resumed_recorder,
                          load_from=str(tmp_path / 'epoch_2.pth'), resume=True)
    resumed.train()
    assert resumed_recorder.seen == [(2, True, True)] * 2
    # queue pointer restored from the checkpoint, then advanced by 8
    assert resumed.model.queue_ptr.item() == (2 * 8 + 8) % 16


class PoisonLastIteration(Hook):
    """Makes the classifier non-finite just before the last iteration of
    the first epoch, so that this step's loss is NaN."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.epoch == 0 and batch_idx == 1:
            with torch.no_grad():
                runner.model.classifier.weight[0, 0] = float('nan')


def test_runner_never_saves_a_non_finite_step(tmp_path):
    # the model defers its finiteness check past the step; the hook must
    # still stop the run before the epoch's checkpoint is written
    runner = make_runner(tmp_path, 2, PoisonLastIteration())
    with pytest.raises(FloatingPointError, match='non-finite loss'):
        runner.train()
    assert runner.iter == 2  # both steps ran; the checkpoint did not
    assert not list(tmp_path.glob('*.pth'))
