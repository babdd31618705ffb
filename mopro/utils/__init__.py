from .fileio import AtomicLocalBackend, atomic_path

__all__ = ['AtomicLocalBackend', 'atomic_path']
