"""The top-level switches data_root, num_classes and max_epochs, as
``--cfg-options`` give them to the tools (mopro.config.load_config):
they move every key the config built from them, or fail naming the key."""
import argparse
import os
import os.path as osp

import pytest

from mopro.config import load_config
from mopro.config.switches import get_key
from mopro.utils.cli import add_config_args
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.log_records import log_messages

CONFIGS = osp.join(ROOT, 'configs')
ALL_CONFIGS = sorted(n for n in os.listdir(CONFIGS) if n.endswith('.py'))


def load(config, *options, work_dir='work'):
    """``load_config`` of ``tools/train.py CONFIG --cfg-options ...``."""
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    path = config if osp.isabs(config) else osp.join(CONFIGS, config)
    argv = [path, '--work-dir', work_dir]
    if options:
        argv += ['--cfg-options', *options]
    return load_config(parser.parse_args(argv))


def loader_roots(cfg):
    return {
        name: get_key(cfg, f'{name}_dataloader.dataset.data_root')
        for name in ('train', 'val', 'test') if cfg.get(f'{name}_dataloader')
    }


def test_demo_config_retargets_everything_at_once():
    """The reported case: ``data_root=... num_classes=...`` on the demo
    config trained on the demo digits; now both loaders, the model and the
    schedule follow, with one line per switch."""
    with log_messages() as logged:
        cfg = load('mopro_r18_demo.py', 'data_root=/my/data', 'num_classes=3',
                   'max_epochs=2')
    assert loader_roots(cfg) == {'train': '/my/data', 'val': '/my/data'}
    assert cfg.model.num_classes == 3
    assert cfg.train_dataloader.dataset.num_classes == 3
    assert cfg.val_dataloader.dataset.num_classes == 3
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.param_scheduler[0].T_max == 2
    assert logged[:3] == [
        '--cfg-options data_root=/my/data set '
        'train_dataloader.dataset.data_root, '
        'val_dataloader.dataset.data_root',
        '--cfg-options num_classes=3 set model.num_classes, '
        'train_dataloader.dataset.num_classes, '
        'val_dataloader.dataset.num_classes',
        '--cfg-options max_epochs=2 set train_cfg.max_epochs, '
        'param_scheduler.0.T_max',
    ]
    # the warm-up of 8 epochs is the user's to shorten: said, not changed
    assert cfg.custom_hooks[0].start_clean_epoch == 8
    assert logged[3:] == [
        'custom_hooks.0.start_clean_epoch=8 (0-based) is '
        'not reached in max_epochs=2'
    ]


def test_a_key_given_beside_its_switch_keeps_its_value():
    with log_messages() as logged:
        cfg = load('mopro_r18_demo.py', 'data_root=/my/data',
                   'val_dataloader.dataset.data_root=/my/val')
    assert loader_roots(cfg) == {'train': '/my/data', 'val': '/my/val'}
    assert logged == [
        '--cfg-options data_root=/my/data set '
        'train_dataloader.dataset.data_root '
        '(val_dataloader.dataset.data_root as given)'
    ]


def test_webvision_moved_keeps_the_imagenet_test_set():
    cfg = load('mopro_r50_webvision_v1.py', 'data_root=/fast/webvision')
    assert loader_roots(cfg) == {
        'train': '/fast/webvision',
        'val': '/fast/webvision',
        'test': 'data/imagenet/'
    }


def test_classes_and_root_switched_with_a_test_set_elsewhere_fail():
    """V1's test set is ImageNet at data/imagenet/: data_root does not
    move it, so a new class count would evaluate ImageNet with it."""
    with pytest.raises(ConfigError) as err:
        load('mopro_r50_webvision_v1.py', 'data_root=/my/data',
             'num_classes=3')
    assert str(err.value) == (
        '--cfg-options data_root=... num_classes=...: test_dataloader reads '
        'ImageNetVal at data/imagenet/, which data_root does not move, with '
        '1000 classes; pass test_dataloader=None test_evaluator=None '
        'test_cfg=None, or set test_dataloader.dataset too')
    cfg = load('mopro_r50_webvision_v1.py', 'data_root=/my/data',
               'num_classes=3', 'test_dataloader=None', 'test_evaluator=None',
               'test_cfg=None', 'val_evaluator.topk=[1]')
    assert loader_roots(cfg) == {'train': '/my/data', 'val': '/my/data'}
    assert cfg.model.num_classes == 3


def test_top5_needs_five_classes():
    with pytest.raises(ConfigError) as err:
        load('ce_r50_webvision_v1.py', 'num_classes=3',
             'test_evaluator.topk=[1]')
    assert str(err.value) == (
        'val_evaluator.topk=(1, 5): top-5 accuracy needs at least 5 '
        'classes, num_classes=3; pass --cfg-options val_evaluator.topk=[1]')


def test_classifier_classes_move_with_num_classes():
    cfg = load('ce_r50_webvision_v2.py', 'num_classes=300')
    assert (cfg.model.head.num_classes,
            cfg.model.data_preprocessor.num_classes) == (300, 300)
    assert [
        cfg[f'{s}_dataloader'].dataset.num_classes
        for s in ('train', 'val', 'test')
    ] == [300, 300, 300]


