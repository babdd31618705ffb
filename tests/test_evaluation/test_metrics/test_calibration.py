"""CalibratedAccuracy: accuracy + l2 calibration error (Section 5.4)."""
import math
import os
import os.path as osp

import pytest
import torch
from mmpretrain.registry import DATASETS, METRICS

from mopro.datasets.imagenet_variants import (IMAGENET_A_INDICES,
                                              IMAGENET_R_INDICES)
from mopro.evaluation.metrics.calibration import (calibration_error,
                                                  equal_mass_bins)


def _samples(scores, labels):
    return [
        dict(
            pred_score=torch.tensor(s, dtype=torch.float64),
            gt_label=torch.tensor([y])) for s, y in zip(scores, labels)
    ]


def test_hand_computed_example(tmp_path):
    # 3 classes, 5 samples; bin_size 2 -> bins of sorted confidences
    # [0.4, 0.5] and [0.6, 0.7, 0.9] (the last bin takes the remainder)
    scores = [
        [0.9, 0.05, 0.05],  # conf .9, pred 0, label 0: correct
        [0.2, 0.7, 0.1],  # conf .7, pred 1, label 2: wrong
        [0.3, 0.3, 0.4],  # conf .4, pred 2, label 2: correct
        [0.5, 0.25, 0.25],  # conf .5, pred 0, label 1: wrong
        [0.1, 0.6, 0.3]
    ]  # conf .6, pred 1, label 1: correct
    labels = [0, 2, 2, 1, 1]
    metric = METRICS.build(
        dict(type='CalibratedAccuracy', bin_size=2, out_dir=str(tmp_path)))
    metric.process(None, _samples(scores, labels))
    result = metric.evaluate(5)
    # bin 1: conf (0.4+0.5)/2 = 0.45, acc 1/2; bin 2: conf 2.2/3, acc 2/3
    expected = math.sqrt(2 / 5 * (0.5 - 0.45)**2 + 3 / 5 *
                         (2 / 3 - 2.2 / 3)**2)
    assert result['robustness/top1'] == pytest.approx(60.0)
    assert result['robustness/calibration_error'] == pytest.approx(
        expected * 100, abs=1e-9)
    assert osp.getsize(tmp_path / 'reliability_diagram.png') > 1000


def test_perfect_calibration_is_zero():
    conf = [0.5, 0.5, 0.5, 0.5]
    correct = [1, 0, 1, 0]
    error, bins = calibration_error(conf, correct, bin_size=4)
    assert error == 0.0
    assert bins == [(0.5, 0.5, 4)]
    assert equal_mass_bins(3, 100) == [(0, 3)]
    assert equal_mass_bins(250, 100) == [(0, 100), (100, 250)]


def test_class_subset_restricts_scores():
    # 6 model classes, subset [1, 4]: label 0 means class 1, label 1 class 4
    logits = torch.tensor([[5.0, 1.0, 0.0, 0.0, 2.0, 0.0]])
    scores = logits.softmax(-1)
    metric = METRICS.build(
        dict(type='CalibratedAccuracy', class_subset=[1, 4], bin_size=1))
    metric.process(None, _samples(scores.tolist(), [1]))
    result = metric.evaluate(1)
    conf = logits[0, [1, 4]].softmax(-1).max().item()  # softmax of 2 logits
    assert result['robustness/top1'] == 100.0
    assert result['robustness/calibration_error'] == pytest.approx(
        (1 - conf) * 100, rel=1e-5)


def test_index_lists_and_bad_subset():
    for indices in (IMAGENET_R_INDICES, IMAGENET_A_INDICES):
        assert len(indices) == 200 == len(set(indices))
        assert list(indices) == sorted(indices)
        assert 0 <= indices[0] and indices[-1] < 1000
    # the tables of the releases, as they stood in Python before they moved
    # to imagenet_variants.json (sums, ends)
    assert (sum(IMAGENET_R_INDICES), IMAGENET_R_INDICES[:3],
            IMAGENET_R_INDICES[-1]) == (86135, (1, 2, 4), 988)
    assert (sum(IMAGENET_A_INDICES), IMAGENET_A_INDICES[:3],
            IMAGENET_A_INDICES[-1]) == (102178, (6, 11, 13), 988)
    with pytest.raises(ValueError, match='imagenet-r'):
        METRICS.build(dict(type='CalibratedAccuracy', class_subset='x'))


def test_imagenet200_dataset(tmp_path):
    root = tmp_path / 'imagenet-a'
    for i in range(200):
        os.makedirs(root / f'n{i:08d}')
    (root / 'n00000003' / 'a.jpg').write_bytes(b'x')
    (root / 'n00000199' / 'b.JPEG').write_bytes(b'x')
    ds = DATASETS.build(
        dict(type='ImageNet200', data_root=str(root), variant='imagenet-a',
             test_mode=True))
    assert len(ds) == 2
    assert ds.get_gt_labels().tolist() == [3, 199]
    os.rmdir(root / 'n00000010')
    with pytest.raises(ValueError, match='200 class folders, found 199'):
        DATASETS.build(
            dict(type='ImageNet200', data_root=str(root),
                 variant='imagenet-a')).full_init()


def test_robustness_config_end_to_end(tmp_path):
    """tools/test.py with the ImageNet-R config on a tiny fake ImageNet-R
    and a tiny 1000-class MoPro checkpoint."""

    from mopro.apis import evaluate_checkpoint
    from helpers import ROOT
    from helpers.configs import (tiny_mopro_options, tool_config,
                                 untrained_checkpoint)
    from helpers.data import write_image

    root = tmp_path / 'imagenet-r'
    wnids = [f'n{i:08d}' for i in range(200)]
    for c in (0, 5, 199):
        for i in range(2):
            write_image(str(root / wnids[c] / f'{i}.jpg'), c * 10 + i)
    for wnid in wnids:
        os.makedirs(root / wnid, exist_ok=True)
    config = osp.join(ROOT, 'configs', 'robustness_r50_imagenet_r.py')
    options = tiny_mopro_options('unused', str(tmp_path / 'work'), 1000)
    options = {
        k: v
        for k, v in options.items() if k.startswith(('model.', 'work_dir'))
    }
    ckpt = untrained_checkpoint(config, options, str(tmp_path / 'mopro.pth'))
    options.update({
        'test_dataloader.dataset.data_root': str(root),
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_dataloader.dataset.pipeline.1.scale': 32,
        'test_dataloader.dataset.pipeline.2.crop_size': 32,
    })
    metrics = evaluate_checkpoint(
        tool_config(config, options), ckpt, sets=['test'])
    assert set(metrics) == {
        'test/robustness/top1', 'test/robustness/calibration_error'
    }
    assert 0 <= metrics['test/robustness/top1'] <= 100
    assert 0 <= metrics['test/robustness/calibration_error'] <= 100
    pngs = [
        osp.join(d, f) for d, _, fs in os.walk(tmp_path / 'work') for f in fs
        if f.startswith('reliability_diagram')
    ]
    assert pngs and all(f.endswith('.png') for f in pngs)
