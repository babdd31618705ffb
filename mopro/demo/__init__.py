"""The embedded demo (``make demo``): MoPro vs cross-entropy on noisy
digits, with a progress line, a report and pictures (:mod:`.job`)."""
from .job import run_demo

__all__ = ['run_demo']
