"""Records of the mmengine logger that ``print_log(..., logger='current')``
writes to (its stream handler keeps the stdout of the test that created it,
so ``capsys`` does not see its lines)."""
import contextlib
import logging
from typing import Iterator, List

from mmengine.logging import MMLogger


@contextlib.contextmanager
def log_messages() -> Iterator[List[str]]:
    """Collect the messages logged inside the block."""
    messages: List[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
