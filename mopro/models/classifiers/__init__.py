from .image_classifier import CompilableImageClassifier

__all__ = ['CompilableImageClassifier']
