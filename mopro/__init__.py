"""MoPro on OpenMMLab: webly-supervised learning with momentum prototypes.

Importing the package applies its library patches
(:func:`mopro.environment.setup_environment`, before anything imports
mmpretrain), then registers every component into the mmpretrain/mmengine
registries, each through one import below (model, head, hooks, Runner,
datasets, transforms, samplers, metrics, the GPU data path, the
``MoProPretrained`` initialiser, the ``atomic_local`` file backend), so
configs may also load it with ``custom_imports=dict(imports=['mopro'])``.
"""
from .environment import setup_environment

setup_environment()

from . import datasets, engine, evaluation, gpu_data, models  # noqa: F401,E402
from .transfer import pretrained_init  # noqa: F401,E402
from .utils import fileio  # noqa: F401,E402
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'setup_environment']
