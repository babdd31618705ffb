"""The own-data walkthrough of docs/own_data.md, run from the page itself.

The commands are read from the page's fenced ``bash`` blocks and run one
after the other as subprocesses in a fresh folder, as a user runs them
from the repository root: a folder of class subfolders -> lists -> MoPro
pretraining with configs/mopro_r50_custom.py -> tools/test.py,
tools/noise_cleaning.py and tools/convert_to_d2.py on its checkpoint. A
wrong command on the page fails here.

What the test changes, and only that: ``configs/...`` paths become
absolute (the folder is not the repository root); the recipe's last
checkpoint (``epoch_90.pth``) becomes the CI run's (``epoch_2.pth``); and
CI-size options are appended: the ResNet-50 recipe shrunk by
``--cfg-options`` (ResNet-18, 32 px views, 2 epochs, loading in the main
process) and, for the noise cleaning, ``--num-workers 0 --batch-size 8``.
The data are given by the page's switches ``data_root`` and
``num_classes`` alone. The generated folder carries the hidden files a Mac
and Jupyter leave, which the page says are skipped.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import re
import shlex
from typing import Dict, List, Optional

import pytest
import torch
from mmengine.config import Config

from mopro.checkpoint import load_checkpoint
from mopro.utils.cli import add_config_args
from helpers import ROOT
from helpers.commands import run
from helpers.configs import CUSTOM_SMALL, custom_small_training
from helpers.data import write_image
from helpers.macos import add_macos_leftovers

DOC = osp.join(ROOT, 'docs', 'own_data.md')
CONFIG = 'configs/mopro_r50_custom.py'
CLASSES = ['bird', 'cat', 'dog']
# the tools of the walkthrough, in the page's order
STEPS = {
    'dataset_converters/folder_to_lists': 'lists',
    'train': 'train',
    'test': 'test',
    'noise_cleaning': 'clean',
    'convert_to_d2': 'd2'
}
CI_EPOCHS = 2
SMALL = CUSTOM_SMALL
SMALL_TRAINING = custom_small_training(CI_EPOCHS)
CI_OPTIONS = {
    'train': SMALL + SMALL_TRAINING,
    'test': SMALL,
    'noise_cleaning': SMALL
}
CI_FLAGS = {'noise_cleaning': ['--num-workers', '0', '--batch-size', '8']}
FENCED_BASH = re.compile(r'^```bash\n(.*?)^```', re.MULTILINE | re.DOTALL)


def bash_commands(markdown: str) -> List[List[str]]:
    """The commands of the fenced ``bash`` blocks of ``markdown``, each as
    its argument list (continuation lines joined, comments left out)."""
    commands = []
    for block in FENCED_BASH.findall(markdown):
        for line in block.replace('\\\n', ' ').splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def tool_of(argv: List[str]) -> str:
    """``train`` for ``python tools/train.py ...``; the page runs tools
    only."""
    assert argv[0] == 'python' and argv[1].startswith('tools/') and \
        argv[1].endswith('.py'), f'not a tool command: {shlex.join(argv)}'
    return argv[1][len('tools/'):-len('.py')]


def option(argv: List[str], name: str) -> Optional[str]:
    """The value of ``name`` (``--work-dir``) in ``argv``, if given."""
    return argv[argv.index(name) + 1] if name in argv else None


def positional(argv: List[str]) -> List[str]:
    """The positional arguments of a tool command (no ``--cfg-options``
    before them, as on the page)."""
    args, rest = [], argv[2:]
    while rest:
        if rest[0].startswith('--'):
            break
        args.append(rest.pop(0))
    return args


def with_cfg_options(args: List[str], extra: List[str]) -> List[str]:
    """``args`` with ``extra`` appended to its ``--cfg-options`` (a second
    ``--cfg-options`` would replace the first)."""
    if not extra:
        return args
    if '--cfg-options' not in args:
        return args + ['--cfg-options', *extra]
    end = args.index('--cfg-options') + 1
    while end < len(args) and not args[end].startswith('--'):
        end += 1
    return args[:end] + extra + args[end:]


def ci_args(tool: str, argv: List[str]) -> List[str]:
    """The page's arguments, with the substitutions of the module
    docstring."""
    args = [
        osp.join(ROOT, a) if a.startswith('configs/') else a.replace(
            'epoch_90.pth', f'epoch_{CI_EPOCHS}.pth') for a in argv[2:]
    ]
    return with_cfg_options(args, CI_OPTIONS.get(tool, [])) + \
        CI_FLAGS.get(tool, [])


def make_images(root: str) -> None:
    """8 images of each class, a file that is no image, and the hidden
    files and folders of a Mac and Jupyter (``helpers.macos``)."""
    seed = 0
    for name in CLASSES:
        for i in range(8):
            write_image(osp.join(root, name, f'{i:03d}.jpg'), seed)
            seed += 1
    with open(osp.join(root, 'cat', 'notes.txt'), 'w') as f:
        f.write('taken in the garden\n')
    add_macos_leftovers(root)


def lines_of(path):
    with open(path, encoding='utf-8') as f:
        return f.read().splitlines()


@pytest.fixture(scope='module')
def page() -> Dict[str, List[str]]:
    """The page's commands by step (``lists``, ``train``, ...)."""
    with open(DOC, encoding='utf-8') as f:
        commands = bash_commands(f.read())
    tools = [tool_of(argv) for argv in commands]
    assert tools == list(STEPS), tools
    return {STEPS[tool]: argv for tool, argv in zip(tools, commands)}


