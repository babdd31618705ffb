"""The Runner of ``tools/train.py``: strict checkpoint loading, a message
hub whose histories append in constant time, the training process's
intra-op threads set on purpose, a copy of the config that trains, a
timestamp of its own."""
import os.path as osp
import time
from typing import Optional, Set

import torch
from mmengine.dist import broadcast, master_only
from mmengine.logging import MessageHub
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmpretrain.utils import get_ori_model

from mopro.checkpoint import load_model_weights
from mopro.config.top_level_keys import without_unread_keys
from mopro.utils.device import default_device
from .message_hub import grow_histories
from .threads import intra_op_threads, set_intra_op_threads

#: the timestamps of the Runners made in this process
_TIMESTAMPS_TAKEN: Set[str] = set()


def own_timestamp(timestamp: str) -> str:
    """``timestamp`` (mmengine's ``%Y%m%d_%H%M%S`` of rank 0's clock), or
    the first later second no Runner of this process has taken.

    mmengine names a run's logger, message hub, visualizer and log folder
    after its config and timestamp, and returns the existing object of a
    name already taken: a second run of the same config started within
    the same second (a sweep, training then evaluating in one script)
    would log into the first run's file, start from its message hub and
    write its config into the first run's folder (an error once that is
    gone). Every rank makes the same Runners in the same order, so all of
    them wait here alike and agree on rank 0's clock afterwards.
    """
    while timestamp in _TIMESTAMPS_TAKEN:
        time.sleep(1 - time.time() % 1)
        now = torch.tensor(time.time(), dtype=torch.float64)
        broadcast(now)
        timestamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(now.item()))
    _TIMESTAMPS_TAKEN.add(timestamp)
    return timestamp


@RUNNERS.register_module()
class MoProRunner(Runner):
    """mmengine's ``Runner`` with:

    - strict weight loading: its ``load_from`` and ``resume`` load the model
      weights strictly (:func:`mopro.checkpoint.load_model_weights`).
      mmengine's loads what matches and warns about the rest, so a
      checkpoint of another architecture, class count or library (a
      ResNet-50 into a ResNet-18 config, a torchvision state dict) trains
      from a partial load. Here it is a one-line ``CheckpointError`` before
      the first iteration. Checkpoints of the released MoPro code are
      converted on loading. They load with torch's weights-only unpickler
      unless ``trust_checkpoint`` (``tools/train.py --trust-checkpoint``);
    - a message hub whose scalar histories append in constant time
      (:mod:`mopro.engine.message_hub`), with the values, statistics and
      checkpointed state of mmengine's;
    - the intra-op thread count of ``env_cfg.intra_op_threads``
      (:mod:`mopro.engine.threads`), set before the model is built and
      logged once;
    - a copy of the config in the work dir that trains as a config of its
      own (:func:`mopro.config.top_level_keys.without_unread_keys`);
    - a timestamp no other Runner of the process has (:func:`own_timestamp`),
      so that two runs never share a logger, message hub or log folder.
    """

    trust_checkpoint = False

    def __init__(self, *args, **kwargs) -> None:
        # a bad env_cfg.intra_op_threads stops before the work dir is made
        env_cfg = kwargs.get('env_cfg') or {}
        intra_op_threads(env_cfg.get('intra_op_threads', 'auto'), 'cpu')
        self._threads_line = ''
        super().__init__(*args, **kwargs)
        self.logger.info(self._threads_line)

    def setup_env(self, env_cfg: dict) -> None:
        """mmengine's environment set-up, the run's own timestamp, then the
        intra-op threads, before anything is built (logged once the logger
        is)."""
        super().setup_env(env_cfg)
        self._timestamp = own_timestamp(self._timestamp)
        self._threads_line = set_intra_op_threads(
            env_cfg.get('intra_op_threads', 'auto'),
            default_device().type)

    @master_only
    def dump_config(self) -> None:
        """Write the config to ``<work dir>/<config file name>``, as
        mmengine's Runner does, without the keys that nothing reads."""
        name = osp.basename(self.cfg.filename) if self.cfg.filename \
            else f'{self.timestamp}.py'
        without_unread_keys(self.cfg).dump(osp.join(self.work_dir, name))

    def build_message_hub(self,
                          message_hub: Optional[dict] = None) -> MessageHub:
        """mmengine's message hub, its histories growing in constant
        time."""
        return grow_histories(super().build_message_hub(message_hub))

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
