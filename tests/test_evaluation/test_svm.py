"""mopro.evaluation.svm and .low_shot: the low-shot SVM protocol (paper
Sec. 5.1, Table 2) and the image-list readers of mopro.datasets.lowshot."""
import math

import numpy as np
import pytest

from mopro.datasets.lowshot import VOC07_CLASSES, read_places205, read_voc07
from mopro.evaluation.low_shot import (evaluate_low_shot, format_table,
                                       low_shot_samples, sample_low_shot)
from mopro.evaluation.svm import (GOYAL_COST_GRID, average_precision,
                                  fit_linear_svm, normalize_features,
                                  places_svm, voc07_svm)
from mopro.utils.errors import ConfigError, DataError

C = len(VOC07_CLASSES)


# ----------------------------------------------------------------------
# average precision
@pytest.mark.parametrize(
    'labels, scores, expected',
    [
        ([1, 1, 0, 0], [4, 3, 2, 1], 1.0),
        # P = 1, 1/2, 2/3, 1/2 at R = .5, .5, 1, 1 -> .5 * 1 + .5 * 2/3
        ([1, 0, 1, 0], [.9, .8, .7, .6], 5 / 6),
        ([0, 0, 1], [3, 2, 1], 1 / 3),
        ([0, 1, 0, 1], [4, 3, 2, 1], 0.5),
        # interpolation: precision 1/2 at R=.5 is lifted to 2/3 (not 7/12)
        ([0, 1, 1], [3, 2, 1], 2 / 3),
        # scores order, not input order, matters
        ([0, 1, 1, 0], [1, 4, 3, 2], 1.0),
        # -1 and 0 (difficult) both count as negative
        ([1, -1, 0, 1], [4, 3, 2, 1], 0.5 * 1 + 0.5 * 0.5),
        # ties form one threshold
        ([1, 0], [1, 1], 0.5),
        ([1, 0, 1, 0], [2, 1, 1, 0], 0.5 * 1 + 0.5 * 2 / 3),
        ([1, 0, 0, 1], [0, 0, 0, 0], 0.5),
    ])
def test_average_precision_hand_computed(labels, scores, expected):
    assert average_precision(np.array(labels),
                             np.array(scores)) == pytest.approx(expected)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(
        average_precision(np.array([0, -1, 0]), np.array([1., 2., 3.])))


def test_average_precision_ties_ignore_input_order():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    perm = rng.permutation(40)
    assert average_precision(labels, scores) == pytest.approx(
        average_precision(labels[perm], scores[perm]), abs=1e-12)


