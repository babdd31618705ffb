"""Schedule of MoPro's training phases (paper Section 4.2)."""
from typing import Optional

from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model

from ...utils.errors import ConfigError
from ...utils.validate import check_int
from .nonfinite_hook import NonFiniteCheckHook


@HOOKS.register_module()
class MoProHook(NonFiniteCheckHook):
    """Set MoPro's phase from ``runner.epoch`` before every epoch.

    - epochs ``< start_proto_epoch``: no prototype loss (released code: the
      prototypical loss is on from the second epoch);
    - epochs ``< start_clean_epoch``: warm-up, the pseudo-labels are the
      original labels;
    - from ``start_clean_epoch`` (0-based) on: noise correction. The released
      code starts at epoch 11; the paper's text speaks of a 10-epoch warm-up.

    The phase is derived from the epoch, never stored, so a resumed run is in
    the right phase. Before a checkpoint is saved and at the end of training
    the hook has the model check that its recent steps were finite (as
    :class:`NonFiniteCheckHook`). The phase flags are logged to the message
    hub (and so to every visualiser backend) with the losses; the model
    itself reports the fractions of relabelled and OOD samples per
    iteration.
    """

    priority = 'NORMAL'

    def __init__(self, start_proto_epoch: int = 1,
                 start_clean_epoch: int = 11) -> None:
        self.start_proto_epoch = check_int(
            start_proto_epoch, 'custom_hooks: MoProHook.start_proto_epoch', 0)
        self.start_clean_epoch = check_int(
            start_clean_epoch, 'custom_hooks: MoProHook.start_clean_epoch', 0)

    def phase(self, epoch: int) -> dict:
        """The phase flags for a 0-based epoch."""
        return dict(use_proto_loss=epoch >= self.start_proto_epoch,
                    correct_noise=epoch >= self.start_clean_epoch)

    def before_train_epoch(self, runner) -> None:
        model = get_ori_model(runner.model)
        if not hasattr(model, 'correct_noise'):
            raise ConfigError('custom_hooks: MoProHook needs a MoPro model, '
                              f'got model.type={type(model).__name__}')
        for key, value in self.phase(runner.epoch).items():
            setattr(model, key, value)
        runner.logger.info(
            f'MoPro phase at epoch {runner.epoch}: prototype loss '
            f'{"on" if model.use_proto_loss else "off"}, noise correction '
            f'{"on" if model.correct_noise else "off"}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        model = get_ori_model(runner.model)
        runner.message_hub.update_scalar('train/noise_correction',
                                         float(model.correct_noise))
        runner.message_hub.update_scalar('train/proto_loss_on',
                                         float(model.use_proto_loss))
