"""What a run starts from, checked before any work: the checkpoint
``--resume`` continues (found in the work dir when it is not named, also
after a kill left the pointer to it broken), the initial weights of
``load_from``, and whether a resumed run repeats an uninterrupted one."""
import logging
import os
import os.path as osp
import re
import shlex
import zipfile
from typing import List, Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

from ..checkpoint import CheckpointError, load_checkpoint, mopro_state_dict
from ..utils.errors import UserError
from ..utils.outputs import check_not_input

# the pointer mmengine's CheckpointHook and SafeCheckpointHook write
LAST_CHECKPOINT = 'last_checkpoint'
_CHECKPOINT_NAME = re.compile(r'(?:epoch|iter)_(\d+)\.pth')
# every name the checkpoint hooks write (best_<metric>_epoch_N.pth too)
_WRITTEN_NAME = re.compile(r'(?:best_.*_)?(?:epoch|iter)_\d+\.pth')


def resolve_checkpoints(cfg: Config, resume: Optional[str],
                        trust: bool = False) -> None:
    """Check what the run starts from, before any work, and set
    ``cfg.resume`` and ``cfg.load_from`` to it.

    Args:
        cfg: the config; its ``resume=True`` counts as ``resume='auto'``
            (or as ``resume=cfg.load_from`` when that is set).
        resume: ``--resume``: None, ``'auto'`` or a checkpoint path.
        trust: unpickle arbitrary objects in the checkpoint
            (``--trust-checkpoint``).

    - a path: it must be a checkpoint of a training run (one-line
      :class:`CheckpointError` otherwise);
    - ``'auto'``: the checkpoint ``last_checkpoint`` in the work dir points
      at; if the pointer is missing, empty or dangling, the newest complete
      checkpoint of the work dir, with a log line saying so; if there is
      none, a log line ``no checkpoint in <work dir>: starting from epoch
      1`` and a run from the start (from ``load_from`` if the config sets
      it), so that a requeued job keeps one command;
    - None: ``load_from`` (initial weights), if set, must be a checkpoint
      of this project or of the released code.
    """
    if resume is None and cfg.get('resume'):
        resume = cfg.get('load_from') or 'auto'
    if resume == 'auto':
        resume = find_resumable_checkpoint(cfg)
        if resume is None:
            print_log(
                f'no checkpoint in {cfg.work_dir}: starting from '
                f'{_first_step(cfg)}', logger='current')
    if resume is not None:
        check_resumable(resume, trust)
        cfg.resume, cfg.load_from = True, resume
        return
    cfg.resume = False
    if cfg.get('load_from'):
        check_weights_file(cfg.load_from, trust)


def check_load_from_kept(cfg: Config) -> None:
    """A run that starts afresh from ``load_from`` (not resuming) writes
    ``epoch_N.pth`` (``iter_N.pth``, ``best_*``) from the first epoch into
    its checkpoint folder: raise a one-line :class:`UserError` if
    ``load_from`` is such a file there, which the run would replace."""
    path = cfg.get('load_from')
    if cfg.get('resume') or not path or \
            not _WRITTEN_NAME.fullmatch(osp.basename(path)):
        return
    directory = _checkpoint_dir(cfg)
    check_not_input(
        osp.join(directory, osp.basename(path)), [path],
        what='checkpoint this run writes',
        fix=f'copy load_from out of {directory} or choose '
        'another --work-dir')


def check_resumable(path: str, trust: bool = False) -> None:
    """Raise a one-line error unless ``path`` is a checkpoint of a training
    run: what mmengine's ``Runner.resume`` reads, ``meta`` with epoch and
    iteration, ``state_dict`` and ``message_hub`` (``trust``: unpickle
    arbitrary objects)."""
    if not osp.isfile(path):
        raise UserError(f'--resume {path}: no such checkpoint file')
    ckpt = load_checkpoint(path, trust=trust)
    meta = ckpt.get('meta')
    missing = [
        what for what, present in (
            ('epoch and iteration in its meta',
             isinstance(meta, dict) and 'epoch' in meta and 'iter' in meta),
            ('state_dict', isinstance(ckpt.get('state_dict'), dict)),
            ('message_hub', isinstance(ckpt.get('message_hub'), dict)))
        if not present
    ]
    if missing:
        raise CheckpointError(
            f'{path}: not a checkpoint of a training run (no '
            f'{", no ".join(missing)}): --resume continues a run of '
            'tools/train.py; to start from its weights pass --cfg-options '
            f'{shlex.quote(f"load_from={path}")}')


