"""The low-shot SVM benchmark of paper Table 2 (Sec. 5.1, App. C), end to end.

For each k in {1, 2, 4, 8, 16} and each of 5 seeded draws, k positive
training images per class (:func:`low_shot_samples`) train the one-vs-rest
SVMs of :mod:`mopro.evaluation.svm` (:func:`evaluate_low_shot`); the
result is the mean and (population) std over the draws, as a table shaped
like Table 2 (:func:`format_table`).

:func:`run_svm_benchmark` is ``tools/svm_eval.py``'s work: it encodes the
training images some draw uses and the test set of VOC07 (trainval / test)
or Places205 (train / val), caches the features in
``WORK_DIR/features_<dataset>.npz`` (or reads them back), and writes
``WORK_DIR/svm_<dataset>.json`` and ``.md``. Every input and output is
checked before any image is encoded. With ``shard_root`` the images come
from the shards of the two splits (``lists_to_shards.py voc07|places205``),
found by their paths; the labels and the splits still come from
``data_root``'s list files.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import print_log

from ..checkpoint import load_model_weights
from ..datasets.lowshot import (VOC07_CLASSES, image_dir, read_places205,
                                read_voc07, relative_paths)
from ..datasets.shards.index import index_name
from ..datasets.shards.lookup import ShardImage, read_images_by_path
from ..utils.errors import DataError, UserError
from ..utils.fileio import write_json, write_text
from ..utils.outputs import check_output_dir, check_output_file
from .features import (build_feature_model, check_image_files,
                       check_split_labels, extract_features, feature_pipeline,
                       load_feature_file, save_feature_file)
from .svm import (DEFAULT_COST, GOYAL_COST_GRID, SVM_BIAS, SVM_TOLERANCE,
                  VOC_POSITIVE_WEIGHT, check_costs, places_svm,
                  require_finite_features, voc07_svm)

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
DEFAULT_RUNS = 5
DATASETS = {'voc07': 'mAP', 'places205': 'top-1 accuracy'}
# dataset -> (list reader, training split, test split, label columns)
SPLITS = {
    'voc07': (read_voc07, 'trainval', 'test', len(VOC07_CLASSES)),
    'places205': (read_places205, 'train', 'val', None),
}
TABLE_NAMES = {'voc07': 'VOC07 (mAP)', 'places205': 'Places205 (top-1 acc.)'}


def sample_low_shot(labels: np.ndarray, k: int,
                    seed: Union[int, Sequence[int]]) -> np.ndarray:
    """Draw k positive images per class (released ``convert_low_shot``).

    Args:
        labels: ``N x C`` multi-label matrix (positive = 1; VOC07) or ``N``
            class indices (Places205; classes are the values present).
        k: positives per class, drawn without replacement.
        seed: seed of ``np.random.default_rng`` (e.g. ``(seed, k, run)``).

    Returns:
        ``C * k`` indices into ``labels``, class by class (block ``c`` holds
        the k images drawn for class ``c``). An image drawn for two classes
        appears twice, as in the released code.
    """
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        positives = [
            np.flatnonzero(labels[:, c] == 1) for c in range(labels.shape[1])
        ]
        names = range(labels.shape[1])
    elif labels.ndim == 1:
        names = np.unique(labels)
        positives = [np.flatnonzero(labels == c) for c in names]
    else:
        raise ValueError(f'labels must be N x C or N, got shape '
                         f'{labels.shape}')
    blocks = []
    for name, pos in zip(names, positives):
        if pos.size < k:
            raise DataError(f'class {name} has {pos.size} positive training '
                            f'images, fewer than k={k}')
        blocks.append(rng.choice(pos, size=k, replace=False))
    return np.concatenate(blocks).astype(np.int64)


def low_shot_samples(labels: np.ndarray, shots: Sequence[int] = DEFAULT_SHOTS,
                     runs: int = DEFAULT_RUNS,
                     seed: int = 0) -> Dict[Tuple[int, int], np.ndarray]:
    """The k-shot training sets of every (k, run): :func:`sample_low_shot`
    seeded with ``(seed, k, run)``, so each draw is reproducible alone."""
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs}')
    return {
        (k, run): sample_low_shot(labels, k, (seed, k, run))
        for k in shots
        for run in range(runs)
    }


def evaluate_low_shot(dataset: str, train_feats: np.ndarray,
                      train_labels: np.ndarray, test_feats: np.ndarray,
                      test_labels: np.ndarray, samples: Dict[Tuple[int, int],
                                                             np.ndarray], *,
                      train_rows: Optional[np.ndarray] = None,
                      cost: float = DEFAULT_COST,
                      cost_grid: Optional[Sequence[float]] = None,
                      ignore_difficult: bool = False,
                      jobs: Optional[int] = None) -> dict:
    """Run the low-shot benchmark over the draws of :func:`low_shot_samples`.

    Args:
        dataset: ``'voc07'`` or ``'places205'``.
        train_feats: features of the training images that have them.
        train_labels: labels of the whole training list (what the draws
            index into).
        test_feats, test_labels: the test set.
        samples: ``{(k, run): indices into train_labels}``.
        train_rows: for every training list index, the row of
            ``train_feats`` (-1: no feature); None when the rows are the list.
        cost, cost_grid, ignore_difficult, jobs: see :func:`voc07_svm`.

    Returns:
        ``{k: {'mean', 'std', 'runs'}}`` with metric values in percent, std
        over runs with ``ddof=0`` as the released code; with ``cost_grid``
        also ``'costs'``, the cross-validated cost(s) of every run.
    """
    if dataset not in DATASETS:
        raise ValueError(f'unknown dataset {dataset!r}; expected one of '
                         f'{sorted(DATASETS)}')
    results: Dict[int, dict] = {}
    for (k, run), indices in sorted(samples.items()):
        rows = indices if train_rows is None else train_rows[indices]
        if (rows < 0).any():
            raise DataError(
                f'k={k} run {run}: no features for some drawn training '
                'images (were they extracted for other --seed/--shots/--runs '
                'settings?)')
        feats, labels = train_feats[rows], train_labels[indices]
        if dataset == 'voc07':
            aps, costs = voc07_svm(feats, labels, test_feats, test_labels,
                                   cost, ignore_difficult=ignore_difficult,
                                   cost_grid=cost_grid, jobs=jobs)
            value, used = float(aps.mean()), costs.tolist()
        else:
            value, used = places_svm(feats, labels, test_feats, test_labels,
                                     cost, cost_grid=cost_grid, jobs=jobs)
        entry = results.setdefault(k, {'runs': []})
        entry['runs'].append(value)
        if cost_grid:
            entry.setdefault('costs', []).append(used)
        print_log(
            f'{dataset} k={k} run {run}: {DATASETS[dataset]} '
            f'{value:.2f}', logger='current')
    for entry in results.values():
        entry['mean'] = float(np.mean(entry['runs']))
        entry['std'] = float(np.std(entry['runs']))
    return results


def format_table(rows: Dict[str, Dict[int, dict]]) -> str:
    """Markdown table shaped like the paper's Table 2: one row per dataset,
    one column per k, cells ``mean ± std``."""
    shots = sorted({k for result in rows.values() for k in result})
    lines = [
        '| Dataset | ' + ' | '.join(f'k={k}' for k in shots) + ' |',
        '|---|' + '---|' * len(shots)
    ]
    for name, result in rows.items():
        cells = [(f'{result[k]["mean"]:.1f} ± {result[k]["std"]:.1f}'
                  if k in result else '-') for k in shots]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------
# the benchmark run of tools/svm_eval.py
@dataclass
class SVMBenchmarkSettings:
    """What :func:`run_svm_benchmark` runs: the flags of
    ``tools/svm_eval.py`` (messages name them)."""
    dataset: str
    config: Optional[str] = None  # model config (unless features)
    checkpoint: Optional[str] = None  # this project's or the released code's
    data_root: Optional[str] = None  # dataset root (unless features)
    shard_root: Optional[str] = None  # images from shards of the splits
    work_dir: Optional[str] = None  # default: work_dirs/svm_eval/<name>
    features: Optional[str] = None  # cached features: the SVM stage alone
    trust_checkpoint: bool = False  # unpickle arbitrary objects
    cost: float = DEFAULT_COST
    cost_sweep: bool = False  # cross-validate the cost per k-shot set
    costs: Optional[List[float]] = None  # grid (default: Goyal et al.'s)
    ignore_difficult: bool = False  # VOC07: the standard protocol
    shots: List[int] = field(default_factory=lambda: list(DEFAULT_SHOTS))
    runs: int = DEFAULT_RUNS
    seed: int = 0  # of the low-shot draws
    jobs: Optional[int] = None  # SVM processes (default: all cores)
    batch_size: int = 256
    num_workers: int = 8
    resize: int = 256  # short side of the resized image
    crop: int = 224  # center crop
    device: Optional[str] = None  # default: cuda when available
    cfg_options: Optional[dict] = None

    @property
    def cost_grid(self) -> Optional[List[float]]:
        """The costs cross-validated, None without ``cost_sweep``."""
        if not self.cost_sweep:
            return None
        return list(self.costs or GOYAL_COST_GRID)

    def output_dir(self) -> str:
        """``work_dir``, or ``work_dirs/svm_eval/<config or features
        name>``."""
        if self.work_dir:
            return self.work_dir
        name = os.path.splitext(
            os.path.basename(self.config or self.features))[0]
        return os.path.join('work_dirs', 'svm_eval', name)


def check_settings(settings: SVMBenchmarkSettings) -> None:
    """One-line errors, naming the flag, for settings that cannot run."""
    s = settings
    if s.dataset not in SPLITS:
        raise UserError(f'--dataset {s.dataset}: expected one of '
                        f'{sorted(SPLITS)}')
    if s.ignore_difficult and s.dataset != 'voc07':
        raise UserError('--ignore-difficult applies to voc07 only')
    check_costs(s.cost, s.costs, '--cost')
    if s.runs < 1:
        raise UserError(f'--runs must be >= 1, got {s.runs}')
    if s.jobs is not None and s.jobs < 1:
        raise UserError(f'--jobs must be >= 1, got {s.jobs}')
    if s.costs and not s.cost_sweep:
        raise UserError('--costs needs --cost-sweep')
    inputs = ((s.config, 'CONFIG'), (s.checkpoint, 'CKPT'), (s.data_root,
                                                             '--data-root'))
    if s.features:
        unused = [
            name for value, name in (*inputs, (s.shard_root, '--shard-root'),
                                     (s.cfg_options, '--cfg-options')) if value
        ]
        if unused:
            raise UserError(f'{", ".join(unused)} cannot go with '
                            '--features (the SVM stage runs on the cached '
                            'features alone); leave out one or the other')
        return
    if s.crop > s.resize:
        raise UserError(f'--crop {s.crop} is larger than --resize {s.resize} '
                        '(the short side it is cut from); use --crop <= '
                        '--resize')
    for value, name in inputs:
        if not value:
            raise UserError(f'{name} is required unless --features is given')
    if not os.path.isfile(s.config):
        raise FileNotFoundError(f'{s.config}: no such config file')
    if not os.path.isdir(s.data_root):
        raise FileNotFoundError(f'{s.data_root}: no such data root directory')
    if s.shard_root and not os.path.isdir(s.shard_root):
        raise FileNotFoundError(f'{s.shard_root}: no such shard root '
                                'directory')


def _check_outputs(settings: SVMBenchmarkSettings,
                   num_images: int = 0) -> None:
    """The work dir takes the outputs (about ``num_images`` features of up
    to 2048 float32 values), none of which is an input."""
    work_dir = settings.output_dir()
    check_output_dir(work_dir, need_bytes=num_images * 2048 * 4,
                     what='work dir')
    names = [f'svm_{settings.dataset}.json', f'svm_{settings.dataset}.md']
    if not settings.features:
        names.append(f'features_{settings.dataset}.npz')
    for name in names:
        check_output_file(
            os.path.join(work_dir, name),
            inputs=(settings.features, settings.config, settings.checkpoint))


def extract_split_features(settings: SVMBenchmarkSettings,
                           samples: Dict[Tuple[int, int],
                                         np.ndarray], splits: tuple) -> dict:
    """Encode the drawn training images and the test set; cache them in
    the work dir (:func:`~mopro.evaluation.features.save_feature_file`)."""
    (train_paths, train_labels), (test_paths, test_labels) = splits
    index = np.unique(np.concatenate(list(samples.values())))
    paths = [train_paths[i] for i in index] + test_paths
    if settings.shard_root:
        images = shard_images(settings, paths)
    else:
        check_image_files(paths)
        images = paths
    model = build_feature_model(settings.config, settings.cfg_options)
    load_model_weights(model, settings.checkpoint,
                       trust=settings.trust_checkpoint, submodule='backbone')
    print_log(
        f'encoding {len(index)} training and {len(test_paths)} test '
        'images', logger='current')
    feats = extract_features(model, images,
                             feature_pipeline(settings.resize, settings.crop),
                             batch_size=settings.batch_size,
                             num_workers=settings.num_workers,
                             device=settings.device)
    require_finite_features(feats, f'features of {settings.checkpoint}')
    meta = dict(config=settings.config, checkpoint=settings.checkpoint,
                data_root=settings.data_root, shard_root=settings.shard_root,
                resize=settings.resize, crop=settings.crop, seed=settings.seed,
                shots=settings.shots, runs=settings.runs)
    data = dict(
        dataset=np.array(settings.dataset), train_feats=feats[:len(index)],
        train_index=index, train_labels=train_labels,
        test_feats=feats[len(index):], test_labels=test_labels,
        meta=np.array(json.dumps(meta)))
    path = os.path.join(settings.output_dir(),
                        f'features_{settings.dataset}.npz')
    save_feature_file(path, data)
    print_log(f'wrote {path}', logger='current')
    data['path'] = path
    return data


def shard_images(settings: SVMBenchmarkSettings,
                 paths: Sequence[str]) -> List[ShardImage]:
    """The images at ``paths`` (as the split readers name them), in that
    order, read from the shards of the training and the test split in
    ``shard_root`` (``<split>-index.json``, the converter's names), found
    by their paths relative to the dataset's image folder. The shards are
    read once, before the model is built; the images' bytes are held in
    memory until they are encoded (about the size of their files).

    Raises:
        DataError: one line naming the first image no record holds, how
            many are missing, and the shard root.
    """
    _, train_split, test_split, _ = SPLITS[settings.dataset]
    relative = relative_paths(paths,
                              image_dir(settings.dataset, settings.data_root))
    print_log(
        f'reading {len(paths)} images from the shards at '
        f'{settings.shard_root}', logger='current')
    found = read_images_by_path([
        os.path.join(settings.shard_root, index_name(split))
        for split in (train_split, test_split)
    ], relative)
    missing = [p for p, r in zip(paths, relative) if r not in found]
    if missing:
        raise DataError(
            f'{missing[0]}: no shard record holds it ({len(missing)} of '
            f'{len(paths)} images missing from the shards at '
            f'{settings.shard_root}); convert the {train_split} and '
            f'{test_split} splits of {settings.data_root} with '
            f'lists_to_shards.py {settings.dataset} (undecodable images are '
            'named in the index, not written)')
    return [found[r] for r in relative]


def _load_features(settings: SVMBenchmarkSettings) -> tuple:
    """The features (cached or extracted now) and the low-shot draws."""
    reader, train_split, test_split, columns = SPLITS[settings.dataset]
    draw = dict(shots=settings.shots, runs=settings.runs, seed=settings.seed)
    if settings.features:
        _check_outputs(settings)
        data = load_feature_file(settings.features, settings.dataset, columns)
        data['path'] = settings.features
        return data, low_shot_samples(data['train_labels'], **draw)
    splits = tuple(
        reader(settings.data_root, split)
        for split in (train_split, test_split))
    check_split_labels(splits[0][1], splits[1][1], columns is not None,
                       settings.data_root,
                       (f'{train_split} labels', f'{test_split} labels'))
    samples = low_shot_samples(splits[0][1], **draw)
    num_images = len(np.unique(np.concatenate(list(samples.values())))) + len(
        splits[1][0])
    _check_outputs(settings, num_images)
    return extract_split_features(settings, samples, splits), samples


def _feature_rows(data: dict, samples: dict,
                  settings: SVMBenchmarkSettings) -> np.ndarray:
    """For every training list index, its row of ``train_feats`` (-1: none);
    every drawn image must have one."""
    rows = np.full(len(data['train_labels']), -1, dtype=np.int64)
    rows[data['train_index']] = np.arange(len(data['train_index']))
    if any((rows[s] < 0).any() for s in samples.values()):
        raise DataError(
            f'{data["path"]}: no features for some training images drawn '
            f'with --seed {settings.seed} --shots '
            f'{",".join(map(str, settings.shots))} --runs {settings.runs}; '
            'use the settings it was extracted with (see its meta) or '
            're-extract')
    return rows


def run_svm_benchmark(settings: SVMBenchmarkSettings) -> dict:
    """The low-shot benchmark of the module docstring; returns the report
    written to ``svm_<dataset>.json``."""
    check_settings(settings)
    data, samples = _load_features(settings)
    results = evaluate_low_shot(
        settings.dataset, data['train_feats'], data['train_labels'],
        data['test_feats'], data['test_labels'], samples,
        train_rows=_feature_rows(data, samples, settings), cost=settings.cost,
        cost_grid=settings.cost_grid,
        ignore_difficult=settings.ignore_difficult, jobs=settings.jobs)
    report = dict(dataset=settings.dataset, metric=DATASETS[settings.dataset],
                  config=settings.config, checkpoint=settings.checkpoint,
                  features=data['path'],
                  feature_dim=int(data['train_feats'].shape[1]),
                  num_train_images=int(len(data['train_labels'])),
                  num_test_images=int(len(data['test_labels'])),
                  seed=settings.seed, runs=settings.runs,
                  protocol=protocol(settings), results={
                      str(k): v
                      for k, v in sorted(results.items())
                  })
    table = format_table({TABLE_NAMES[settings.dataset]: results})
    base = os.path.join(settings.output_dir(), f'svm_{settings.dataset}')
    write_json(base + '.json', report)
    write_text(base + '.md', table)
    print_log('\n' + table, logger='current')
    print_log(f'wrote {base}.json and {base}.md', logger='current')
    return report


def protocol(settings: SVMBenchmarkSettings) -> dict:
    """The SVM protocol a report was made under."""
    return dict(
        svm='LIBLINEAR -s 1 (L2-regularised L2-loss SVC, dual), one-vs-rest',
        cost='cross-validated' if settings.cost_sweep else settings.cost,
        cost_grid=settings.cost_grid, tolerance=SVM_TOLERANCE, bias=SVM_BIAS,
        positive_weight=(VOC_POSITIVE_WEIGHT if settings.dataset == 'voc07'
                         else 1.0), ignore_difficult=settings.ignore_difficult,
        feature_normalisation='x / (||x|| + 1e-5)',
        average_precision='area under the interpolated precision-recall '
        'curve, all points (not 11-point)')