def test_average_precision_matches_interpolated_definition():
    """AP = mean over positives of the best precision at or below their
    rank (distinct scores)."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        labels = rng.integers(0, 2, 30)
        labels[0] = 1
        scores = rng.permutation(30).astype(float)
        ranked = labels[np.argsort(-scores)]
        precision = np.cumsum(ranked) / np.arange(1, 31)
        expected = np.mean(
            [precision[j:].max() for j in np.flatnonzero(ranked)])
        assert average_precision(labels, scores) == pytest.approx(expected)


def test_average_precision_length_mismatch():
    with pytest.raises(ValueError, match='differ in length'):
        average_precision(np.array([1, 0]), np.array([1., 2., 3.]))


# ----------------------------------------------------------------------
# low-shot sampling
def multilabel(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.choice([1, 0, -1], size=(n, C), p=[.3, .1, .6])
    return labels.astype(np.int8)


@pytest.mark.parametrize('k', [1, 2, 4, 8])
def test_sample_low_shot_multilabel(k):
    labels = multilabel(200)
    idx = sample_low_shot(labels, k, (0, k, 0))
    assert idx.shape == (C * k, )
    for c in range(C):
        block = idx[c * k:(c + 1) * k]
        assert len(set(block.tolist())) == k
        assert (labels[block, c] == 1).all()  # difficult (0) never drawn


def test_sample_low_shot_single_label():
    labels = np.repeat(np.array([3, 7, 9]), [5, 6, 7])
    idx = sample_low_shot(labels, 4, 0)
    assert idx.shape == (12, )
    for block, cls in zip(idx.reshape(3, 4), (3, 7, 9)):
        assert (labels[block] == cls).all() and len(set(block)) == 4


def test_sample_low_shot_seeded():
    labels = multilabel(200)
    a = sample_low_shot(labels, 4, (0, 4, 1))
    np.testing.assert_array_equal(a, sample_low_shot(labels, 4, (0, 4, 1)))
    assert not np.array_equal(a, sample_low_shot(labels, 4, (0, 4, 2)))
    draws = low_shot_samples(labels, shots=(1, 2), runs=3, seed=7)
    assert sorted(draws) == [(k, r) for k in (1, 2) for r in range(3)]
    np.testing.assert_array_equal(draws[(2, 1)],
                                  sample_low_shot(labels, 2, (7, 2, 1)))


def test_sample_low_shot_too_few_positives():
    labels = -np.ones((10, C), dtype=np.int8)
    labels[:3] = 1
    labels[:, 5] = 0
    labels[0, 5] = 1
    with pytest.raises(ValueError, match='class 5 has 1 positive'):
        sample_low_shot(labels, 2, 0)


# ----------------------------------------------------------------------
# SVMs
def separable(n_per_class: int, classes: int, dim: int, seed: int,
              noise: float = 0.05):
    """Single-label features: one-hot class direction plus noise."""
    rng = np.random.default_rng(seed)
    cls = np.repeat(np.arange(classes), n_per_class)
    feats = np.eye(dim)[cls] + noise * rng.standard_normal((len(cls), dim))
    return feats, cls


def voc_labels(cls: np.ndarray) -> np.ndarray:
    labels = -np.ones((len(cls), C), dtype=np.int8)
    labels[np.arange(len(cls)), cls] = 1
    return labels


def test_fit_linear_svm_sign_does_not_depend_on_label_order():
    feats, cls = separable(5, 2, 8, 0)
    y = np.where(cls == 1, 1, -1)
    order = np.argsort(-y)  # first label 1 vs first label -1
    for perm in (order, order[::-1]):
        w, b = fit_linear_svm(normalize_features(feats[perm]), y[perm], 0.5)
        scores = normalize_features(feats) @ w + b
        assert (scores[cls == 1] > 0).all() and (scores[cls == 0] < 0).all()


def test_voc07_svm_separable_is_100():
    train, train_cls = separable(3, C, 64, 0)
    test, test_cls = separable(10, C, 64, 1)
    per_class, _ = voc07_svm(train, voc_labels(train_cls), test,
                             voc_labels(test_cls), cost=0.5)
    assert per_class.mean() == pytest.approx(100.0)
    assert per_class.shape == (C, )
    np.testing.assert_allclose(per_class, 100.0)


def test_places_svm_separable_is_100():
    train, train_cls = separable(2, 30, 48, 0)
    test, test_cls = separable(10, 30, 48, 1)
    acc, _ = places_svm(train, train_cls, test, test_cls, cost=0.5)
    assert acc == pytest.approx(100.0)


def test_places_svm_counts_errors():
    train, train_cls = separable(2, 4, 8, 0)
    test, test_cls = separable(5, 4, 8, 1)
    test_cls = test_cls.copy()
    test_cls[:4] = 3  # 4 of 20 test labels now wrong for their features
    assert places_svm(train, train_cls, test,
                      test_cls)[0] == pytest.approx(80.0)


def test_voc07_difficult_negative_by_default_or_ignored():
    """A test image marked difficult for class 0 with exactly the features
    of the 2 class-0 positives ties with them: as a negative (released
    code) AP_0 = 2/3; ignored (standard protocol) AP_0 = 1."""
    train, train_cls = separable(3, C, 32, 0)
    test_cls = np.r_[0, 0, 0, np.repeat(np.arange(1, C), 2)]
    test = np.eye(32)[test_cls]
    test_labels = voc_labels(test_cls)
    test_labels[2, 0] = 0
    released, _ = voc07_svm(train, voc_labels(train_cls), test, test_labels)
    assert released[0] == pytest.approx(100 * 2 / 3)
    np.testing.assert_allclose(released[1:], 100.0)
    standard, _ = voc07_svm(train, voc_labels(train_cls), test, test_labels,
                            ignore_difficult=True)
    np.testing.assert_allclose(standard, 100.0)


def noisy_multilabel(seed: int, num_train: int, num_test: int, dim: int,
                     noise: float, threshold: float):
    """VOC07-style +1/-1 labels of ``C`` classes from a random linear
    projection of Gaussian features, thresholded; the training labels
    with Gaussian noise of scale ``noise`` before the threshold."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((num_train, dim))
    test = rng.standard_normal((num_test, dim))
    proj = rng.standard_normal((dim, C))
    train_labels = np.where(
        train @ proj + noise * rng.standard_normal((num_train, C)) > threshold,
        1, -1).astype(np.int8)
    test_labels = np.where(test @ proj > threshold, 1, -1).astype(np.int8)
    return train, train_labels, test, test_labels