@pytest.fixture(scope='module')
def walkthrough(page, tmp_path_factory):
    """The page's commands run in a fresh folder, one after the other; a
    failed command ends the walkthrough."""
    cwd = str(tmp_path_factory.mktemp('own_data'))
    data = positional(page['lists'])[0]
    make_images(osp.join(cwd, data))
    return cwd, run_page(page, cwd,
                         lambda step, argv: ci_args(tool_of(argv), argv))


def run_page(page: Dict[str, List[str]], cwd: str, args_of) -> dict:
    """Run a page's commands (``{step: argv}``) in ``cwd`` one after the
    other, each tool with ``args_of(step, argv)``; a failed command ends
    the walk. ``{step: completed process}``."""
    results = {}
    for step, argv in page.items():
        results[step] = run(tool_of(argv), args_of(step, argv), cwd)
        if results[step].returncode != 0:
            break
    return results


def step_output(results: dict, step: str, doc: str) -> str:
    """The output of ``step``, which must have run and succeeded (a step
    after a failed command of ``doc`` did not run)."""
    if step not in results:
        pytest.fail(f'{step}: not run, an earlier command of {doc} failed')
    result = results[step]
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def _ok(results, step):
    return step_output(results, step, 'docs/own_data.md')


def test_page_names_the_recipe_and_its_last_checkpoint(page):
    """The page's checkpoint is the one the recipe's run ends with."""
    assert positional(page['train']) == [CONFIG]
    epochs = Config.fromfile(osp.join(ROOT, CONFIG)).train_cfg.max_epochs
    work_dir = option(page['train'], '--work-dir')
    checkpoint = f'{work_dir}/epoch_{epochs}.pth'
    assert positional(page['test'])[1] == checkpoint
    assert positional(page['clean'])[1] == checkpoint
    assert positional(page['d2'])[0] == checkpoint


def test_page_quotes_a_path_with_blanks_as_the_tools_read_it():
    """The page's example of a ``--cfg-options`` path with blanks, split
    as a shell splits it, gives the path as written."""
    with open(DOC, encoding='utf-8') as f:
        example = re.search(r'`(--cfg-options "data_root=[^`]+)`',
                            f.read()).group(1)
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    options = parser.parse_args(['c.py', *shlex.split(example)]).cfg_options
    assert options == {'data_root': 'data/my data/naïve set', 'num_classes': 3}


@pytest.mark.slow
def test_folder_becomes_lists(page, walkthrough):
    cwd, results = walkthrough
    data = positional(page['lists'])[0]
    out = _ok(results, 'lists')
    # hidden: ._<file> beside the 25 files, ._<class> and .DS_Store for
    # the 3 classes, data's .DS_Store and bird/.ipynb_checkpoints/
    assert out.splitlines()[0] == (
        f'{data}: 3 classes, 24 images (1 other files skipped, 33 hidden '
        'files and folders skipped) -> '
        f'{data}/train.txt (21 images), {data}/val.txt (3), '
        f'{data}/classes.txt')
    assert lines_of(osp.join(cwd, data, 'classes.txt')) == CLASSES
    val = lines_of(osp.join(cwd, data, 'val.txt'))
    assert sorted(int(line.split()[1]) for line in val) == [0, 1, 2]


