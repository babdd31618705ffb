"""The command-line arguments the tools share, and argparse types that
reject a bad value while the arguments are parsed (a usage error, exit
status 2), before a model is built or data read."""
import argparse
import math
from dataclasses import fields
from typing import Any, Callable, List, Optional, TypeVar

import torch
from mmengine.config import DictAction

T = TypeVar('T')


def _single_value_with_blanks(text: str) -> bool:
    """A ``--cfg-options`` value (quotes stripped) that mmengine reads as one
    value, no list or tuple (no comma, no enclosing brackets), and whose
    blanks it would remove: ``my data/naïve set``."""
    inner = text.strip()
    return ' ' in inner and ',' not in inner and \
        inner[:1] + inner[-1:] not in ('()', '[]')


class ConfigOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``--cfg-options KEY=VALUE ...``) that
    keeps a single value with blanks as given, and whose malformed item,
    one without ``=`` or with an empty key, is an argparse usage error
    (exit status 2) naming the item; mmengine's raises a ValueError with a
    traceback.

    mmengine removes every blank of a value before it parses it, so that
    ``data_root=my data`` arrived as ``mydata``; here a value that is no
    list or tuple and has blanks inside is the string given (surrounding
    quotes stripped, as mmengine strips them). Lists, tuples, numbers,
    booleans and ``None`` parse as in mmengine.
    """

    @staticmethod
    def _parse_iterable(val: str) -> Any:
        text = val.strip('\'"')
        if _single_value_with_blanks(text):
            return text
        return DictAction._parse_iterable(val)

    def __call__(self, parser: argparse.ArgumentParser,
                 namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        for item in values or []:
            key, sep, _ = item.partition('=')
            if not sep or not key.strip():
                raise argparse.ArgumentError(
                    self, f'expected KEY=VALUE, got {item!r}')
        try:
            super().__call__(parser, namespace, values, option_string)
        except (ValueError, IndexError, AssertionError) as err:
            raise argparse.ArgumentError(
                self, f'cannot parse {" ".join(values)!r}: {err}') from None


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


ANY_CHECKPOINT = 'checkpoint of this project or of the released MoPro code'


def describe(parser: argparse.ArgumentParser,
             doc: str) -> argparse.ArgumentParser:
    """``parser`` described by a tool's module docstring ``doc``: its first
    line is the description and the rest (usage examples, what the tool
    writes) the epilog of ``--help``, laid out as written."""
    summary, _, details = doc.strip().partition('\n')
    parser.description = summary
    parser.epilog = details.strip('\n') or None
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """A new parser, described by the tool's docstring ``doc``
    (:func:`describe`)."""
    return describe(argparse.ArgumentParser(), doc)


def add_checkpoint_args(parser: argparse.ArgumentParser,
                        help: str = ANY_CHECKPOINT,
                        optional: bool = False) -> None:
    """The ``checkpoint`` argument (``optional``: it may be left out) and
    ``--trust-checkpoint`` (:func:`add_trust_arg`)."""
    parser.add_argument('checkpoint', help=help,
                        nargs='?' if optional else None)
    add_trust_arg(parser)


def add_trust_arg(parser: argparse.ArgumentParser,
                  what: str = 'the checkpoint') -> None:
    """``--trust-checkpoint``: unpickle arbitrary objects in ``what``
    (checkpoints load with torch's weights-only unpickler otherwise)."""
    parser.add_argument(
        '--trust-checkpoint', action='store_true',
        help=f'unpickle arbitrary objects in {what} '
        '(only for files from a source you trust)')


def settings_from_args(cls: Callable[..., T], args: Any) -> T:
    """A settings dataclass from the parsed arguments of the same names
    (a tool's flags are its package function's settings)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected an integer, got {text!r}') from None


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text}: must be at least 1')
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (sizes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected a number, got {text!r}') from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f'{text}: must be above 0')
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0 (workers, warm-up
    iterations, seeds: numpy refuses negative seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'{text}: must be at least 0')
    return value


def device_arg(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N`` of a GPU this
    process sees, so that a wrong device ends the tool before it builds a
    model or reads data."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected cpu, cuda or cuda:N')
    if device.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(
                f'{text}: this process sees no CUDA device')
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f'{text}: this process sees {count} CUDA device(s)')
    return str(device)


def add_device_arg(parser: argparse.ArgumentParser, help: str = '') -> None:
    """``--device`` (validated by :func:`device_arg`); None when not given,
    which the tools read as CUDA where torch sees a GPU, else the CPU
    (:func:`mopro.utils.device.default_device`)."""
    parser.add_argument(
        '--device', type=device_arg, default=None,
        help='cpu, cuda or cuda:N (default: cuda when available, else '
        f'cpu){help}')


def positive_list(cast: Callable[[str], T]) -> Callable[[str], List[T]]:
    """An argparse type: comma-separated positive finite values of
    ``cast`` (``int`` or ``float``), e.g. ``--shots 1,2,4``."""
    kind = 'integers' if cast is int else 'numbers'

    def parse(text: str) -> List[T]:
        try:
            values = [cast(v) for v in text.split(',') if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f'expected comma-separated {kind}, got {text!r}') from None
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            finite = 'finite ' if cast is not int else ''
            raise argparse.ArgumentTypeError(
                f'expected positive {finite}{kind}, got {text!r}')
        return values

    return parse