def test_svm_results_do_not_depend_on_jobs():
    train, train_labels, test, test_labels = noisy_multilabel(
        3, 120, 80, 32, noise=3, threshold=2)
    one, _ = voc07_svm(train, train_labels, test, test_labels, jobs=1)
    two, _ = voc07_svm(train, train_labels, test, test_labels, jobs=2)
    assert one.mean() == two.mean()
    np.testing.assert_array_equal(one, two)
    assert 0 < one.mean() < 100


def test_voc07_matches_released_sklearn_linearsvc():
    """The released code's sklearn LinearSVC is the same LIBLINEAR model."""
    svm = pytest.importorskip('sklearn.svm')
    train, train_labels, test, test_labels = noisy_multilabel(
        4, 150, 100, 24, noise=4, threshold=3)
    ours, _ = voc07_svm(train, train_labels, test, test_labels, jobs=1)
    for c in range(C):
        clf = svm.LinearSVC(C=0.5, class_weight={
            1: 2,
            -1: 1
        }, tol=1e-4, intercept_scaling=1.0, dual=True, max_iter=2000,
                            random_state=0)
        clf.fit(normalize_features(train), train_labels[:, c])
        ref = 100 * average_precision(
            test_labels[:, c], clf.decision_function(normalize_features(test)))
        assert ours[c] == pytest.approx(ref, abs=0.1)


def test_cost_sweep():
    train, train_cls = separable(3, C, 32, 0)
    test, test_cls = separable(4, C, 32, 1)
    labels = voc_labels(train_cls)
    aps, costs = voc07_svm(train, labels, test, voc_labels(test_cls), cost=0.5,
                           cost_grid=GOYAL_COST_GRID, jobs=1)
    np.testing.assert_allclose(aps, 100.0)
    assert set(costs.tolist()) <= set(GOYAL_COST_GRID)
    # one positive: no cross-validation, the given cost is kept
    one = np.r_[0, np.arange(0, 3 * C, 3)[1:]]
    _, costs = voc07_svm(train[one], labels[one], test, voc_labels(test_cls),
                         cost=0.5, cost_grid=(0.1, 1.0), jobs=1)
    np.testing.assert_array_equal(costs, 0.5)

    ptrain, pcls = separable(3, 6, 16, 0)
    ptest, ptest_cls = separable(4, 6, 16, 1)
    acc, cost = places_svm(ptrain, pcls, ptest, ptest_cls,
                           cost_grid=(0.01, 1.0), jobs=2)
    assert acc == pytest.approx(100.0) and cost in (0.01, 1.0)
    _, cost = places_svm(ptrain[::3], pcls[::3], ptest, ptest_cls, cost=0.5,
                         cost_grid=(0.01, 1.0), jobs=1)
    assert cost == 0.5


