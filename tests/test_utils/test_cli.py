"""The tools' error boundary (user errors in one line, bugs with their
traceback) and their parsers: arguments checked as parsed, ``--help``
from the tool's docstring."""
import argparse
import subprocess
import sys

import pytest
import torch
from mmengine.config import DictAction

from mopro.checkpoint import CheckpointError
from mopro.utils.cli import (ANY_CHECKPOINT, add_checkpoint_args,
                             add_config_args, device_arg, non_negative_int,
                             positive_int, tool_parser)
from mopro.utils.errors import ConfigError, DataError, one_line, run_tool


def _raise(err):

    def main():
        raise err

    return main


@pytest.mark.parametrize('err', [
    ConfigError('cfg.py: model.threshold must be in [0, 1], got 5'),
    DataError('list.txt:3: label 9 is out of range [0, 8)'),
    CheckpointError('x.pth: truncated or corrupt checkpoint'),
    PermissionError(13, 'Permission denied', '/out/x.json'),
])
def test_user_error_is_one_line_and_exit_1(err, capsys, monkeypatch):
    monkeypatch.delenv('MOPRO_TRACEBACK', raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_tool(_raise(err))
    assert exit_info.value.code == 1
    err_text = capsys.readouterr().err
    assert err_text.count('\n') == 1
    assert err_text.startswith('error: ')
    assert 'Traceback' not in err_text


def test_programming_error_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_tool(_raise(ZeroDivisionError('division by zero')))


def test_traceback_on_request(monkeypatch):
    monkeypatch.setenv('MOPRO_TRACEBACK', '1')
    with pytest.raises(ConfigError):
        run_tool(_raise(ConfigError('bad key')))


def test_worker_error_keeps_its_last_line():
    err = DataError('Caught DataError in DataLoader worker process 0.\n'
                    'Original Traceback (most recent call last):\n'
                    '  File "x.py", line 1, in f\n'
                    'mopro.utils.errors.DataError: list.txt:3: bad label')
    assert one_line(err) == 'list.txt:3: bad label'


def test_run_tool_in_a_process_prints_one_line(tmp_path):
    script = tmp_path / 'tool.py'
    script.write_text(
        'from mopro.utils.errors import ConfigError, run_tool\n'
        'def main():\n'
        '    raise ConfigError("c.py: model.alpha must be in [0, 1]")\n'
        'run_tool(main)\n')
    result = subprocess.run([sys.executable, str(script)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == 'error: c.py: model.alpha must be in [0, 1]\n'


@pytest.mark.parametrize('count, text, expected', [
    (0, 'cpu', 'cpu'),
    (2, 'cuda', 'cuda'),
    (2, 'cuda:1', 'cuda:1'),
    (0, 'gpu', "'gpu': expected cpu, cuda or cuda:N"),
    (2, 'mps', "'mps': expected cpu, cuda or cuda:N"),
    (0, 'cuda', 'cuda: this process sees no CUDA device'),
    (2, 'cuda:2', 'cuda:2: this process sees 2 CUDA device(s)'),
])
def test_device_arg(monkeypatch, count, text, expected):
    """A device this process can use passes as torch spells it; any other
    is refused while the arguments are parsed."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: count > 0)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    if expected == text:
        assert device_arg(text) == expected
        return
    with pytest.raises(argparse.ArgumentTypeError) as info:
        device_arg(text)
    assert str(info.value) == expected


@pytest.mark.parametrize('cast, text, expected', [
    (positive_int, '3', 3),
    (positive_int, '0', '0: must be at least 1'),
    (positive_int, 'two', "expected an integer, got 'two'"),
    (non_negative_int, '0', 0),
    (non_negative_int, '-1', '-1: must be at least 0'),
    (non_negative_int, '1.5', "expected an integer, got '1.5'"),
])
def test_integer_args(cast, text, expected):
    if isinstance(expected, int):
        assert cast(text) == expected
        return
    with pytest.raises(argparse.ArgumentTypeError) as info:
        cast(text)
    assert str(info.value) == expected


TOOL_DOC = """Do a thing to a checkpoint.

    python tools/thing.py CKPT \\
        --out x.json

Writes ``x.json``.
"""


def test_tool_parser_shows_the_docstring_as_written():
    """The first line describes the tool; the examples follow the options
    in ``--help`` with their line breaks and indentation."""
    parser = tool_parser(TOOL_DOC)
    add_checkpoint_args(parser)
    text = parser.format_help()
    assert parser.description == 'Do a thing to a checkpoint.'
    assert text.endswith('\n\n    python tools/thing.py CKPT \\\n'
                         '        --out x.json\n\nWrites ``x.json``.\n')
    assert text.index('--trust-checkpoint') < text.index('python tools/')
    assert ANY_CHECKPOINT.split()[0] in text
    assert tool_parser('One line only.').epilog is None


def test_checkpoint_argument_required_or_optional():
    required = tool_parser(TOOL_DOC)
    add_checkpoint_args(required, 'the released checkpoint')
    assert vars(required.parse_args(['a.pth', '--trust-checkpoint'])) == {
        'checkpoint': 'a.pth',
        'trust_checkpoint': True
    }
    with pytest.raises(SystemExit):
        required.parse_args([])
    assert 'the released checkpoint' in required.format_help()
    optional = tool_parser(TOOL_DOC)
    add_checkpoint_args(optional, optional=True)
    assert vars(optional.parse_args([])) == {
        'checkpoint': None,
        'trust_checkpoint': False
    }


def _cfg_options(*items):
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    return parser.parse_args(['c.py', '--cfg-options', *items]).cfg_options


@pytest.mark.parametrize('value', [
    "/data/my data/naïve set",
    "work dirs/Ana's run",
    " leading and trailing ",
    "'quoted path/with blanks'",
])
def test_cfg_options_keep_a_value_with_blanks_as_given(value):
    """mmengine's DictAction removed the blanks: ``my data`` became
    ``mydata``, a folder that does not exist."""
    assert _cfg_options(f'data_root={value}') == {
        'data_root': value.strip("'")
    }


@pytest.mark.parametrize('value', [
    '/data/naïve', '3', '0.5', 'true', 'None', '[1, 5]', '(1,)', '1,2,3',
    '[(1, 2), [a, b], c]', ' 64', '"quoted"'
])
def test_cfg_options_parse_other_values_as_mmengine(value):
    assert _cfg_options(f'key={value}') == {
        'key': DictAction._parse_iterable(value)
    }
