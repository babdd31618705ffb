"""A mistyped config key is one line before the work, naming the key and
the closest one that exists: the top-level keys (a ``--cfg-options`` key
or a key of the file that nothing reads) and the arguments of every built
component (dataloaders, datasets, samplers, loops, optimizer wrapper and
optimizer, schedulers, evaluators, visualiser, log processor, model
wrapper, ``randomness``), checked against the registered class's
signature. ``tools/train.py`` runs in this process
(``helpers.commands.call_tool``).

Before, a misspelt dataset, loop or optimizer argument ended in a
``TypeError`` traceback once the Runner built the component; a misspelt
top-level key (``train_dataloder.batch_size=4``), sampler, scheduler,
evaluator or visualiser argument was ignored or failed late, and the run
trained with the config's values, exit 0.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mopro.config import config_files
from mopro.config.top_level_keys import check_top_level_keys
from mopro.engine.run_checks import check_run_config
from helpers import ROOT
from helpers.commands import call_tool, tool_module
from helpers.configs import tiny_mopro_options
from helpers.data import make_webvision

V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _did_you_mean(key: str, cls: str, name: str, close: str) -> str:
    return (f'{key}.{name}: {cls} has no argument {name!r} (did you mean '
            f'{close!r}?)')


MISTYPED = {
    'dataset': ('train_dataloader.dataset.max_bad_fractoin=0.5',
                _did_you_mean('train_dataloader.dataset', 'WebVision',
                              'max_bad_fractoin', 'max_bad_fraction')),
    'train_loop': ('train_cfg.max_epoch=2',
                   _did_you_mean('train_cfg', 'EpochBasedTrainLoop',
                                 'max_epoch', 'max_epochs')),
    'optimizer': ('optim_wrapper.optimizer.weight_decy=0.1',
                  _did_you_mean('optim_wrapper.optimizer', 'SGD',
                                'weight_decy', 'weight_decay')),
    'optim_wrapper': ('optim_wrapper.clip_gard=None',
                      _did_you_mean('optim_wrapper', 'AmpOptimWrapper',
                                    'clip_gard', 'clip_grad')),
    'dataloader': ('train_dataloader.num_worker=0',
                   _did_you_mean('train_dataloader', 'DataLoader',
                                 'num_worker', 'num_workers')),
    'sampler': ('train_dataloader.sampler.shufle=False',
                _did_you_mean('train_dataloader.sampler', 'ResumableSampler',
                              'shufle', 'shuffle')),
    'scheduler': ('param_scheduler.0.gama=0.5',
                  _did_you_mean('param_scheduler.0', 'MultiStepLR', 'gama',
                                'gamma')),
    'evaluator': ('val_evaluator.top_k=[1]',
                  _did_you_mean('val_evaluator', 'Accuracy', 'top_k', 'topk')),
    'val_loop': ('val_cfg.fp_16=True',
                 _did_you_mean('val_cfg', 'ValLoop', 'fp_16', 'fp16')),
    'visualizer': ('visualizer.nam=x',
                   _did_you_mean('visualizer', 'UniversalVisualizer', 'nam',
                                 'name')),
    'log_processor': ('log_processor.window_sise=10',
                      _did_you_mean('log_processor', 'LogProcessor',
                                    'window_sise', 'window_size')),
    'randomness': ('randomness.deterministc=True',
                   _did_you_mean('randomness', 'Runner.set_randomness',
                                 'deterministc', 'deterministic')),
    'top_level': ('train_dataloder.batch_size=4',
                  '--cfg-options train_dataloder.batch_size: nothing reads '
                  "the top-level key 'train_dataloder' (did you mean "
                  "'train_dataloader'?)"),
    'config_variable':
    ('list_classes=5000', '--cfg-options list_classes: nothing reads the '
     "top-level key 'list_classes' (a variable of the "
     'config: mmengine substituted it into the keys '
     'built from it when it read the file; set those '
     'keys)'),
}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    return make_webvision(str(tmp_path_factory.mktemp('keys')), size=32)


def _train(config, data_root, work, capsys, monkeypatch, *options):
    tiny = tiny_mopro_options(data_root, str(work))
    tiny.update({
        'train_cfg.max_epochs': 1,
        'visualizer.vis_backends': None,
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None
    })
    return call_tool(
        tool_module('train'), [
            config, '--cfg-options', *[f'{k}={v}'
                                       for k, v in tiny.items()], *options
        ], capsys, monkeypatch)


@pytest.mark.parametrize('case', list(MISTYPED))
def test_a_mistyped_key_is_one_line_before_the_work(data_root, tmp_path,
                                                    capsys, monkeypatch, case):
    option, message = MISTYPED[case]
    work = tmp_path / 'work'
    result = _train(V1, data_root, work, capsys, monkeypatch, option)
    assert result.error == f'error: {message}'
    assert not work.exists()


def test_a_key_of_the_file_that_nothing_reads(data_root, tmp_path, capsys,
                                              monkeypatch):
    config = tmp_path / 'mine.py'
    config.write_text(f'_base_ = [{V1!r}]\n'
                      'train_dataloder = dict(batch_size=4)\n')
    work = tmp_path / 'work'
    result = _train(str(config), data_root, work, capsys, monkeypatch)
    assert result.error == (
        f"error: {config}:2: nothing reads the top-level key "
        "'train_dataloder' (did you mean 'train_dataloader'?)")
    assert not work.exists()


@pytest.mark.parametrize('config',
                         sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))),
                         ids=osp.basename)
def test_every_shipped_config_passes(config):
    """The checks pass the configs as shipped: every key read, every
    argument taken."""
    cfg = Config.fromfile(config)
    check_top_level_keys(cfg, config_files(config))
    check_run_config(cfg)
