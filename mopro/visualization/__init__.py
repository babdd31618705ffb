"""Pictures: the noise-cleaning report and accuracy curves (matplotlib,
Agg backend, atomic PNG writes)."""
from .curves import read_val_curve, save_accuracy_curves
from .noise_cleaning import (class_changes_figure, save_class_changes,
                             save_report, save_sample_grid)

__all__ = [
    'class_changes_figure', 'read_val_curve', 'save_accuracy_curves',
    'save_class_changes', 'save_report', 'save_sample_grid'
]
