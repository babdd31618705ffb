"""MoPro on OpenMMLab: webly-supervised learning with momentum prototypes.

Importing the package registers every component (model, head, hook,
datasets, transforms, metrics) into the mmpretrain/mmengine registries, so
configs may also load it with ``custom_imports=dict(imports=['mopro'])``.
"""
import warnings

# mmcv-lite has no compiled ops; mmcv says so at import although this
# project needs none of them.
warnings.filterwarnings(
    'ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .version import __version__  # noqa: E402
from .utils import mmpretrain_compat  # noqa: E402

mmpretrain_compat.install()  # before anything imports mmpretrain

from .transfer import d2_compat  # noqa: E402
from .utils import checkpoint as _checkpoint  # noqa: F401,E402
from . import datasets, engine, evaluation, models  # noqa: F401,E402

d2_compat.install()

__all__ = ['__version__']
