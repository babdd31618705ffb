"""Low-shot linear SVMs on fixed features (paper Sec. 5.1, Table 2; App. C).

Protocol of the released ``lowshot_svm.py``, which follows Goyal et al.
(2019, "Scaling and benchmarking self-supervised visual representation
learning"; ``fair_self_supervision_benchmark``):

- features: global-average-pooled encoder output, L2-normalised as
  ``x / (||x|| + 1e-5)`` (:func:`normalize_features`);
- SVMs: LIBLINEAR L2-regularised L2-loss SVC solved in the dual (``-s 1``),
  cost C = 0.5, tolerance 1e-4, bias feature 1 (``-B 1``; the released
  code's sklearn ``LinearSVC(intercept_scaling=1)`` is the same LIBLINEAR
  model, the bias being regularised too); one-vs-rest;
- VOC07: 20 binary SVMs, positive-class weight 2 (``-w1 2``), a "difficult"
  label (0) counts as negative in training and testing, as in the released
  code (``ignore_difficult=True`` drops those images from the train and test
  sets of that class instead, the standard VOC protocol); metric: mean over
  classes of :func:`average_precision`, in percent;
- Places205: 205 binary SVMs (no class weight), prediction = arg-max of the
  decision values; metric: top-1 accuracy in percent;
- low-shot (:mod:`mopro.evaluation.low_shot`): for each class, k positive
  images are drawn without replacement, the k-shot training set is the
  concatenation over classes; each binary SVM sees the whole k-shot set,
  so an image drawn for one class can be a positive of another; k in
  {1, 2, 4, 8, 16}, 5 independent draws, mean and (population) std.

Difference from the released code: LIBLINEAR itself (``liblinear-official``)
replaces sklearn's vendored copy. Its dual solver stops at the tolerance or
falls back to the primal Newton solver after its iteration cap, where the
vendored copy stops at ``max_iter=2000``; solutions agree to the tolerance.
Every fit seeds the C library's ``rand()`` (LIBLINEAR's shuffling), so
results do not depend on the number of worker processes.
"""
import ctypes
import ctypes.util
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from liblinear.liblinearutil import parameter, problem, train
from scipy import sparse

from ..utils.errors import DataError
from ..utils.validate import check_number

DEFAULT_COST = 0.5
SVM_TOLERANCE = 1e-4
SVM_BIAS = 1.0
VOC_POSITIVE_WEIGHT = 2.0
CV_FOLDS = 3
# Cost grid of Goyal et al. (2019): their default list plus 0.5 ** n for
# n = 4..19 (``svm_helper.parse_cost_list``).
GOYAL_COST_GRID = tuple([10.0**e for e in range(-7, 3)] +
                        [0.5**n for n in range(4, 20)])
_RAND_SEED = 1

# (fit rows or None for all, +-1 labels, cost, positive weight, rows to
# score or None to return the weights)
_Task = Tuple[Optional[np.ndarray], np.ndarray, float, float,
              Optional[np.ndarray]]
_WORKER_FEATS: Dict[str, np.ndarray] = {}

try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library('c'))
    _LIBC.srand.argtypes = [ctypes.c_uint]
except (OSError, TypeError, AttributeError):  # no C library to seed
    _LIBC = None


