"""MoPro on OpenMMLab: webly-supervised learning with momentum prototypes.

Importing the package applies its library patches
(:func:`mopro.utils.environment.setup_environment`, before anything imports
mmpretrain) and registers every component (model, head, hook, datasets,
transforms, metrics) into the mmpretrain/mmengine registries, so configs
may also load it with ``custom_imports=dict(imports=['mopro'])``.
"""
from .utils.environment import setup_environment

setup_environment()

from . import datasets, engine, evaluation, gpu_data, models  # noqa: F401,E402
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'setup_environment']
