"""A validation rule checked in several places (before the Runner, in the
model, in the benchmarks) is stated in one function, so that its message
is written once in the package: a reader who changes the rule finds its
one home. The messages themselves are pinned where users meet them
(tests/test_tools, tests/test_engine/test_run_checks.py,
tests/test_models/test_algorithms/test_mopro_state.py)."""
import ast
import glob
import os.path as osp
from typing import Iterator, Tuple

import pytest

from helpers import ROOT

# the fixed words of each rule's message
RULES = {
    'the global batch fits model.queue_len': 'MoPro enqueues every batch',
    'top-k accuracy needs k classes': 'accuracy needs at least',
}


def messages(path: str) -> Iterator[Tuple[int, str]]:
    """``(line, text)`` of every string of the module at ``path`` but its
    docstrings; an f-string's text is its literal parts."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if isinstance(body, list) and body and \
                isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.JoinedStr):
            skip.update(id(value) for value in node.values)
            yield node.lineno, ''.join(
                value.value for value in node.values
                if isinstance(value, ast.Constant))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skip:
            yield node.lineno, node.value


@pytest.mark.parametrize('rule', sorted(RULES))
def test_a_rule_has_one_home(rule):
    words = RULES[rule]
    homes = [
        f'{osp.relpath(path, ROOT)}:{line}' for path in glob.glob(
            osp.join(ROOT, 'mopro', '**', '*.py'), recursive=True)
        for line, text in messages(path) if words in text
    ]
    assert len(homes) == 1, homes
