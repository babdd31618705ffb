"""The configs as configs/README.md describes them: the values in its
tables are the resolved ones; a recipe config sets its recipe itself, and
its bases hold the data plumbing, the runtime and the GPU switches."""
import ast
import os
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mopro.config.switches import get_key
from helpers import ROOT

CONFIGS = osp.join(ROOT, 'configs')
README = osp.join(CONFIGS, 'README.md')
ABSENT = object()


def readme_tables():
    """``(config names, rows)`` of each README table with a ``key``
    column; a row is ``(key, {config: cell})``."""
    with open(README, encoding='utf-8') as f:
        lines = f.read().splitlines()
    tables, header = [], None
    for line in lines:
        if not line.startswith('|'):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if header is None:
            header = cells
            configs = [
                c.strip('`') for c in cells
                if osp.isfile(osp.join(CONFIGS,
                                       c.strip('`') + '.py'))
            ]
            if 'key' in cells and configs:
                tables.append((configs, []))
            else:
                header = []
            continue
        if not header or set(line) <= set('|- '):
            continue
        row = dict(zip(header, cells))
        key = row['key'].strip('`')
        tables[-1][1].append((key, {c: row[f'`{c}`'] for c in tables[-1][0]}))
    return tables


TABLES = readme_tables()
ROWS = [(config, key, cell) for configs, rows in TABLES for key, cells in rows
        for config, cell in cells.items()]


def resolved(config: str) -> Config:
    return Config.fromfile(osp.join(CONFIGS, f'{config}.py'))


def test_readme_has_the_recipe_tables():
    names = [configs for configs, _ in TABLES]
    assert names == [
        [
            'mopro_r50_webvision_v1', 'mopro_r50_webvision_v05',
            'mopro_r50_webvision_v2'
        ],
        ['ce_r50_webvision_v1', 'ce_r50_webvision_v05', 'ce_r50_webvision_v2'],
        ['crt_r50_webvision_v1'],
        [
            'finetune_r50_imagenet_1pct', 'finetune_r50_imagenet_10pct',
            'finetune_r50_imagenet_v2_1pct', 'finetune_r50_imagenet_v2_10pct'
        ],
    ]
    assert len(ROWS) == 3 * 35 + 3 * 7 + 9 + 4 * 9


@pytest.mark.parametrize('config, key, cell', ROWS,
                         ids=[f'{c}:{k}' for c, k, _ in ROWS])
def test_readme_values_are_the_configs(config, key, cell):
    value = get_key(resolved(config), key, ABSENT)
    if cell == '-':  # not set: the class's default
        assert value is ABSENT
    else:
        assert value == ast.literal_eval(cell)


def _bases(config: str) -> list:
    """The ``_base_`` list of ``configs/<config>.py``."""
    with open(osp.join(CONFIGS, f'{config}.py'), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    bases = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == '_base_')
    return [bases] if isinstance(bases, str) else bases


def _bases_only(config: str, tmp_path) -> Config:
    """The config made of ``config``'s bases alone."""
    only = tmp_path / 'bases_only.py'
    only.write_text('_base_ = ' +
                    repr([osp.join(CONFIGS, b)
                          for b in _bases(config)]) + '\n')
    return Config.fromfile(str(only))


# the configs of the tables whose bases are all in _base_/ (the others
# inherit one of these)
RECIPES = sorted(c for c in {c
                             for c, _, _ in ROWS} if all(
                                 b.startswith('_base_/') for b in _bases(c)))


def test_each_table_has_a_recipe_config():
    assert RECIPES == [
        'ce_r50_webvision_v1', 'crt_r50_webvision_v1',
        'finetune_r50_imagenet_1pct', 'mopro_r50_webvision_v1'
    ]


@pytest.mark.parametrize('config', RECIPES)
def test_recipe_values_are_set_in_the_config_itself(config, tmp_path):
    """Every README row of a recipe config is set in that file: no base
    sets the value the config has (one file to read the recipe)."""
    bases, full = _bases_only(config, tmp_path), resolved(config)
    keys = [key for c, key, _ in ROWS if c == config]
    from_bases = [
        key for key in keys if get_key(full, key, ABSENT) is not ABSENT
        and get_key(bases, key, ABSENT) == get_key(full, key)
    ]
    assert from_bases == []


@pytest.mark.parametrize(
    'config, switches',
    [
        ('mopro_r50_webvision_v1', {
            'model.compile': dict(backend='inductor', mode=None, dynamic=None),
            'model.channels_last': True,
            'model.nonfinite': 'raise',
            'optim_wrapper.type': 'AmpOptimWrapper',
            'optim_wrapper.dtype': 'bfloat16'
        }),
        ('ce_r50_webvision_v1', {
            'model.compile': dict(backend='inductor', mode=None, dynamic=None),
            'model.nonfinite': 'raise',
            'optim_wrapper.type': 'AmpOptimWrapper'
        }),
        ('finetune_r50_imagenet_1pct', {
            'model.compile': dict(backend='inductor', mode=None, dynamic=None),
            'model.nonfinite': 'raise',
            'optim_wrapper.type': 'AmpOptimWrapper'
        }),
        # the frozen encoder of cRT is not compiled
        ('crt_r50_webvision_v1', {
            'model.compile': False,
            'model.nonfinite': 'raise',
            'optim_wrapper.type': 'AmpOptimWrapper'
        }),
    ])
def test_gpu_switches_come_from_the_runtime_bases(config, switches, tmp_path):
    full, bases = resolved(config), _bases_only(config, tmp_path)
    for key, value in switches.items():
        assert get_key(full, key, ABSENT) == value, key
        if key != 'model.compile' or value is not False:
            assert get_key(bases, key, ABSENT) == value, key


def test_runtime_bases_hold_no_recipe_value():
    for name in ('runtime_gpu.py', 'runtime_gpu_mopro.py',
                 'default_runtime.py'):
        cfg = Config.fromfile(osp.join(CONFIGS, '_base_', name))
        model = cfg.get('model') or {}
        assert set(model) <= {'compile', 'nonfinite', 'channels_last'}, name
        assert set(cfg.get('optim_wrapper')
                   or {}) <= {'type', 'dtype', 'loss_scale'}, name


def test_readme_names_every_config():
    with open(README, encoding='utf-8') as f:
        text = f.read()
    listed = set(re.findall(r'`([a-z0-9_]+)\.py`', text))
    configs = {
        osp.splitext(n)[0]
        for n in os.listdir(CONFIGS) if n.endswith('.py')
    }
    # `ce_r50_webvision_v1.py`, `_v05`, `_v2`: the short forms name a file
    short = set(re.findall(r'`(_[a-z0-9_]+)`', text))
    named = listed | {
        f'{base.rsplit("_", 1)[0]}{s}'
        for base in listed
        for s in short
    }
    assert configs - named == set()
