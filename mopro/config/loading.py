"""A config as the tools read it: its file and ``_base_`` files, with
``--cfg-options`` merged and the top-level switches applied; a config that
cannot be read, or a key that nothing reads, is a one-line
:class:`~mopro.utils.errors.ConfigError` naming the file and line."""
import argparse
import ast
import os
import os.path as osp
from types import TracebackType
from typing import Iterable, Iterator, List, Optional

from mmengine.config import Config

from ..utils.errors import ConfigError
from ..utils.outputs import check_not_input
from .data_format import apply_data_format
from .switches import apply_switches, read_switches
from .top_level_keys import check_top_level_keys


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, merge ``--cfg-options``, set launcher and work dir.

    The top-level switches ``data_root``, ``num_classes`` and
    ``max_epochs`` set in ``--cfg-options`` move every key the config built
    from them (:mod:`mopro.config.switches`); ``data_format=shards`` trains
    from shards (:mod:`mopro.config.data_format`). A top-level key that
    nothing reads, of the file or of ``--cfg-options``, is an error with
    the closest key that is read
    (:func:`~mopro.config.top_level_keys.check_top_level_keys`). The work dir
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
    apply_data_format(cfg, args.cfg_options)
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
