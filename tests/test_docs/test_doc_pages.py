"""The documentation stays true: README.md, docs/*.md, configs/README.md
and benchmarks/README.md.

- every repository path they name (``tools/...``, ``configs/...``,
  ``docs/...``, ``results/...``, ``benchmarks/...``, ``mopro/...``) exists;
  names with a placeholder (``<gpu>``, ``{...}``, ``*``) are left out;
- every relative markdown link (and image) resolves, and a link to a
  heading (``page.md#anchor``) finds that heading;
- every ``make`` target they name is a target of the Makefile;
- every Python tool they name answers ``--help`` with exit status 0 and
  its docstring's first example (run as ``__main__``, the tools one after
  the other in one process; each in a process of its own:
  tests/test_utils/test_environment.py);
  ``tools/train_d2.py`` without Detectron2 ends instead with the one-line
  install hint that docs/install.md quotes, run as a user runs it;
- README.md has at most 200 lines;
- the demo rows they quote are those of the committed report.
"""
import ast
import glob
import importlib.util
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, Set

import pytest

from helpers import ROOT
from helpers.commands import tools_help, user_env
from helpers.detectron2_hidden import env_without_detectron2

PAGES = sorted([
    osp.join(ROOT, 'README.md'),
    osp.join(ROOT, 'configs', 'README.md'),
    osp.join(ROOT, 'benchmarks', 'README.md')
] + glob.glob(osp.join(ROOT, 'docs', '*.md')))
README_MAX_LINES = 200
REPO_PATH = re.compile(
    r'(?<![\w./$-])(?:tools|configs|docs|results|benchmarks|mopro)/'
    r'[^\s`\'"()\[\]|,;]*')
PLACEHOLDER = re.compile(r'[<>{}*]|\.\.\.')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
# in a command: a code span or a line of a code block
MAKE_TARGET = re.compile(r'(?:^|`)make ([a-z][\w-]*)', re.MULTILINE)
TOOL = re.compile(r'(?<![\w./-])tools/[\w/]+\.py\b')
FENCE = re.compile(r'^```.*?^```', re.MULTILINE | re.DOTALL)
D2_TOOL = 'tools/train_d2.py'
D2_HINT = re.compile(r'^error: tools/train_d2\.py needs Detectron2.*$',
                     re.MULTILINE)


def read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def page_id(path: str) -> str:
    return osp.relpath(path, ROOT)


def repo_paths(text: str) -> Set[str]:
    """The repository paths ``text`` names, trailing punctuation off."""
    paths = set()
    for match in REPO_PATH.findall(text):
        path = match.rstrip('.:')
        if not PLACEHOLDER.search(path):
            paths.add(path)
    return paths


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: str) -> Set[str]:
    """The anchors of the headings of the markdown file ``path`` (those
    outside code blocks)."""
    text = FENCE.sub('', read(path))
    return {
        slug(line.lstrip('#'))
        for line in text.splitlines() if re.match(r'#{1,6} ', line)
    }


def tools_named() -> Dict[str, List[str]]:
    """The Python tools the pages name, with the pages naming each."""
    tools: Dict[str, List[str]] = {}
    for page in PAGES:
        for tool in set(TOOL.findall(read(page))):
            tools.setdefault(tool, []).append(page_id(page))
    return tools


@pytest.mark.parametrize('page', PAGES, ids=page_id)
def test_named_paths_exist(page):
    missing = sorted(
        p for p in repo_paths(read(page)) if not osp.exists(osp.join(ROOT, p)))
    assert not missing, f'{page_id(page)} names missing paths: {missing}'


@pytest.mark.parametrize('page', PAGES, ids=page_id)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(read(page)):
        if re.match(r'[a-z]+:', target):  # https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(page), path)) \
            if path else page
        if not osp.exists(resolved):
            broken.append(f'{target} (no {osp.relpath(resolved, ROOT)})')
        elif anchor and resolved.endswith('.md') and \
                anchor not in anchors(resolved):
            broken.append(f'{target} (no such heading)')
    assert not broken, f'{page_id(page)}: broken links {broken}'


