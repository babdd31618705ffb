"""Configs as the tools read them: the file and its bases with
``--cfg-options`` and the top-level switches applied (:mod:`.loading`,
:mod:`.switches`), every key checked against what reads it
(:mod:`.top_level_keys`, :mod:`.arguments`), and two folders of configs
compared as they resolve (:mod:`.diff`)."""
from .loading import check_config_copy, config_files, load_config, read_config

__all__ = ['check_config_copy', 'config_files', 'load_config', 'read_config']
