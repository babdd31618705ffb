"""Every patch the package applies to its libraries, in one place.

``import mopro`` calls :func:`setup_environment` once, before it imports
any of its modules (and with them mmpretrain); nothing else in the package
changes a library when it is imported, and no patch registers a component
(``mopro/__init__.py`` does, after the patches). The patches, each
documented where it lives:

- mmcv-lite's warning that its compiled ops are missing is silenced: this
  project needs none of them;
- :func:`mopro.utils.mmpretrain_compat.install`: mmpretrain 1.2 imports
  without its multimodal models (transformers 5);
- :func:`mopro.checkpoint.io.install_checkpoint_pickling`: the
  weights-only unpickler accepts mmengine's checkpoints, and
  ``HistoryBuffer`` pickles as plain lists;
- :func:`mopro.transfer.d2_compat.install`: detectron2 0.6's Python
  sources run without their compiled ops.

Calling it again does nothing.
"""
import warnings

_MMCV_OPS_WARNING = 'Fail to import ``MultiScaleDeformableAttention``'
_done = False


def setup_environment() -> None:
    """Apply every patch above, once per process (idempotent)."""
    global _done
    if _done:
        return
    # mmcv-lite has no compiled ops; mmcv says so at import although this
    # project needs none of them.
    warnings.filterwarnings('ignore', message=_MMCV_OPS_WARNING)
    from .utils import mmpretrain_compat
    mmpretrain_compat.install()  # before anything imports mmpretrain
    from .checkpoint.io import install_checkpoint_pickling
    install_checkpoint_pickling()
    from .transfer import d2_compat
    d2_compat.install()
    _done = True
