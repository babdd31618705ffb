from . import pretrained_init  # noqa: F401
