"""Config mistakes through tools/train.py and tools/test.py as users run
them (a process per command, side by side): one ``error: ...`` line naming
the key, exit status 1, before a checkpoint is written."""
import os.path as osp

import pytest

from helpers import ROOT
from helpers.commands import run_tools
from helpers.configs import tiny_mopro_options, untrained_checkpoint
from helpers.data import make_webvision

K = 4

# Config values that used to fail only once used: after a whole epoch and
# its checkpoint (top-k above the classes, val_interval=0), at the first
# iteration (a batch larger than MoPro's queue), or never (a batch larger
# than the training set: exit 0 with the untrained weights saved as
# epoch_1.pth). ``{name: (tool, --cfg-options items, flags, the last line
# of stderr)}``; exit status 1 for an ``error:`` line, else 2 (usage).
CONFIG_MISTAKES = {
    'train_batch_above_dataset':
    ('train', ['train_dataloader.batch_size=40', 'model.queue_len=64'], [],
     'error: train_dataloader makes no batch: 32 training images, '
     'train_dataloader.batch_size=40 x 1 process(es), drop_last=True: lower '
     'the batch size or set train_dataloader.drop_last=False'),
    'train_topk_above_classes':
    ('train', ['val_evaluator.topk=[5]', 'train_cfg.val_interval=1'], [],
     'error: val_evaluator.topk: top-5 accuracy needs at least 5 classes, '
     'the model has 4'),
    'train_val_interval_zero':
    ('train', ['train_cfg.val_interval=0'], [],
     'error: train_cfg.val_interval must be >= 1, got 0'),
    'train_batch_above_queue':
    ('train', ['model.queue_len=2'], [],
     'error: model.queue_len=2 is smaller than the global batch 4 '
     '(train_dataloader.batch_size=4 x 1 process(es)): MoPro enqueues every '
     'batch'),
    'train_work_dir_is_a_file':
    ('train', [], ['--work-dir', '{blocker}'],
     'error: {blocker}: the work dir is a file, not a folder'),
    'train_option_without_value': ('train', ['foo'], [],
                                   "train.py: error: argument --cfg-options: "
                                   "expected KEY=VALUE, got 'foo'"),
    'test_loop_half_unset':
    ('test', ['test_dataloader=None'], ['--sets', 'val'],
     'error: test_dataloader None but test_cfg, test_evaluator set: mmengine '
     'runs the test loop with all three or none (add test_cfg=None '
     'test_evaluator=None)'),
    'test_topk_above_classes':
    ('test', ['val_evaluator.topk=[5]'], ['--sets', 'val'],
     'error: val_evaluator.topk: top-5 accuracy needs at least 5 classes, '
     'the model has 4'),
}


@pytest.fixture(scope='module')
def config_mistakes(tmp_path_factory):
    """The tools run on the tiny v1 config (one epoch) with each of
    CONFIG_MISTAKES, side by side, a work dir per case."""
    tmp = tmp_path_factory.mktemp('config_mistakes')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, size=32)
    config = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
    blocker = tmp / 'a_file'
    blocker.write_text('')
    options = tiny_mopro_options(root, '.', K)
    del options['work_dir']
    options.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None
    })
    ckpt = untrained_checkpoint(config, options, str(tmp / 'mopro.pth'))
    commands = []
    for name, (tool, items, flags, _) in CONFIG_MISTAKES.items():
        commands.append([
            tool, config, *([ckpt] if tool == 'test' else []), '--work-dir',
            str(tmp / 'work' / name),
            *[f.format(blocker=blocker) for f in flags], '--cfg-options',
            *[f'{k}={v}' for k, v in options.items()], *items
        ])
    return tmp, blocker, dict(zip(CONFIG_MISTAKES, run_tools(commands)))


@pytest.mark.slow
@pytest.mark.parametrize('case', CONFIG_MISTAKES)
def test_config_mistakes_end_the_tool_before_the_work(config_mistakes, case):
    """One line naming the key and what it allows, before a checkpoint is
    written."""
    tmp, blocker, results = config_mistakes
    result = results[case]
    message = CONFIG_MISTAKES[case][-1].format(blocker=blocker)
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    if message.startswith('error: '):
        assert result.error == message
    else:
        assert result.code == 2, result
        assert result.stderr.splitlines()[-1] == message
    work = tmp / 'work' / case
    written = [p.name for p in work.rglob('*')] if work.exists() else []
    assert not [
        n for n in written if n.endswith('.pth') or n == 'last_checkpoint'
    ], written
    assert blocker.read_text() == ''