def test_make_targets_exist():
    makefile = read(osp.join(ROOT, 'Makefile'))
    targets = set(re.findall(r'^([\w-]+):', makefile, re.MULTILINE))
    named = {(page_id(page), target)
             for page in PAGES
             for target in MAKE_TARGET.findall(read(page))}
    assert {t for _, t in named} >= {'env', 'demo', 'test'}
    unknown = sorted((p, t) for p, t in named if t not in targets)
    assert not unknown, f'make targets not in the Makefile: {unknown}'


def test_readme_fits_on_a_screen():
    lines = read(osp.join(ROOT, 'README.md')).splitlines()
    assert len(lines) <= README_MAX_LINES, len(lines)


def test_pages_name_the_main_tools():
    """The check below covers the tools users meet first."""
    assert {'tools/train.py', 'tools/test.py', 'tools/noise_cleaning.py',
            'tools/convert_to_d2.py', D2_TOOL, 'tools/svm_eval.py',
            'tools/dataset_converters/folder_to_lists.py'} <= \
        set(tools_named())


@pytest.mark.slow
def test_every_tool_named_answers_help():
    """Each tool the pages name prints its usage and exits 0 on ``--help``
    (``tools/train_d2.py`` without Detectron2: the next test)."""
    tools = sorted(tools_named())
    if importlib.util.find_spec('detectron2') is None:
        tools.remove(D2_TOOL)
    answers = tools_help(tools, user_env(), ROOT)
    assert sorted(answers) == tools
    failed = [
        f'{tool} (exit {answer.code}): {(answer.value + answer.stderr)[-500:]}'
        for tool, answer in answers.items()
        if answer.code != 0 or 'usage:' not in answer.value
    ]
    assert not failed, '\n'.join(failed)
    without_examples = [
        tool for tool in tools
        if first_example(tool) not in answers[tool].value
    ]
    assert not without_examples, \
        f'--help leaves out the docstring\'s example: {without_examples}'


def first_example(tool: str) -> str:
    """The first line of ``tool``'s docstring, as the file spells it, that
    runs a tool (a line that ends in a backslash keeps it: ``--help``
    shows the docstring below the options, line for line)."""
    source = read(osp.join(ROOT, tool))
    docstring = ast.parse(source).body[0]
    lines = source.splitlines()[docstring.lineno - 1:docstring.end_lineno]
    return next(line for line in lines if 'python tools/' in line)


@pytest.mark.slow
def test_train_d2_without_detectron2_prints_the_documented_hint(tmp_path):
    """``tools/train_d2.py --help`` where Detectron2 is not installed: the
    line docs/install.md quotes, exit status 1."""
    documented = D2_HINT.search(read(osp.join(ROOT, 'docs', 'install.md')))
    assert documented, 'docs/install.md quotes no install hint'
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, D2_TOOL), '--help'], cwd=ROOT,
        env=env_without_detectron2(tmp_path / 'site', user_env()),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == documented.group(0)
    assert result.stdout == ''


def _table_rows(text: str) -> Dict[str, str]:
    """Markdown table rows by their first cell, whitespace normalised."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.lstrip().startswith('|') and len(cells) > 1:
            rows[cells[0]] = ' | '.join(cells)
    return rows


@pytest.mark.parametrize('page', ['README.md', 'docs/demo.md'])
def test_demo_numbers_are_the_committed_report(page):
    """A row of the demo's tables quoted in ``page`` (model accuracy and
    time, noise-cleaning metrics) is the row of the committed report
    ``results/demo/demo_results.md``, which ``make demo`` writes."""
    report = _table_rows(
        read(osp.join(ROOT, 'results', 'demo', 'demo_results.md')))
    quoted = {
        name: row
        for name, row in _table_rows(read(osp.join(ROOT, page))).items()
        if name in report and name not in ('model', 'metric', '---')
    }
    assert quoted, f'{page} quotes no row of the demo report'
    differ = {
        name: (row, report[name])
        for name, row in quoted.items() if row != report[name]
    }
    assert not differ, differ
