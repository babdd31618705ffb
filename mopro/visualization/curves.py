"""Accuracy over epochs, from the validation results mmengine logs."""
import json
import os.path as osp
from typing import Dict, List, Mapping, Tuple

from matplotlib.ticker import MaxNLocator

from ..utils.errors import DataError
from ._figure import new_figure, save_figure

Curve = Tuple[List[int], List[float]]


def read_val_curve(log_dir: str, key: str = 'accuracy/top1') -> Curve:
    """``(epochs, values)`` of validation metric ``key`` of a Runner's run,
    from ``log_dir/vis_data/scalars.json`` (mmengine's LocalVisBackend:
    one JSON object per logged step; validation lines carry ``step``, the
    epoch). A step logged twice keeps its last value."""
    path = osp.join(log_dir, 'vis_data', 'scalars.json')
    if not osp.isfile(path):
        raise DataError(f'{path}: no logged scalars (the config needs '
                        "vis_backends=[dict(type='LocalVisBackend')])")
    values: Dict[int, float] = {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f'{path}:{number}: not a JSON line') from None
            if key in record:
                values[int(record['step'])] = float(record[key])
    epochs = sorted(values)
    return epochs, [values[e] for e in epochs]


def save_accuracy_curves(curves: Mapping[str, Curve], path: str,
                         title: str = 'clean test accuracy') -> str:
    """Plot ``{label: (epochs, top-1 %)}`` as one line each into the PNG
    ``path``; return ``path``."""
    fig = new_figure((5.5, 3.4))
    ax = fig.subplots()
    for label, (epochs, values) in curves.items():
        ax.plot(epochs, values, marker='o', markersize=3, label=label)
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
