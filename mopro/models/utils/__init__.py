from .data_preprocessor import MoProDataPreprocessor
from .gpu_views_preprocessor import MoProGPUViewsPreprocessor

__all__ = ['MoProDataPreprocessor', 'MoProGPUViewsPreprocessor']
