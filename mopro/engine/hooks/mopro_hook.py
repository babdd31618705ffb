"""Schedule of MoPro's training phases (paper Section 4.2)."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MoProHook(Hook):
    """Set MoPro's phase from ``runner.epoch`` before every epoch.

    - epochs ``< start_proto_epoch``: no prototype loss (released code: the
      prototypical loss is on from the second epoch);
    - epochs ``< start_clean_epoch``: warm-up, the pseudo-labels are the
      original labels;
    - from ``start_clean_epoch`` (0-based) on: noise correction. The released
      code starts at epoch 11; the paper's text speaks of a 10-epoch warm-up.

    The phase is derived from the epoch, never stored, so a resumed run is in
    the right phase. Before a checkpoint is saved and at the end of training
    the hook has the model check that its recent steps were finite
    (``MoPro.check_finite``). The phase flags are logged to the message hub
    (and so to every visualiser backend) with the losses; the model itself
    reports the fractions of relabelled and OOD samples per iteration.
    """

    priority = 'NORMAL'

    def __init__(self,
                 start_proto_epoch: int = 1,
                 start_clean_epoch: int = 11) -> None:
        if start_proto_epoch < 0 or start_clean_epoch < 0:
            raise ValueError('MoProHook: start epochs must be >= 0')
        self.start_proto_epoch = start_proto_epoch
        self.start_clean_epoch = start_clean_epoch

    def phase(self, epoch: int) -> dict:
        """The phase flags for a 0-based epoch."""
        return dict(
            use_proto_loss=epoch >= self.start_proto_epoch,
            correct_noise=epoch >= self.start_clean_epoch)

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train_epoch(self, runner) -> None:
        model = self._model(runner)
        if not hasattr(model, 'correct_noise'):
            raise TypeError('MoProHook needs a MoPro model, got '
                            f'{type(model).__name__}')
        for key, value in self.phase(runner.epoch).items():
            setattr(model, key, value)
        runner.logger.info(
            f'MoPro phase at epoch {runner.epoch}: prototype loss '
            f'{"on" if model.use_proto_loss else "off"}, noise correction '
            f'{"on" if model.correct_noise else "off"}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Stop before saving the weights of a non-finite step (the model
        defers that check to keep its step free of host syncs)."""
        self._model(runner).check_finite()

    def after_train(self, runner) -> None:
        self._model(runner).check_finite()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        model = self._model(runner)
        runner.message_hub.update_scalar('train/noise_correction',
                                         float(model.correct_noise))
        runner.message_hub.update_scalar('train/proto_loss_on',
                                         float(model.use_proto_loss))