@pytest.mark.parametrize('change, message', [
    (dict(test_labels=lambda y: np.where(y[:, :1] == 1, -1, y[:, :1])),
     'train labels have 20 classes'),
    (dict(test_feats=lambda x: x[:, :10]), '64-d but test features 10-d'),
    (dict(train_labels=lambda y: y * 2), r'must be in \{1, 0, -1\}'),
    (dict(train_labels=lambda y: y[:-1]), 'train labels must be N x C'),
    (dict(train_feats=lambda x: x[:, 0]), 'train features must be N x D'),
])
def test_voc07_svm_bad_input(change, message):
    train, train_cls = separable(2, C, 64, 0)
    test, test_cls = separable(2, C, 64, 1)
    args = dict(train_feats=train, train_labels=voc_labels(train_cls),
                test_feats=test, test_labels=voc_labels(test_cls))
    for key, fn in change.items():
        args[key] = fn(args[key])
    with pytest.raises(ValueError, match=message):
        voc07_svm(**args)


def test_voc07_svm_needs_test_positives():
    train, train_cls = separable(2, C, 64, 0)
    test, test_cls = separable(2, C, 64, 1)
    test_labels = voc_labels(test_cls)
    test_labels[:, 4] = -1
    with pytest.raises(ValueError, match='class 4: the test set has no pos'):
        voc07_svm(train, voc_labels(train_cls), test, test_labels)


def test_evaluate_low_shot_and_table():
    train, train_cls = separable(6, C, 32, 0)
    test, test_cls = separable(3, C, 32, 1)
    labels = voc_labels(train_cls)
    draws = low_shot_samples(labels, shots=(1, 2), runs=2, seed=0)
    result = evaluate_low_shot('voc07', train, labels, test,
                               voc_labels(test_cls), draws, jobs=1)
    assert sorted(result) == [1, 2]
    for entry in result.values():
        assert entry['runs'] == pytest.approx([100.0, 100.0])
        assert entry['mean'] == pytest.approx(100.0)
        assert entry['std'] == pytest.approx(0.0)
        assert 'costs' not in entry
    table = format_table({'VOC07 (mAP)': result})
    assert table.splitlines() == [
        '| Dataset | k=1 | k=2 |', '|---|---|---|',
        '| VOC07 (mAP) | 100.0 ± 0.0 | 100.0 ± 0.0 |'
    ]
    rows = np.full(len(labels), -1)
    with pytest.raises(ValueError, match='no features for some drawn'):
        evaluate_low_shot('voc07', train, labels, test, voc_labels(test_cls),
                          draws, train_rows=rows, jobs=1)


def test_evaluate_low_shot_mean_std_of_runs():
    """Places: mean and population std over runs (released code)."""
    rng = np.random.default_rng(0)
    train = rng.standard_normal((60, 16))
    cls = np.repeat(np.arange(3), 20)
    test = rng.standard_normal((30, 16))
    test_cls = np.repeat(np.arange(3), 10)
    draws = low_shot_samples(cls, shots=(2, ), runs=3, seed=0)
    result = evaluate_low_shot('places205', train, cls, test, test_cls, draws,
                               jobs=1)[2]
    expected = [
        places_svm(train[draws[(2, r)]], cls[draws[(2, r)]], test, test_cls)[0]
        for r in range(3)
    ]
    assert result['runs'] == pytest.approx(expected)
    assert result['mean'] == pytest.approx(np.mean(expected))
    assert result['std'] == pytest.approx(np.std(expected))


# ----------------------------------------------------------------------
# list readers
def write_voc(root, split_labels: dict) -> None:
    main = root / 'VOCdevkit' / 'VOC2007' / 'ImageSets' / 'Main'
    main.mkdir(parents=True)
    for split, labels in split_labels.items():
        for c, name in enumerate(VOC07_CLASSES):
            lines = [
                f'{i:06d} {labels[i][c]:2d}\n' for i in range(len(labels))
            ]
            (main / f'{name}_{split}.txt').write_text(''.join(lines))


