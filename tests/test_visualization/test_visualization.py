"""The pictures (mopro.visualization): the noise-cleaning report's
captions (class names, original -> corrected, the truth where known), a
class-change chart with one bar group per class and class names on the
axis, and accuracy curves read back from mmengine's logged scalars."""
import json

import numpy as np
import pytest
from PIL import Image

from mopro.evaluation.noise_cleaning import summarize
from mopro.utils.errors import DataError
from mopro.visualization import (class_changes_figure, noise_cleaning,
                                 read_val_curve, save_accuracy_curves,
                                 save_report)

NAMES = ['zero', 'one', 'two', 'three']
# image: 0     1     2     3     4     5     6
ORIGINAL = np.array([0, 1, 1, 2, 3, 3, 0])
PSEUDO = np.array([0, 2, -1, 2, 1, 3, -1])  # 1: 1->2, 4: 3->1, 2/6: OOD
TRUTH = ['zero', 'two', 'eight', 'two', 'three', 'three', 'zero']


class FakeDataset:
    """What save_report reads of an ImageListDataset."""

    def __init__(self, root, classes=NAMES):
        self.metainfo = dict(classes=classes)
        self.root = root

    def get_data_info(self, idx):
        return dict(img_path=str(self.root / f'{idx}.png'))


@pytest.fixture
def images(tmp_path):
    for i in range(len(ORIGINAL)):
        Image.new('L', (32, 32), 40 * i).save(tmp_path / f'{i}.png')
    return tmp_path


def test_report_captions_name_classes_and_truth(images, monkeypatch):
    grids = {}

    def capture(image_paths, titles, heading, path, colors=None):
        grids[path.rsplit('/', 1)[-1]] = (image_paths, titles, colors)
        return path

    monkeypatch.setattr(noise_cleaning, 'save_sample_grid', capture)
    summary = summarize(ORIGINAL, PSEUDO, len(NAMES))
    paths = save_report(
        FakeDataset(images), ORIGINAL, PSEUDO, summary, str(images / 'out'),
        truth=TRUTH)
    assert sorted(paths) == [
        'class_changes', 'ood_samples', 'relabelled_samples'
    ]
    moved, titles, colors = grids['relabelled_samples.png']
    assert moved == [str(images / '1.png'), str(images / '4.png')]
    assert titles == [
        'one \u2192 two\n(true: two)', 'three \u2192 one\n(true: three)'
    ]
    assert colors == ['tab:green', 'tab:red']
    ood, titles, colors = grids['ood_samples.png']
    assert ood == [str(images / '2.png'), str(images / '6.png')]
    assert titles == [
        'web label: one\n(true: eight)', 'web label: zero\n(true: zero)'
    ]
    assert colors == ['tab:green', 'tab:red']
    # without the truth: the plain captions, no colours
    grids.clear()
    save_report(
        FakeDataset(images), ORIGINAL, PSEUDO, summary, str(images / 'out'))
    assert grids['relabelled_samples.png'][1:] == ([
        'one \u2192 two', 'three \u2192 one'
    ], None)
    # a dataset without class names: the numbers
    grids.clear()
    save_report(
        FakeDataset(images, classes=None), ORIGINAL, PSEUDO, summary,
        str(images / 'out'))
    assert grids['ood_samples.png'][1] == ['web label: 1', 'web label: 0']


def test_report_writes_small_pngs(images):
    summary = summarize(ORIGINAL, PSEUDO, len(NAMES))
    paths = save_report(
        FakeDataset(images), ORIGINAL, PSEUDO, summary, str(images / 'out'),
        truth=TRUTH)
    for path in paths.values():
        with open(path, 'rb') as f:
            data = f.read()
        assert data[:8] == b'\x89PNG\r\n\x1a\n'
        assert len(data) < 100_000


def _bars(ax):
    """Bar heights by legend label, in x order."""
    heights = {}
    for container in ax.containers:
        heights[container.get_label()] = [
            int(round(bar.get_height())) for bar in container
        ]
    return heights


def test_class_changes_one_group_per_class_with_names():
    summary = summarize(ORIGINAL, PSEUDO, len(NAMES))
    ax = class_changes_figure(summary, NAMES).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    assert _bars(ax) == {
        'relabelled away': [0, 1, 0, 1],
        'declared OOD': [1, 1, 0, 0],
        'relabelled into': [0, 1, 1, 0]
    }
    assert all(float(t).is_integer() for t in ax.get_yticks())


def test_class_changes_of_many_classes_shows_those_that_changed_most():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 100, 5000)
    pseudo = original.copy()
    pseudo[original == 7] = 8  # classes 7 and 8: the largest changes
    pseudo[(original == 50) & (np.arange(5000) % 2 == 0)] = -1
    names = [f'class{i}' for i in range(100)]
    summary = summarize(original, pseudo, 100)
    ax = class_changes_figure(summary, names, max_classes=3).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ['class7', 'class8', 'class50']
    assert '3 of 100 classes' in ax.get_title()


def _scalars(log_dir, lines):
    vis = log_dir / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(
        line if isinstance(line, str) else json.dumps(line) + '\n'
        for line in lines))


def test_read_val_curve(tmp_path):
    _scalars(
        tmp_path,
        [
            {
                'lr': 0.1,
                'loss': 2.0,
                'step': 5
            },
            {
                'accuracy/top1': 40.0,
                'step': 2
            },
            {
                'lr': 0.1,
                'loss': 1.0,
                'step': 10
            },
            {
                'accuracy/top1': 55.5,
                'step': 4
            },
            {
                'accuracy/top1': 56.0,
                'step': 4
            },  # logged again: the last counts
        ])
    assert read_val_curve(str(tmp_path)) == ([2, 4], [40.0, 56.0])


def test_read_val_curve_errors(tmp_path):
    with pytest.raises(DataError, match='no logged scalars'):
        read_val_curve(str(tmp_path))
    _scalars(tmp_path, [{'accuracy/top1': 40.0, 'step': 2}, 'oops\n'])
    path = tmp_path / 'vis_data' / 'scalars.json'
    with pytest.raises(DataError, match=f'^{path}:2: not a JSON line$'):
        read_val_curve(str(tmp_path))


def test_accuracy_curves_png(tmp_path):
    path = save_accuracy_curves(
        {
            'MoPro': ([2, 4], [50.0, 70.0]),
            'CE': ([2, 4], [45.0, 40.0])
        }, str(tmp_path / 'acc.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