def test_max_epochs_moves_the_run_and_names_what_it_leaves():
    with log_messages() as logged:
        cfg = load('mopro_r50_webvision_v1.py', 'max_epochs=30')
    assert cfg.train_cfg.max_epochs == 30
    assert cfg.param_scheduler[0].milestones == [40, 80]
    assert logged == [
        '--cfg-options max_epochs=30 set train_cfg.max_epochs',
        'param_scheduler.0.milestones: [40, 80] lie beyond max_epochs=30; '
        'the lr does not decay there',
    ]


@pytest.mark.parametrize('config, option, message', [
    ('finetune_r50_imagenet_1pct.py', 'data_root=/my/data',
     '--cfg-options data_root: {path} has no top-level data_root switch; '
     "set the keys themselves (test_dataloader.dataset.data_root="
     "'data/imagenet/', train_dataloader.dataset.data_root="
     "'data/imagenet/', val_dataloader.dataset.data_root='data/imagenet/')"),
    ('finetune_r50_imagenet_1pct.py', 'num_classes=3',
     '--cfg-options num_classes: {path} has no top-level num_classes '
     'switch; set the keys themselves (model.head.num_classes=1000, '
     'model.data_preprocessor.num_classes=1000, '
     'test_dataloader.dataset.num_classes=1000, '
     'val_dataloader.dataset.num_classes=1000)'),
    ('mopro_r18_demo.py', 'num_classes=three',
     "--cfg-options num_classes must be an integer >= 1, got 'three'"),
    ('mopro_r18_demo.py', 'max_epochs=0',
     '--cfg-options max_epochs must be >= 1, got 0'),
    ('mopro_r50_custom.py', 'num_classes=3',
     '{path}: data_root is not set: pass --cfg-options data_root=... (the '
     'folder of the image lists; configs/README.md, Switches)'),
])
def test_switch_errors_name_the_key(config, option, message):
    with pytest.raises(ConfigError) as err:
        load(config, option)
    assert str(err.value) == message.format(path=osp.join(CONFIGS, config))


def test_switch_unused_by_the_config_is_an_error():
    # data_root is defined but nothing is read from it any more
    with pytest.raises(ConfigError) as err:
        load('mopro_r18_demo.py', 'data_root=/my/data',
             'train_dataloader=None', 'val_dataloader=None')
    assert str(err.value).startswith(
        f'--cfg-options data_root: {CONFIGS}/mopro_r18_demo.py sets '
        "data_root='data/demo_webvision/' but uses it for no key")


def test_config_redefining_a_switch_over_its_base_is_an_error(tmp_path):
    """mmengine set the base's loaders from the base's data_root: a child
    that sets data_root alone would train on the base's data."""
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{CONFIGS}/mopro_r18_demo.py']\n"
                     "data_root = '/my/data'\n")
    with pytest.raises(ConfigError) as err:
        load(str(child))
    assert str(err.value) == (
        f"{child}: data_root='/my/data' but train_dataloader.dataset."
        "data_root='data/demo_webvision/': a config that sets data_root "
        'over a base must set the keys the base built from it too '
        '(train_dataloader.dataset.data_root, '
        'val_dataloader.dataset.data_root; mmengine builds them when it '
        'reads the base), or leave data_root to the base and pass '
        '--cfg-options data_root=...')
    # with the keys set too it is a config like any other
    child.write_text(f"_base_ = ['{CONFIGS}/mopro_r18_demo.py']\n"
                     "data_root = '/my/data'\n"
                     'train_dataloader = dict(dataset=dict('
                     'data_root=data_root))\n'
                     'val_dataloader = dict(dataset=dict('
                     'data_root=data_root))\n')
    assert loader_roots(load(str(child))) == {
        'train': '/my/data',
        'val': '/my/data'
    }


@pytest.mark.parametrize('config', ALL_CONFIGS)
def test_every_config_moves_with_its_switches(config):
    """Each switch a config defines moves at least the key it is checked
    against (train data, the model's classes, the epochs)."""
    plain = load(
        config,
        'data_root=/d' if config == 'mopro_r50_custom.py' else 'work_dir=x',
        *(['num_classes=2'] if config == 'mopro_r50_custom.py' else []))
    options, expected = [], {}
    if 'data_root' in plain:
        options.append('data_root=/elsewhere')
        expected['train_dataloader.dataset.data_root'] = '/elsewhere'
    if 'num_classes' in plain:
        options.append('num_classes=7')
        expected['model.num_classes' if plain.model.type ==
                 'MoPro' else 'model.head.num_classes'] = 7
        options += [
            'test_dataloader=None', 'test_evaluator=None', 'test_cfg=None',
            'val_evaluator.topk=[1]'
        ]
    if 'max_epochs' in plain:
        options.append('max_epochs=3')
        expected['train_cfg.max_epochs'] = 3
    if not expected:
        pytest.skip(f'{config} defines no switch')
    cfg = load(config, *options)
    assert {key: get_key(cfg, key) for key in expected} == expected
