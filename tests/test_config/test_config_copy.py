"""The copy of the config that the Runner writes to its work dir trains
as a config of its own (``tools/train.py work_dirs/x/x.py --work-dir
...``): written without the variables of the config files, which would
be top-level keys that nothing reads in a file without ``_base_``."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mopro.config.top_level_keys import without_unread_keys
from mopro.utils.errors import ConfigError
from helpers import ROOT
from helpers.configs import tool_config

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*.py')))
# the switches a config leaves for the user to set
USER_SWITCHES = {
    'mopro_r50_custom.py': {
        'data_root': '/data/mine',
        'num_classes': 3
    }
}


def _written_copy(config: str, tmp_path) -> tuple:
    """The config as a run loads it, and the copy its Runner writes,
    read back as a config."""
    cfg = tool_config(config, USER_SWITCHES.get(osp.basename(config)))
    copy = str(tmp_path / osp.basename(config))
    without_unread_keys(cfg).dump(copy)
    return cfg, copy


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_the_copy_of_every_config_reads_as_the_run_read_it(config, tmp_path):
    cfg, copy = _written_copy(config, tmp_path)
    loaded = tool_config(copy)
    kept = without_unread_keys(cfg).to_dict()
    assert kept, config
    assert {key: loaded[key] for key in kept} == kept
    assert set(loaded.keys()) == set(kept)


def test_a_key_misspelled_in_the_copy_is_still_caught(tmp_path):
    _, copy = _written_copy(
        osp.join(ROOT, 'configs', 'ce_r18_demo.py'), tmp_path)
    with open(copy, 'a', encoding='utf-8') as f:
        f.write("\ntrain_dataloder = dict(batch_size=4)\n")
    with pytest.raises(
            ConfigError, match="nothing reads the top-level key "
            "'train_dataloder' \\(did you mean "
            "'train_dataloader'\\?\\)"):
        tool_config(copy)


def test_the_copy_keeps_what_the_runner_reads():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py'))
    kept = without_unread_keys(cfg)
    assert 'dataset_type' in cfg and 'dataset_type' not in kept
    assert kept.train_dataloader == cfg.train_dataloader
    assert kept.model == cfg.model
