"""The Runner of ``tools/train.py``: strict checkpoint loading."""
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmpretrain.utils import get_ori_model

from mopro.utils.checkpoint import load_model_weights


@RUNNERS.register_module()
class MoProRunner(Runner):
    """mmengine's ``Runner`` whose ``load_from`` and ``resume`` load the
    model weights strictly (:func:`mopro.utils.checkpoint.load_model_weights`).

    mmengine's loads what matches and warns about the rest, so a checkpoint
    of another architecture, class count or library (a ResNet-50 into a
    ResNet-18 config, a torchvision state dict) trains from a partial load.
    Here it is a one-line ``CheckpointError`` before the first iteration.
    Checkpoints of the released MoPro code are converted on loading. They
    load with torch's weights-only unpickler unless ``trust_checkpoint``
    (``tools/train.py --trust-checkpoint``).
    """

    trust_checkpoint = False

    def load_checkpoint(self, filename: str, map_location='cpu',
                        strict: bool = True, revise_keys=None) -> dict:
        """Load the model weights of ``filename``, always strictly, and
        return the checkpoint (its tensors on the CPU: the optimizer puts
        its state on the parameters' device when it loads it).

        ``map_location``, ``strict`` and ``revise_keys`` are mmengine's
        arguments, ignored. The ``after_load_checkpoint`` hooks see the
        checkpoint after the weights are loaded.
        """
        checkpoint = load_model_weights(
            get_ori_model(self.model), filename, trust=self.trust_checkpoint)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