@pytest.mark.slow
def test_pretraining_reads_the_folder_and_says_so(page, walkthrough):
    cwd, results = walkthrough
    data = positional(page['lists'])[0]
    log = _ok(results, 'train')
    assert (f'--cfg-options data_root={data} set '
            'train_dataloader.dataset.data_root, '
            'val_dataloader.dataset.data_root') in log
    assert ('--cfg-options num_classes=3 set model.num_classes, '
            'train_dataloader.dataset.num_classes, '
            'val_dataloader.dataset.num_classes') in log
    assert (f'CustomImageList at {data}: 21 images of 3 classes from '
            'train.txt') in log
    assert (f'CustomImageList at {data}: 3 images of 3 classes from '
            'val.txt') in log
    assert 'no checkpoint' not in log  # a fresh work dir, no --resume
    work_dir = option(page['train'], '--work-dir')
    ckpt = load_checkpoint(osp.join(cwd, work_dir, f'epoch_{CI_EPOCHS}.pth'))
    # 21 images, 4 a batch, the last one dropped: 5 iterations an epoch
    assert ckpt['meta']['iter'] == 10
    assert ckpt['meta']['dataset_meta'] == {'classes': CLASSES}
    state = ckpt['state_dict']
    assert state['prototypes'].shape == (3, 16)
    assert state['classifier.weight'].shape == (3, 512)
    assert torch.isfinite(state['prototypes']).all()


@pytest.mark.slow
def test_test_tool_evaluates_the_held_out_images(page, walkthrough):
    _, results = walkthrough
    data = positional(page['lists'])[0]
    log = _ok(results, 'test')
    assert (f'CustomImageList at {data}: 3 images of 3 classes from '
            'val.txt') in log
    assert 'Epoch(val) [0][1/1]    accuracy/top1:' in log


@pytest.mark.slow
def test_noise_cleaning_lists_the_folder_images(page, walkthrough):
    cwd, results = walkthrough
    data = positional(page['lists'])[0]
    _ok(results, 'clean')
    with open(osp.join(cwd, option(page['clean'], '--out'))) as f:
        cleaned = json.load(f)
    train = dict(
        line.rsplit(' ', 1)
        for line in lines_of(osp.join(cwd, data, 'train.txt')))
    assert set(cleaned) <= set(train)
    assert set(cleaned.values()) <= {0, 1, 2}
    with open(
            osp.join(cwd, option(page['clean'], '--work-dir'),
                     'noise_cleaning_summary.json')) as f:
        summary = json.load(f)
    assert summary['total']['images'] == 21
    assert summary['total']['cleaned'] == len(cleaned)


@pytest.mark.slow
def test_checkpoint_converts_for_detectron2(page, walkthrough):
    cwd, results = walkthrough
    out = _ok(results, 'd2')
    output = positional(page['d2'])[1]
    assert f'wrote {output}' in out
    with open(osp.join(cwd, output), 'rb') as f:
        model = pickle.load(f)['model']
    assert model['stem.conv1.weight'].shape == (64, 3, 7, 7)
    # ResNet-18: two basic blocks a stage
    assert sorted({k.split('.')[1]
                   for k in model if k.startswith('res5.')}) == ['0', '1']
    assert not any(
        k.startswith(('momentum', 'classifier', 'queue')) for k in model)


@pytest.mark.slow
def test_work_dirs_are_where_the_user_said(page, walkthrough):
    cwd, results = walkthrough
    for step in STEPS.values():
        _ok(results, step)
    said = {
        option(page[step], '--work-dir')
        for step in ('train', 'test', 'clean')
    }
    assert sorted(said) == [
        'work_dirs/cleaning', 'work_dirs/mine', 'work_dirs/test'
    ]
    assert sorted(os.listdir(osp.join(
        cwd, 'work_dirs'))) == ['cleaning', 'mine', 'test']
