from .algorithms import MoPro
from .heads import MoProHead
from .noise_correction import OOD_LABEL, correct_labels, update_prototypes

__all__ = [
    'MoPro', 'MoProHead', 'OOD_LABEL', 'correct_labels', 'update_prototypes'
]
