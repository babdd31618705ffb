"""What the command-line tools do, as functions: each tool parses its
flags and calls one of these (``tools/train.py``: :func:`train_model`,
``tools/test.py``: :func:`evaluate_checkpoint`, ``tools/noise_cleaning.py``:
:func:`clean_noisy_dataset`,
``tools/model_converters/convert_from_original.py``:
:func:`convert_original_checkpoint`)."""
from .convert import convert_original_checkpoint
from .evaluate import evaluate_checkpoint, sets_to_run
from .noise_cleaning import clean_noisy_dataset
from .train import train_model

__all__ = [
    'clean_noisy_dataset', 'convert_original_checkpoint',
    'evaluate_checkpoint', 'sets_to_run', 'train_model'
]
