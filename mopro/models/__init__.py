from .algorithms import MoPro, check_queue_fits
from .classifiers import CompilableImageClassifier
from .heads import MoProHead
from .noise_correction import OOD_LABEL, correct_labels, update_prototypes
from .utils import MoProDataPreprocessor

__all__ = [
    'MoPro', 'CompilableImageClassifier', 'MoProHead', 'MoProDataPreprocessor',
    'OOD_LABEL', 'check_queue_fits', 'correct_labels', 'update_prototypes'
]
