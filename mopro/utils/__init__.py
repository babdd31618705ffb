from .fileio import AtomicLocalBackend, atomic_path, write_json, write_text

__all__ = ['AtomicLocalBackend', 'atomic_path', 'write_json', 'write_text']
