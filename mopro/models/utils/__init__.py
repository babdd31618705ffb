from .data_preprocessor import MoProDataPreprocessor

__all__ = ['MoProDataPreprocessor']
