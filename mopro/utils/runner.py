"""Shared set-up of the command-line tools: config loading and checks,
device fixes, what ``--resume`` resumes."""
import argparse
import ast
import datetime
import logging
import os
import os.path as osp
import re
import zipfile
from types import TracebackType
from typing import Iterable, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.dist import init_dist
from mmengine.logging import print_log

from .checkpoint import CheckpointError, load_checkpoint, mopro_state_dict
from .cli import ConfigError, ConfigOptionsAction, UserError
from .config_switches import apply_switches, read_switches
from .device import default_device
from .outputs import check_not_input
from .run_checks import check_top_level_keys


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The arguments every config-driven tool takes."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and outputs go')
    parser.add_argument(
        '--cfg-options', nargs='+', action=ConfigOptionsAction,
        help='override config keys, e.g. model.threshold=0.6 '
        'train_dataloader.batch_size=64')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm',
                                 'mpi'], default='none', help='job launcher')
    # torchrun passes --local-rank (or --local_rank on older versions)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, merge ``--cfg-options``, set launcher and work dir.

    The top-level switches ``data_root``, ``num_classes`` and
    ``max_epochs`` set in ``--cfg-options`` move every key the config built
    from them (:mod:`mopro.utils.config_switches`). A top-level key that
    nothing reads, of the file or of ``--cfg-options``, is an error with
    the closest key that is read
    (:func:`~mopro.utils.run_checks.check_top_level_keys`). The work dir
    defaults to ``work_dirs/<config name>``, as in OpenMMLab.

    Raises:
        FileNotFoundError: no such config file (or base file).
        ConfigError: a config (or base) that cannot be read, naming its file
            and line, a ``--cfg-options`` key that cannot be merged or that
            nothing reads, or a switch that cannot be applied.
    """
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'{args.config}: config file not found')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = read_config(args.config)
    switches = read_switches(cfg, args.config)
    if args.cfg_options:
        try:
            cfg.merge_from_dict(args.cfg_options)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ConfigError(f'--cfg-options: {_message(err)}') from None
    apply_switches(cfg, switches, args.cfg_options, args.config)
    check_top_level_keys(cfg, config_files(args.config), args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def read_config(path: str) -> Config:
    """``Config.fromfile(path)``, with a one-line :class:`ConfigError` for a
    config that cannot be read.

    A syntax error names the file (the config or one of its bases) and the
    line, as does an error raised by a config's code (``NameError``, ...);
    mmengine's own message names neither.
    """
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        found = _find_syntax_error(path) or err
        where = (f'{osp.normpath(found.filename)}:{found.lineno}'
                 if found is not err else f'{path} or one of its bases, '
                 f'line {err.lineno}')
        raise ConfigError(f'{where}: syntax error: {found.msg}') from None
    except FileNotFoundError as err:  # the config itself exists
        raise ConfigError(f'{path}: base config not found: '
                          f'{osp.normpath(err.filename)}') from None
    except Exception as err:  # noqa: B902 (the config's code or mmengine)
        where = _config_line(err.__traceback__) or path
        raise ConfigError(
            f'{where}: {type(err).__name__}: {_message(err)}') from None


def _message(err: BaseException) -> str:
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args \
        else str(err)
    return ' '.join(text.split()) or type(err).__name__


def _find_syntax_error(path: str) -> Optional[SyntaxError]:
    """The syntax error of the config at ``path`` or of one of its
    ``_base_`` files (relative paths), None if none is found."""
    with open(path, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        return err
    for base in _base_files(tree, path):
        found = _find_syntax_error(base)
        if found is not None:
            return found
    return None


def _base_files(tree: ast.Module, path: str) -> Iterator[str]:
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets)):
            continue
        try:
            bases = ast.literal_eval(node.value)
        except ValueError:
            return
        for base in [bases] if isinstance(bases, str) else bases:
            base = osp.join(osp.dirname(path), str(base))
            if osp.isfile(base):
                yield base


def config_files(path: str) -> List[str]:
    """The config file ``path`` and the ``_base_`` files it is built from,
    recursively: the files a tool reads for its config."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return [path]
    files = [path]
    for base in _base_files(tree, path):
        files += config_files(osp.normpath(base))
    return files