def test_read_voc07(tmp_path):
    labels = multilabel(4)
    write_voc(tmp_path, {'test': labels})
    paths, read = read_voc07(str(tmp_path), 'test')
    np.testing.assert_array_equal(read, labels)
    assert paths[3].endswith('VOCdevkit/VOC2007/JPEGImages/000003.jpg')
    # the VOCdevkit folder and VOC2007 itself are accepted as data root
    for root in (tmp_path / 'VOCdevkit', tmp_path / 'VOCdevkit' / 'VOC2007'):
        assert read_voc07(str(root), 'test')[0] == paths


def test_read_voc07_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such data root'):
        read_voc07(str(tmp_path / 'nope'), 'test')
    with pytest.raises(FileNotFoundError, match='no VOC2007/ImageSets/Main'):
        read_voc07(str(tmp_path), 'test')
    write_voc(tmp_path, {'test': multilabel(3)})
    main = tmp_path / 'VOCdevkit' / 'VOC2007' / 'ImageSets' / 'Main'
    with pytest.raises(FileNotFoundError, match='aeroplane_trainval.txt'):
        read_voc07(str(tmp_path), 'trainval')
    (main / 'cow_test.txt').write_text('000000 1\n000001 2\n')
    with pytest.raises(ValueError, match=r'cow_test.txt:2: expected'):
        read_voc07(str(tmp_path), 'test')
    (main / 'cow_test.txt').write_text('000000 1\n')
    with pytest.raises(ValueError, match='cow_test.txt: lists different'):
        read_voc07(str(tmp_path), 'test')
    for name in VOC07_CLASSES:
        (main / f'{name}_test.txt').write_text('')
    with pytest.raises(ValueError, match='lists no images'):
        read_voc07(str(tmp_path), 'test')


def test_read_places205(tmp_path):
    lists = tmp_path / 'trainvalsplit_places205'
    lists.mkdir()
    (lists /
     'val_places205.csv').write_text('a/abbey/1.jpg 0\n\nb/bar/2.jpg 4\n')
    paths, labels = read_places205(str(tmp_path), 'val')
    assert paths == [
        str(tmp_path / 'a/abbey/1.jpg'),
        str(tmp_path / 'b/bar/2.jpg')
    ]
    np.testing.assert_array_equal(labels, [0, 4])
    images = tmp_path / 'data/vision/torralba/deeplearning/images256'
    images.mkdir(parents=True)
    assert read_places205(str(tmp_path),
                          'val')[0][0] == str(images / 'a/abbey/1.jpg')
    (lists / 'train_places205.csv').write_text('a/abbey/1.jpg x\n')
    with pytest.raises(ValueError, match='train_places205.csv:1: expected'):
        read_places205(str(tmp_path), 'train')
    (lists / 'train_places205.csv').write_text('')
    with pytest.raises(ValueError, match='lists no images'):
        read_places205(str(tmp_path), 'train')


def test_non_finite_features_and_costs_are_refused():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((6, 4))
    labels = np.array([0, 0, 1, 1, 2, 2])
    bad = feats.copy()
    bad[2, 1] = np.inf
    with pytest.raises(
            DataError, match=r'train features hold 1 non-finite '
            r'values \(NaN or inf\) in 1 of 6 rows'):
        places_svm(bad, labels, feats, labels, jobs=1)
    for cost in (float('nan'), float('inf'), 0.0):
        with pytest.raises(ConfigError, match='cost must be'):
            places_svm(feats, labels, feats, labels, cost, jobs=1)
    with pytest.raises(ConfigError, match='cost grid value must be'):
        voc07_svm(feats, np.where(np.eye(6, 3) > 0, 1, -1), feats,
                  np.where(np.eye(6, 3) > 0, 1, -1),
                  cost_grid=[0.5, float('nan')], jobs=1)
