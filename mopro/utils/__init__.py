from .fileio import atomic_path

__all__ = ['atomic_path']