def check_config_copy(cfg: Config, inputs: Iterable = ()) -> None:
    """mmengine's Runner writes the config to ``<work dir>/<config file
    name>`` when it is built: raise a one-line :class:`UserError` if that
    copy is the config, one of its bases or one of ``inputs``
    (``tools/train.py work_dirs/x/x.py``, the copy of an earlier run, edited,
    was rewritten with the run's ``--cfg-options`` and without its
    ``_base_``)."""
    if not cfg.filename:
        return
    copy = osp.join(cfg.work_dir, osp.basename(cfg.filename))
    check_not_input(copy, [*config_files(cfg.filename), *inputs],
                    what='copy of the config that the Runner writes',
                    fix='choose another --work-dir')


def _config_line(tb: Optional[TracebackType]) -> Optional[str]:
    """``file:line`` of the innermost config (module-level) frame of a
    traceback raised while mmengine ran a config."""
    where = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == '<module>' and code.co_filename.endswith('.py'):
            where = f'{code.co_filename}:{tb.tb_lineno}'
        tb = tb.tb_next
    return where


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


def _on_cuda(device: Optional[str]) -> bool:
    """Whether a run on ``device`` (default: CUDA when available) is on
    CUDA."""
    return default_device(device).type == 'cuda'


def compile_only_on_cuda(cfg: Config, device: Optional[str] = None) -> Config:
    """Turn ``model.compile`` off, with one log line, for a run that is not
    on CUDA: inductor's C++ build of a ResNet takes minutes on a CPU."""
    model = cfg.get('model')
    if model is not None and model.get('compile') and not _on_cuda(device):
        print_log(
            'no CUDA device: model.compile=False (torch.compile is '
            'for the GPU configs)', logger='current')
        model.compile = False
    return cfg


def adapt_to_device(cfg: Config, amp: Optional[bool] = None,
                    device: Optional[str] = None) -> Config:
    """Make a GPU config run where it is launched, on ``device`` (default:
    CUDA when available).

    - ``amp=True`` turns on bf16 autocast (``AmpOptimWrapper``);
    - off CUDA, ``model.compile`` is turned off
      (:func:`compile_only_on_cuda`);
    - off CUDA, AmpOptimWrapper (CUDA-only in mmengine) becomes a plain
      OptimWrapper and the distributed backend becomes gloo; a launched
      (torchrun) CPU job gets its process group here
      (:func:`init_launched_group`) and a DDP wrapper without device ids.
    """
    optim = cfg.get('optim_wrapper')
    if amp and optim is not None and optim.get('type') != 'AmpOptimWrapper':
        optim.type = 'AmpOptimWrapper'
        optim.setdefault('dtype', 'bfloat16')
    compile_only_on_cuda(cfg, device)
    if not _on_cuda(device):
        if optim is not None and optim.get('type') == 'AmpOptimWrapper':
            print_log(
                'no CUDA device: training in float32 with '
                'OptimWrapper instead of AmpOptimWrapper', logger='current')
            optim.type = 'OptimWrapper'
            optim.pop('dtype', None)
            optim.pop('loss_scale', None)
        dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg')
        if dist_cfg is not None:
            dist_cfg.backend = 'gloo'
        if cfg.get('launcher', 'none') == 'pytorch':
            init_launched_group(cfg, device)
            wrapper = cfg.get('model_wrapper_cfg') or dict(
                type='MMDistributedDataParallel')
            wrapper.update(device_ids=None, broadcast_buffers=False)
            cfg.model_wrapper_cfg = wrapper
    return cfg


def init_launched_group(cfg: Config, device: Optional[str] = None) -> None:
    """Join the process group of a job that ``cfg.launcher`` started
    (nothing without a launcher, or when joined already), with
    ``env_cfg.dist_cfg.timeout``. Under torchrun off CUDA (``device``,
    default: CUDA when available), a gloo group that torch builds from
    torchrun's environment, since mmengine's launcher insists on
    ``torch.cuda.set_device``; otherwise mmengine's ``init_dist``, with
    NCCL on CUDA and gloo off it."""
    import torch.distributed as dist
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or dist.is_initialized():
        return
    seconds = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('timeout', 1800)
    if launcher == 'pytorch' and not _on_cuda(device):
        dist.init_process_group(backend='gloo',
                                timeout=datetime.timedelta(seconds=seconds))
    else:  # mmengine's init_dist takes the timeout in seconds
        init_dist(launcher, backend='nccl' if _on_cuda(device) else 'gloo',
                  timeout=seconds)


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
            f'tools/train.py; to start from its weights set load_from={path}')


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
