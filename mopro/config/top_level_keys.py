"""Top-level keys that nothing reads: a misspelled one
(``train_dataloder``), in a config file or in ``--cfg-options``, would
make a new key and leave the one meant as it was; here it is a one-line
:class:`~mopro.utils.errors.ConfigError` with the closest key that is
read."""
import ast
import inspect
from typing import Iterable, Optional, Sequence, Set

from mmengine.config import Config
from mmengine.runner import Runner

from ..utils.errors import ConfigError
from .arguments import did_you_mean
from .data_format import KEYS as DATA_FORMAT_KEYS
from .switches import SWITCHES

# the top-level keys mmengine's Runner reads besides the arguments of its
# constructor (mmengine 0.10: the model wrapper, DDP's options,
# torch.compile, the memory savers), and those read when the config file
# is (mmengine's custom_imports, the tools' switches)
RUNNER_CONFIG_KEYS = ('model_wrapper_cfg', 'find_unused_parameters', 'sync_bn',
                      'compile', 'activation_checkpointing',
                      'efficient_conv_bn_eval')
FILE_KEYS = ('custom_imports', *SWITCHES, *DATA_FORMAT_KEYS)


def read_top_level_keys() -> Set[str]:
    """The top-level keys something reads once the config is read: the
    arguments of mmengine's Runner (``Runner.from_cfg`` passes each key of
    that name) and :data:`RUNNER_CONFIG_KEYS`, :data:`FILE_KEYS`."""
    arguments = list(inspect.signature(Runner.__init__).parameters)[1:]
    return (set(arguments) - {'cfg'}) | set(RUNNER_CONFIG_KEYS) | \
        set(FILE_KEYS)


def without_unread_keys(cfg: Config) -> Config:
    """``cfg`` without the top-level keys that nothing reads: the variables
    of its files (``dataset_type``, ``train_pipeline``), whose values the
    keys built from them already hold. The copy of the config that the
    Runner writes to its work dir is one file without ``_base_``, where
    those variables would be keys that nothing reads; written without
    them (:meth:`mopro.engine.MoProRunner.dump_config`), the copy reads as
    a config of its own (``tools/train.py work_dirs/x/x.py --work-dir
    ...``), and a key misspelled in it is still caught."""
    read = read_top_level_keys()
    kept = {key: value for key, value in cfg.to_dict().items() if key in read}
    return Config(kept, filename=cfg.filename)


def check_top_level_keys(cfg: Config, files: Sequence[str],
                         cfg_options: Optional[Iterable[str]] = None) -> None:
    """Raise a :class:`ConfigError` for a top-level key that nothing reads,
    with the closest key that is read.

    - a key of ``--cfg-options`` (``train_dataloder.batch_size=4`` made a
      new top-level key and trained with the config's batch): also a
      variable of the config, which was substituted into the keys built
      from it when the file was read;
    - a key of the config ``files`` (the config first, then its bases)
      that no file of them uses either (``train_dataloder = dict(...)``),
      named by its file and line.
    """
    read = read_top_level_keys()
    used = _names_used(files)
    for option in cfg_options or ():
        top = option.split('.')[0]
        if top in read:
            continue
        hint = (' (a variable of the config: mmengine substituted it into '
                'the keys built from it when it read the file; set those '
                'keys)' if top in used else did_you_mean(top, read))
        raise ConfigError(f'--cfg-options {option}: nothing reads the '
                          f'top-level key {top!r}{hint}')
    for key in cfg:
        if key not in read and key not in used:
            raise ConfigError(f'{_assigned_at(files, key)}: nothing reads '
                              f'the top-level key {key!r}'
                              f'{did_you_mean(key, read)}')


def _parse(path: str) -> Optional[ast.Module]:
    try:
        with open(path, encoding='utf-8') as f:
            return ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _names_used(files: Sequence[str]) -> Set[str]:
    """The names the config ``files`` read: ``name`` and mmengine's
    ``{{_base_.name}}``."""
    used: Set[str] = set()
    for path in files:
        tree = _parse(path)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                used.add(node.id)
            elif isinstance(node, ast.Attribute) and \
                    isinstance(node.value, ast.Name) and \
                    node.value.id == '_base_':
                used.add(node.attr)
    return used


def _assigned_at(files: Sequence[str], name: str) -> str:
    """``file:line`` of the first top-level assignment of ``name`` in
    ``files`` (the config before its bases), else the config."""
    for path in files:
        tree = _parse(path)
        for node in tree.body if tree is not None else ():
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return f'{path}:{node.lineno}'
    return files[0] if files else 'the config'
