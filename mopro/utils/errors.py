"""The error boundary of every command-line tool.

A user's mistake (a config key, a list line, a checkpoint, a full disk, a
missing permission) ends a tool with one line, ``error: ...``, naming the
file, line or key, and exit status 1; a programming error keeps its
traceback. Set ``MOPRO_TRACEBACK=1`` to see the traceback of a user error
too. Every tool ends with::

    if __name__ == '__main__':
        run_tool(main)
"""
import os
import sys
from typing import Callable, Optional, TypeVar

T = TypeVar('T')

TRACEBACK_ENV = 'MOPRO_TRACEBACK'


class UserError(Exception):
    """An error in what the user gave a tool (config, data, checkpoint,
    arguments); the message is one line naming the file, line or key."""


class ConfigError(UserError, ValueError):
    """A config key with a wrong type or value, or an unreadable config."""


class DataError(UserError, ValueError):
    """A data file (image list, features, annotations) that cannot be used."""


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's (input or environment), not a bug.

    User errors are :class:`UserError` and ``OSError`` (missing files,
    permissions, a full disk, undecodable images in a test set), also when
    a dataloader worker raised them.
    """
    return isinstance(err, (UserError, OSError))


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line.

    A dataloader worker's exception reaches the main process with the
    worker's traceback in its message; its last line is the message.
    """
    text = str(err).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        # "package.module.ErrorClass: message"
        name, sep, rest = last.partition(': ')
        text = rest if sep and ' ' not in name else last
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return ' '.join(lines) or type(err).__name__


def run_tool(main: Callable[..., T],
             argv: Optional[list] = None) -> Optional[T]:
    """Run a tool's ``main(argv)``; turn user errors into one line.

    Exit status: 1 for a user error, 130 on Ctrl-C. Programming errors
    propagate with their traceback.
    """
    try:
        return main(argv) if argv is not None else main()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        raise SystemExit(130) from None
    except BaseException as err:  # noqa: B902 (re-raised unless a user's)
        if isinstance(err, SystemExit) or not is_user_error(err) or \
                os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
            raise
        print(f'error: {one_line(err)}', file=sys.stderr)
        raise SystemExit(1) from None
