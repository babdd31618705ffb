"""mmengine's CheckpointHook, safe against a kill at any moment and
against saving the state of a diverged run."""
import os.path as osp
from collections import deque
from typing import Any, Iterator, List, Tuple

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmpretrain.utils import get_ori_model

from mopro.engine.resume import LAST_CHECKPOINT
from mopro.models.nonfinite import (NonFiniteError, first_non_finite,
                                    tensors_finite)
from mopro.utils.fileio import remove_stale_temporaries, write_text


class _DeferredRemoval:
    """A file backend whose ``remove``/``rmtree`` only note the path;
    everything else goes to ``backend``."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.paths: List[str] = []

    def __getattr__(self, name: str):
        return getattr(self.backend, name)

    def remove(self, path: str) -> None:
        self.paths.append(path)

    def rmtree(self, path: str) -> None:
        self.paths.append(path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) that a kill at any
    moment leaves with a complete checkpoint and a working pointer to it.

    - An outdated checkpoint (``max_keep_ckpts``) or a previous best one
      (``save_best``) is deleted only after its successor is complete on
      disk; mmengine's hook deletes it first, so a job killed while saving
      with ``max_keep_ckpts=1`` is left with none.
    - ``last_checkpoint`` is written atomically, after the checkpoint.
    - At the start of training, the temporaries of a save that was killed
      (``.epoch_N.pth.<token>.tmp``) are removed, and so is an outdated
      checkpoint that a kill kept (the checkpoint lists it until its
      successor is written).
    - A checkpoint (also a best one) is not written while the weights, the
      buffers (BatchNorm statistics, MoPro's queue and prototypes) or the
      optimizer state hold NaN or infinity: the run stops, on every rank,
      with a one-line :class:`NonFiniteError` naming the first such
      tensor, before anything is written or deleted, so the last good
      checkpoint stays and ``last_checkpoint`` names it. Every tool refuses
      such a file anyway; written, it would push the good ones out
      (``max_keep_ckpts``).

    The checkpoint itself is written atomically by the ``atomic_local``
    backend (``backend_args=dict(backend='atomic_local')``, as in
    ``configs/_base_/default_runtime.py``).
    """

    def _check_finite(self, runner, what: str) -> None:
        """Raise a :class:`NonFiniteError` naming the first non-finite
        tensor of the model's state or the optimizer's, on every rank
        together (Runner.save_checkpoint, which writes on rank 0 alone, is
        too late for a collective), before ``what`` is written."""
        states = dict(state_dict=get_ori_model(runner.model).state_dict())
        if runner.optim_wrapper is not None:
            states['optimizer'] = runner.optim_wrapper.state_dict()
        named = list(_named_tensors(states))
        finite = tensors_finite([value for _, value in named]).to(torch.int32)
        all_reduce(finite, op='min')
        if finite.item():
            return
        bad = first_non_finite(named) or 'a tensor of another rank'
        raise NonFiniteError(
            f'{what} is not written: {bad} is NaN or infinite, the run has '
            'diverged; the checkpoints written before are kept (--resume '
            f'continues from the last one, in {self.out_dir}): lower the '
            'learning rate or check the data')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.max_keep_ckpts > 0:
            # unbounded: outdated ids leave after the new file is complete
            self.keep_ckpt_ids = deque(self.keep_ckpt_ids)
        if not is_main_process():
            return
        stale = remove_stale_temporaries(self.out_dir, '*.pth') + \
            remove_stale_temporaries(runner.work_dir, LAST_CHECKPOINT)
        for path in stale:
            runner.logger.info(
                f'removed the temporary file of an interrupted save: {path}')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        unit = 'epoch' if self.by_epoch else 'iteration'
        self._check_finite(runner, f'the checkpoint of {unit} {step}')
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            self.keep_ckpt_ids.append(step)
            # the checkpoint lists the outdated ids too: resumed after a
            # kill before they were removed, before_train removes them
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler,
                               meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        if not is_main_process():
            return
        write_text(osp.join(runner.work_dir, LAST_CHECKPOINT), self.last_ckpt)
        for old in outdated:
            self._remove(
                self.file_backend.join_path(self.out_dir,
                                            self.filename_tmpl.format(old)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best:  # also a val-only run (no file backend yet)
            return
        self._check_finite(runner, 'the best checkpoint of this validation')
        backend = self.file_backend
        self.file_backend = deferred = _DeferredRemoval(backend)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        for path in deferred.paths:  # the new best one is complete
            self._remove(path)

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints
            self.file_backend.rmtree(path)


def _named_tensors(tree: Any, prefix: str = '') -> Iterator[Tuple[str, Any]]:
    """``(dotted name, tensor)`` of every tensor in nested dicts and lists
    (a checkpoint's ``state_dict`` and ``optimizer``)."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _named_tensors(
                value, f'{prefix}.{key}' if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _named_tensors(value, f'{prefix}.{i}')