def check_weights_file(path: str, trust: bool = False) -> None:
    """Raise a one-line error unless ``path`` is a checkpoint of this
    project or of the released code (``load_from``; ``trust``: unpickle
    arbitrary objects); whether it fits the model is checked when it is
    loaded (``MoProRunner``)."""
    if not osp.isfile(path):
        raise UserError(f'load_from={path}: no such checkpoint file')
    mopro_state_dict(load_checkpoint(path, trust=trust), path)


def find_resumable_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint ``--resume`` continues from: the one the work dir's
    ``last_checkpoint`` names, else (pointer missing, empty or naming no
    complete file; logged) the newest complete checkpoint; None if there is
    none."""
    work_dir = cfg.work_dir
    directory = _checkpoint_dir(cfg)
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(pointer):
        with open(pointer, encoding='utf-8') as f:
            named = f.read().strip()
        if named and not osp.isfile(named):  # relative to another cwd
            moved = osp.join(directory, osp.basename(named))
            named = moved if osp.isfile(moved) else named
        if named and _is_complete(named):
            return named
        if not named:
            problem = f'{pointer} is empty'
        elif osp.isfile(named):
            problem = f'{pointer} names an incomplete file, {named}'
        else:
            problem = f'{pointer} names a missing file, {named}'
    else:
        problem = f'no {pointer}'
    newest = _newest_complete_checkpoint(directory)
    if newest is not None:
        print_log(
            f'{problem}: resuming from the newest complete '
            f'checkpoint, {newest}', logger='current')
    elif osp.isfile(pointer):
        print_log(problem, logger='current')
    return newest


def _checkpoint_dir(cfg: Config) -> str:
    """Where the checkpoint hook writes (``out_dir/<work dir name>`` if it
    sets ``out_dir``, as mmengine's, else the work dir)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir') if isinstance(hook, dict) else None
    if out_dir is None:
        return cfg.work_dir
    return osp.join(out_dir, osp.basename(cfg.work_dir.rstrip(osp.sep)))


def _is_complete(path: str) -> bool:
    """Whether a checkpoint file is whole: torch.save writes a zip archive,
    whose directory is at its end."""
    return osp.isfile(path) and zipfile.is_zipfile(path)


def _newest_complete_checkpoint(directory: str) -> Optional[str]:
    """The complete ``epoch_N.pth``/``iter_N.pth`` of the largest N."""
    if not osp.isdir(directory):
        return None
    found: List[Tuple[int, str]] = []
    for name in os.listdir(directory):
        match = _CHECKPOINT_NAME.fullmatch(name)
        path = osp.join(directory, name)
        if match and _is_complete(path):
            found.append((int(match[1]), path))
    return max(found)[1] if found else None


def _first_step(cfg: Config) -> str:
    train_cfg = cfg.get('train_cfg') or {}
    by_epoch = train_cfg.get('by_epoch',
                             train_cfg.get('type') != 'IterBasedTrainLoop')
    return 'epoch 1' if by_epoch else 'iteration 1'


# the samplers whose indices carry each sample's RNG key
# (mopro/datasets/samplers.py)
SEEDED_SAMPLERS = ('ResumableSampler', 'SqrtBalancedSampler')


def inexact_resume_reasons(cfg: Config) -> List[str]:
    """Why a resumed run of ``cfg`` would not make the views that an
    uninterrupted one makes (docs/reliability.md): each sample's views are
    drawn from (seed, epoch, position in the epoch), which takes a fixed
    ``randomness.seed`` and a sampler that hands those keys out."""
    loader = cfg.get('train_dataloader')
    if not loader:
        return []
    reasons = []
    sampler = (loader.get('sampler') or {}).get('type')
    name = getattr(sampler, '__name__', str(sampler)).split('.')[-1]
    if name not in SEEDED_SAMPLERS:
        reasons.append(f'train_dataloader.sampler.type is {name}, not '
                       f'{" or ".join(SEEDED_SAMPLERS)}')
    if (cfg.get('randomness') or {}).get('seed') is None:
        reasons.append('randomness.seed is None (a new seed at every start)')
    return reasons


def warn_inexact_resume(cfg: Config) -> None:
    """Log a warning for each of :func:`inexact_resume_reasons`."""
    for reason in inexact_resume_reasons(cfg):
        print_log(
            f'{reason}: a resumed run will not repeat an uninterrupted one '
            '(docs/reliability.md)', logger='current', level=logging.WARNING)
