from .algorithms import MoPro
from .classifiers import CompilableImageClassifier
from .heads import MoProHead
from .noise_correction import OOD_LABEL, correct_labels, update_prototypes
from .utils import MoProDataPreprocessor

__all__ = [
    'MoPro', 'CompilableImageClassifier', 'MoProHead', 'MoProDataPreprocessor',
    'OOD_LABEL', 'correct_labels', 'update_prototypes'
]