def normalize_features(feats: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation ``x / (||x|| + 1e-5)`` in float64 (released
    code / Goyal et al. 2019)."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-5)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the interpolated precision-recall curve, in [0, 1].

    The metric of the released code and Goyal et al. (2019)
    (``svm_helper.get_precision_recall`` / ``calculate_ap``): precision is
    replaced by its running maximum from the right (the interpolated
    envelope) and summed over every recall step, i.e. the VOC2010+ devkit
    "all points" AP, *not* the 11-point VOC2007 devkit AP.

    Samples with tied scores form one threshold, so the value does not
    depend on their order (the released code breaks ties by sort order;
    without ties the two agree exactly).

    Args:
        labels: ``N`` targets; ``> 0`` is positive, anything else negative.
        scores: ``N`` decision values, higher = more confident positive.

    Returns:
        AP, or NaN when there is no positive.
    """
    labels = np.asarray(labels).reshape(-1) > 0
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f'labels ({labels.size}) and scores ({scores.size}) '
                         'differ in length')
    num_pos = int(labels.sum())
    if num_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind='stable')
    tp = np.cumsum(labels[order])
    # last position of every group of equal scores
    ranked = scores[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    tp = tp[ends].astype(np.float64)
    precision = tp / (ends + 1)
    recall = tp / num_pos
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * envelope))


# ----------------------------------------------------------------------
# LIBLINEAR fits, in parallel over worker processes
def _dense_csr(feats: np.ndarray) -> sparse.csr_matrix:
    """A dense matrix as CSR with every entry stored: LIBLINEAR's input
    (its Python binding reads CSR fast; scipy's dense -> CSR is slow)."""
    feats = np.ascontiguousarray(feats, dtype=np.float64)
    num, dim = feats.shape
    indices = np.tile(np.arange(dim, dtype=np.int64), num)
    indptr = np.arange(0, num * dim + 1, dim, dtype=np.int64)
    return sparse.csr_matrix((feats.ravel(), indices, indptr),
                             shape=(num, dim))


def fit_linear_svm(feats: np.ndarray, labels: np.ndarray,
                   cost: float = DEFAULT_COST,
                   positive_weight: float = 1.0) -> Tuple[np.ndarray, float]:
    """Train one binary LIBLINEAR SVM (``-s 1 -e 1e-4 -B 1``).

    Args:
        feats: ``N x D`` features.
        labels: ``N`` labels in {1, -1}, both present.
        cost: C.
        positive_weight: multiplies C for the positive class (``-w1``).

    Returns:
        ``(w, b)``: the decision value of ``x`` is ``x @ w + b``, positive
        for class 1.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if not ((labels == 1).any() and (labels == -1).any()):
        raise DataError('a binary SVM needs both positive and negative '
                        'training samples')
    options = (f'-s 1 -c {cost!r} -e {SVM_TOLERANCE!r} -B {SVM_BIAS!r} -q')
    if positive_weight != 1.0:
        options += f' -w1 {positive_weight!r}'
    prob = problem(labels, _dense_csr(feats))
    if _LIBC is not None:
        _LIBC.srand(_RAND_SEED)
    model = train(prob, parameter(options))
    dim = model.nr_feature + 1  # + the bias feature
    weights = np.ctypeslib.as_array(model.w, shape=(dim, )).copy()
    if model.get_labels()[0] != 1:  # LIBLINEAR's w is for its first label
        weights = -weights
    return weights[:-1], float(weights[-1] * SVM_BIAS)


def _init_worker(feats: np.ndarray) -> None:
    _WORKER_FEATS['train'] = feats


def _run_task(task: _Task) -> np.ndarray:
    rows, labels, cost, weight, score_rows = task
    feats = _WORKER_FEATS['train']
    w, b = fit_linear_svm(feats if rows is None else feats[rows], labels, cost,
                          weight)
    if score_rows is None:
        return np.r_[w, b]
    return feats[score_rows] @ w + b


def _run_tasks(feats: np.ndarray, tasks: List[_Task],
               jobs: Optional[int]) -> List[np.ndarray]:
    """Run SVM fits over ``jobs`` processes (all cores when None)."""
    jobs = min(jobs or os.cpu_count() or 1, len(tasks))
    if jobs <= 1:
        _init_worker(feats)
        try:
            return [_run_task(task) for task in tasks]
        finally:
            _WORKER_FEATS.clear()
    # fork shares the features with the workers without pickling them
    fork = 'fork' in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context('fork' if fork else None)
    chunk = max(1, len(tasks) // (4 * jobs))
    with ProcessPoolExecutor(jobs, mp_context=context,
                             initializer=_init_worker,
                             initargs=(feats, )) as pool:
        return list(pool.map(_run_task, tasks, chunksize=chunk))


def _stratified_folds(labels: np.ndarray, folds: int) -> np.ndarray:
    """Fold index of every sample: each class dealt round-robin, in order
    (sklearn ``StratifiedKFold`` without shuffling, as in Goyal et al.)."""
    fold = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        fold[members] = np.arange(members.size) % folds
    return fold


def _pick_cost(cost_grid: Sequence[float], cv_scores: np.ndarray) -> float:
    """Best mean cross-validation score; ties go to the earlier cost."""
    return float(cost_grid[int(np.argmax(cv_scores))])


# ----------------------------------------------------------------------
# VOC07
def _check_pair(train_feats: np.ndarray, train_labels: np.ndarray,
                test_feats: np.ndarray, test_labels: np.ndarray,
                label_ndim: int) -> None:
    for name, feats, labels in (('train', train_feats, train_labels),
                                ('test', test_feats, test_labels)):
        feats = np.asarray(feats)
        if feats.ndim != 2:
            raise DataError(f'{name} features must be N x D, got shape '
                            f'{feats.shape}')
        if labels.ndim != label_ndim or len(labels) != len(feats):
            want = 'N x C' if label_ndim == 2 else 'N'
            raise DataError(
                f'{name} labels must be {want} with N = {len(feats)} '
                f'(features), got shape {labels.shape}')
        if len(feats) == 0:
            raise DataError(f'{name} set is empty')
        require_finite_features(feats, f'{name} features')
    train_dim, test_dim = np.shape(train_feats)[1], np.shape(test_feats)[1]
    if train_dim != test_dim:
        raise DataError(f'train features are {train_dim}-d but test '
                        f'features {test_dim}-d')


def _svm_inputs(train_feats: np.ndarray, train_labels: np.ndarray,
                test_feats: np.ndarray, test_labels: np.ndarray, cost: float,
                cost_grid: Optional[Sequence[float]],
                label_ndim: int) -> Tuple[np.ndarray, ...]:
    """Checked costs, shapes and values; the features L2-normalised
    (:func:`normalize_features`), the labels as arrays."""
    check_costs(cost, cost_grid)
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    _check_pair(train_feats, train_labels, test_feats, test_labels, label_ndim)
    return (normalize_features(train_feats), train_labels,
            normalize_features(test_feats), test_labels)


def require_finite_features(feats: np.ndarray, name: str) -> None:
    """Raise a one-line :class:`DataError` if ``feats`` (N x D) hold NaN or
    infinity: an SVM would fit them without complaint and report a
    meaningless score."""
    finite = np.isfinite(feats)
    if not finite.all():
        rows = int((~finite).any(axis=1).sum())
        raise DataError(f'{name} hold {int((~finite).sum())} non-finite '
                        f'values (NaN or inf) in {rows} of {len(feats)} '
                        'rows')


def check_costs(cost: float, cost_grid: Optional[Sequence[float]],
                name: str = 'cost') -> None:
    """SVM costs must be finite and positive (LIBLINEAR takes a NaN)."""
    check_number(cost, name, low=0, low_open=True)
    for value in cost_grid or ():
        check_number(value, f'{name} grid value', low=0, low_open=True)


def _used_rows(column: np.ndarray, ignore_difficult: bool) -> np.ndarray:
    """Rows of one class's problem: all, or all but its difficult ones."""
    if ignore_difficult:
        return column != 0
    return np.ones(len(column), dtype=bool)


def voc07_svm(train_feats: np.ndarray, train_labels: np.ndarray,
              test_feats: np.ndarray, test_labels: np.ndarray,
              cost: float = DEFAULT_COST, *, ignore_difficult: bool = False,
              cost_grid: Optional[Sequence[float]] = None,
              jobs: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """VOC07 classification AP of one-vs-rest linear SVMs (paper Table 2).

    Trains one LIBLINEAR SVM per class on all given training features (the
    caller draws the low-shot set), with positive weight 2, and scores the
    test set with :func:`average_precision`. Features are L2-normalised
    here (:func:`normalize_features`). With ``cost_grid`` each class picks
    its cost by 3-fold cross-validated AP on its training set (Goyal et al.
    2019); a class with fewer than 2 positives or negatives keeps ``cost``.

    Args:
        train_feats: ``N x D``.
        train_labels: ``N x C`` in {1, 0 (difficult), -1}.
        test_feats: ``M x D``.
        test_labels: ``M x C`` in {1, 0, -1}.
        cost: SVM cost C (0.5 in the released code).
        ignore_difficult: drop difficult images from the train and test
            sets of their class instead of counting them as negatives.
        cost_grid: pick each class's cost from this grid by 3-fold
            cross-validation (e.g. :data:`GOYAL_COST_GRID`).
        jobs: worker processes for the fits (all cores when None).

    Returns:
        ``(per-class AP in percent, per-class cost used)``; the mAP is their
        mean.
    """
    train_feats, train_labels, test_feats, test_labels = _svm_inputs(
        train_feats, train_labels, test_feats, test_labels, cost, cost_grid,
        label_ndim=2)
    num_classes = train_labels.shape[1]
    if test_labels.shape[1] != num_classes:
        raise DataError(f'train labels have {num_classes} classes, test '
                        f'labels {test_labels.shape[1]}')
    for name, labels in (('train', train_labels), ('test', test_labels)):
        if not np.isin(labels, (-1, 0, 1)).all():
            raise DataError(f'{name} labels must be in {{1, 0, -1}}')

    rows, targets = [], []
    for c in range(num_classes):
        keep = _used_rows(train_labels[:, c], ignore_difficult)
        y = np.where(train_labels[keep, c] == 1, 1, -1).astype(np.int8)
        if not ((y == 1).any() and (y == -1).any()):
            raise DataError(f'class {c}: the training set needs positive '
                            'and negative images')
        rows.append(np.flatnonzero(keep))
        targets.append(y)

    costs = np.full(num_classes, cost, dtype=np.float64)
    if cost_grid:
        costs = _voc07_cv_costs(train_feats, rows, targets, cost, cost_grid,
                                jobs)
    tasks = [(rows[c], targets[c], float(costs[c]), VOC_POSITIVE_WEIGHT, None)
             for c in range(num_classes)]
    weights = np.stack(_run_tasks(train_feats, tasks, jobs))
    scores = test_feats @ weights[:, :-1].T + weights[:, -1]

    aps = np.empty(num_classes)
    for c in range(num_classes):
        keep = _used_rows(test_labels[:, c], ignore_difficult)
        aps[c] = 100.0 * average_precision(test_labels[keep, c] == 1,
                                           scores[keep, c])
        if math.isnan(aps[c]):
            raise DataError(f'class {c}: the test set has no positive image')
    return aps, costs


def _voc07_cv_costs(feats: np.ndarray, rows: List[np.ndarray],
                    targets: List[np.ndarray], cost: float,
                    cost_grid: Sequence[float],
                    jobs: Optional[int]) -> np.ndarray:
    costs = np.full(len(rows), cost, dtype=np.float64)
    tasks, index = [], []
    for c, (cls_rows, y) in enumerate(zip(rows, targets)):
        folds = min(CV_FOLDS, int((y == 1).sum()), int((y == -1).sum()))
        if folds < 2:
            continue
        fold = _stratified_folds(y, folds)
        for g, grid_cost in enumerate(cost_grid):
            for f in range(folds):
                fit, held = fold != f, fold == f
                tasks.append((cls_rows[fit], y[fit], float(grid_cost),
                              VOC_POSITIVE_WEIGHT, cls_rows[held]))
                index.append((c, g, y[held]))
    if not tasks:
        return costs
    cv_ap: Dict[int, np.ndarray] = {}
    for (c, g, held_y), scores in zip(index, _run_tasks(feats, tasks, jobs)):
        cv_ap.setdefault(c, np.zeros(len(cost_grid)))
        cv_ap[c][g] += average_precision(held_y == 1, scores)
    for c, ap in cv_ap.items():
        costs[c] = _pick_cost(cost_grid, ap)
    return costs


# ----------------------------------------------------------------------
# Places205
def _one_vs_rest(labels: np.ndarray, classes: np.ndarray) -> List[np.ndarray]:
    return [np.where(labels == c, 1, -1).astype(np.int8) for c in classes]


def places_svm(train_feats: np.ndarray, train_labels: np.ndarray,
               test_feats: np.ndarray, test_labels: np.ndarray,
               cost: float = DEFAULT_COST, *,
               cost_grid: Optional[Sequence[float]] = None,
               jobs: Optional[int] = None) -> Tuple[float, float]:
    """Places205 top-1 accuracy of one-vs-rest linear SVMs (paper Table 2).

    One LIBLINEAR SVM per class present in ``train_labels`` (no class
    weight, as the released code's ``LinearSVC``); a test image gets the
    class of the highest decision value. Features are L2-normalised here.
    With ``cost_grid`` one cost for all classes is picked by 3-fold
    cross-validated accuracy (needs at least 2 images of every class; else
    ``cost`` is kept).

    Args:
        train_feats: ``N x D``.
        train_labels: ``N`` class indices.
        test_feats: ``M x D``.
        test_labels: ``M`` class indices.
        cost: SVM cost C (0.5 in the released code).
        cost_grid: pick the cost from this grid by 3-fold cross-validation.
        jobs: worker processes for the fits (all cores when None).

    Returns:
        ``(top-1 accuracy in percent, cost used)``.
    """
    train_feats, train_labels, test_feats, test_labels = _svm_inputs(
        train_feats, train_labels, test_feats, test_labels, cost, cost_grid,
        label_ndim=1)
    classes = np.unique(train_labels)
    if classes.size < 2:
        raise DataError('the training set needs at least 2 classes')

    if cost_grid:
        cost = _places_cv_cost(train_feats, train_labels, classes, cost,
                               cost_grid, jobs)
    tasks = [(None, y, float(cost), 1.0, None)
             for y in _one_vs_rest(train_labels, classes)]
    weights = np.stack(_run_tasks(train_feats, tasks, jobs))
    scores = test_feats @ weights[:, :-1].T + weights[:, -1]
    prediction = classes[np.argmax(scores, axis=1)]
    return float(100.0 * np.mean(prediction == test_labels)), float(cost)


def _places_cv_cost(feats: np.ndarray, labels: np.ndarray, classes: np.ndarray,
                    cost: float, cost_grid: Sequence[float],
                    jobs: Optional[int]) -> float:
    folds = min(CV_FOLDS,
                int(np.bincount(np.searchsorted(classes, labels)).min()))
    if folds < 2:
        return cost
    fold = _stratified_folds(labels, folds)
    tasks, index = [], []
    for g, grid_cost in enumerate(cost_grid):
        for f in range(folds):
            fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            for y in _one_vs_rest(labels[fit], classes):
                tasks.append((fit, y, float(grid_cost), 1.0, held))
            index.append((g, held))
    scores = iter(_run_tasks(feats, tasks, jobs))
    accuracy = np.zeros(len(cost_grid))
    for g, held in index:
        held_scores = np.stack([next(scores) for _ in classes], axis=1)
        prediction = classes[np.argmax(held_scores, axis=1)]
        accuracy[g] += np.mean(prediction == labels[held])
    return _pick_cost(cost_grid, accuracy)
