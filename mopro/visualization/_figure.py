"""Figures drawn without pyplot (no display, no global backend switch)
and saved atomically."""
from typing import Tuple

from matplotlib.figure import Figure

from ..utils.fileio import atomic_path

# small files for reports and the repository
DPI = 80


def new_figure(size: Tuple[float, float]) -> Figure:
    """A figure of ``size`` inches, not managed by pyplot."""
    return Figure(figsize=size)


def save_figure(fig: Figure, path: str) -> str:
    """Save ``fig`` as a PNG at ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=DPI)
    return path
