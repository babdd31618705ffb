"""Stop before a checkpoint holds the weights of a non-finite step."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model

from ...utils.errors import ConfigError


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Have the model's :class:`~mopro.models.nonfinite.NonFiniteGuard`
    check its recent steps before every checkpoint and at the end of
    training.

    With ``model.nonfinite='raise'`` a training step only records whether
    its loss was finite (it never waits for the device); this hook waits
    for those records, so a run stops with
    :class:`~mopro.models.nonfinite.NonFiniteError` before it saves the
    weights of a non-finite step. The classifier configs (cross-entropy
    baselines, cRT, fine-tuning) list it in ``custom_hooks``;
    :class:`MoProHook` does the same for MoPro.
    """

    priority = 'NORMAL'

    def _check(self, runner) -> None:
        model = get_ori_model(runner.model)
        guard = getattr(model, 'finite_guard', None)
        if guard is None:
            raise ConfigError(
                f'custom_hooks: {type(self).__name__} needs a model with a '
                'finite_guard (MoPro, CompilableImageClassifier), got '
                f'model.type={type(model).__name__}')
        guard.check(wait=True)

    def before_train(self, runner) -> None:
        self._check(runner)  # the model type, before the first step

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._check(runner)

    def after_train(self, runner) -> None:
        self._check(runner)
