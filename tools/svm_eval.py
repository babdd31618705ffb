"""Low-shot linear SVM benchmark on fixed features (paper Sec. 5.1, Table 2).

Extracts encoder features of VOC07 (trainval / test) or Places205
(train / val), caches them in ``WORK_DIR/features_<dataset>.npz``, trains
LIBLINEAR SVMs on k = 1, 2, 4, 8, 16 images per class (5 seeded draws) and
writes ``WORK_DIR/svm_<dataset>.json`` and ``.md`` (mean ± std, as Table 2).
Only the training images that some draw uses are encoded. Examples::

    python tools/svm_eval.py configs/mopro_r50_webvision1k.py epoch_90.pth \
        --dataset voc07 --data-root data/VOCdevkit
    # SVM stage alone, from the cached features
    python tools/svm_eval.py --dataset voc07 \
        --features work_dirs/svm_eval/mopro_r50_webvision1k/features_voc07.npz
"""
import argparse
import json
import math
import os
from typing import List, Optional

import numpy as np
from mmengine.config import DictAction
from mmengine.logging import MMLogger, print_log

from mopro.datasets.lowshot import (VOC07_CLASSES, read_places205, read_voc07)
from mopro.evaluation.features import (build_feature_model, extract_features,
                                       feature_pipeline, load_feature_file,
                                       save_feature_file)
from mopro.evaluation.svm import (DATASETS, DEFAULT_COST, DEFAULT_RUNS,
                                  DEFAULT_SHOTS, GOYAL_COST_GRID, SVM_BIAS,
                                  SVM_TOLERANCE, VOC_POSITIVE_WEIGHT,
                                  check_costs, evaluate_low_shot,
                                  format_table, low_shot_samples,
                                  require_finite_features)
from mopro.utils.checkpoint import load_model_weights
from mopro.utils.cli import DataError, UserError, run_tool
from mopro.utils.fileio import write_json, write_text
from mopro.utils.outputs import check_output_dir, check_output_file

# dataset -> (list reader, training split, test split, label columns)
SPLITS = {
    'voc07': (read_voc07, 'trainval', 'test', len(VOC07_CLASSES)),
    'places205': (read_places205, 'train', 'val', None),
}
TABLE_NAMES = {'voc07': 'VOC07 (mAP)', 'places205': 'Places205 (top-1 acc.)'}


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected comma-separated integers, got {text!r}') from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f'expected positive integers, got {text!r}')
    return values


def _float_list(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected comma-separated numbers, got {text!r}') from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f'expected positive finite numbers, got {text!r}')
    return values


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Low-shot SVM benchmark (VOC07 / Places205) of a MoPro '
        'encoder')
    parser.add_argument('config', nargs='?', help='model config file')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        help='checkpoint (this project or the released code)')
    parser.add_argument('--dataset', required=True, choices=sorted(SPLITS))
    parser.add_argument('--data-root', help='dataset root (see README)')
    parser.add_argument(
        '--work-dir',
        help='output folder (default: work_dirs/svm_eval/<config or '
        'features name>)')
    parser.add_argument(
        '--features',
        help='cached features (.npz) of an earlier run: run the SVM stage '
        'alone (CONFIG, CKPT and --data-root are then not needed)')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='unpickle arbitrary objects in the checkpoint (only for files '
        'from a source you trust)')
    parser.add_argument(
        '--cost',
        type=float,
        default=DEFAULT_COST,
        help='SVM cost C (default: %(default)s)')
    parser.add_argument(
        '--cost-sweep',
        action='store_true',
        help='choose the cost by 3-fold cross-validation on each k-shot '
        'training set (Goyal et al. 2019); --cost is kept where too few '
        'samples')
    parser.add_argument(
        '--costs',
        type=_float_list,
        help='cost grid of --cost-sweep (default: Goyal et al. 2019 grid)')
    parser.add_argument(
        '--ignore-difficult',
        action='store_true',
        help='VOC07: drop "difficult" images from the train and test sets '
        'of their class (standard protocol) instead of counting them as '
        'negatives (released code)')
    parser.add_argument(
        '--shots',
        type=_int_list,
        default=list(DEFAULT_SHOTS),
        help='comma-separated k values (default: 1,2,4,8,16)')
    parser.add_argument(
        '--runs',
        type=int,
        default=DEFAULT_RUNS,
        help='independent draws per k (default: 5)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the low-shot draws')
    parser.add_argument(
        '--jobs',
        type=int,
        help='processes for the SVM fits (default: all '
        'cores)')
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument(
        '--num-workers', type=int, default=min(8,
                                               os.cpu_count() or 1))
    parser.add_argument(
        '--resize',
        type=int,
        default=256,
        help='short side of the resized image')
    parser.add_argument(
        '--crop', type=int, default=224, help='center crop size')
    parser.add_argument(
        '--device', help='cuda or cpu (default: cuda when available)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (e.g. model.feat_dim=512)')
    return parser.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    if args.ignore_difficult and args.dataset != 'voc07':
        raise UserError('--ignore-difficult applies to voc07 only')
    check_costs(args.cost, args.costs, '--cost')
    if args.runs < 1:
        raise UserError(f'--runs must be >= 1, got {args.runs}')
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f'--jobs must be >= 1, got {args.jobs}')
    if args.costs and not args.cost_sweep:
        raise UserError('--costs needs --cost-sweep')
    if not args.features:
        for value, name in ((args.config, 'CONFIG'), (args.checkpoint, 'CKPT'),
                            (args.data_root, '--data-root')):
            if not value:
                raise UserError(f'{name} is required unless --features '
                                'is given')
        if not os.path.isfile(args.config):
            raise FileNotFoundError(f'{args.config}: no such config file')
        if not os.path.isdir(args.data_root):
            raise FileNotFoundError(
                f'{args.data_root}: no such data root directory')


def _work_dir(args: argparse.Namespace) -> str:
    if args.work_dir:
        return args.work_dir
    source = args.config or args.features
    name = os.path.splitext(os.path.basename(source))[0]
    return os.path.join('work_dirs', 'svm_eval', name)


def _check_outputs(args: argparse.Namespace, work_dir: str,
                   num_images: int = 0) -> None:
    """The work dir takes the outputs (about ``num_images`` features of up
    to 2048 float32 values), none of which is an input."""
    check_output_dir(work_dir, need_bytes=num_images * 2048 * 4,
                     what='work dir')
    names = [f'svm_{args.dataset}.json', f'svm_{args.dataset}.md']
    if not args.features:
        names.append(f'features_{args.dataset}.npz')
    for name in names:
        check_output_file(os.path.join(work_dir, name),
                          inputs=(args.features, args.config,
                                  args.checkpoint))


def _check_images(paths: List[str]) -> None:
    """Every image exists and is not empty, before any is decoded."""
    for problem, bad in (('no such image', [p for p in paths
                                            if not os.path.isfile(p)]),
                         ('empty image file (0 bytes)',
                          [p for p in paths if os.path.isfile(p)
                           and os.path.getsize(p) == 0])):
        if bad:
            raise DataError(f'{bad[0]}: {problem} ({len(bad)} of '
                            f'{len(paths)} images)')


def extract(args: argparse.Namespace, samples: dict, reader_out: tuple,
            work_dir: str) -> dict:
    """Encode the drawn training images and the test set; cache them."""
    (train_paths, train_labels), (test_paths, test_labels) = reader_out
    index = np.unique(np.concatenate(list(samples.values())))
    paths = [train_paths[i] for i in index] + test_paths
    _check_images(paths)
    model = build_feature_model(args.config, args.cfg_options)
    load_model_weights(model, args.checkpoint, trust=args.trust_checkpoint,
                       submodule='backbone')
    print_log(
        f'encoding {len(index)} training and {len(test_paths)} test '
        'images',
        logger='current')
    feats = extract_features(
        model,
        paths,
        feature_pipeline(args.resize, args.crop),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device)
    require_finite_features(feats, f'features of {args.checkpoint}')
    meta = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        resize=args.resize,
        crop=args.crop,
        seed=args.seed,
        shots=args.shots,
        runs=args.runs)
    data = dict(
        dataset=np.array(args.dataset),
        train_feats=feats[:len(index)],
        train_index=index,
        train_labels=train_labels,
        test_feats=feats[len(index):],
        test_labels=test_labels,
        meta=np.array(json.dumps(meta)))
    path = os.path.join(work_dir, f'features_{args.dataset}.npz')
    save_feature_file(path, data)
    print_log(f'wrote {path}', logger='current')
    data['path'] = path
    return data


def run(args: argparse.Namespace) -> dict:
    _check_args(args)
    work_dir = _work_dir(args)
    reader, train_split, test_split, columns = SPLITS[args.dataset]
    if args.features:
        _check_outputs(args, work_dir)
        data = load_feature_file(args.features, args.dataset, columns)
        data['path'] = args.features
        samples = low_shot_samples(data['train_labels'], args.shots, args.runs,
                                   args.seed)
    else:
        splits = tuple(
            reader(args.data_root, split)
            for split in (train_split, test_split))
        samples = low_shot_samples(splits[0][1], args.shots, args.runs,
                                   args.seed)
        num_images = len(np.unique(np.concatenate(list(
            samples.values())))) + len(splits[1][0])
        _check_outputs(args, work_dir, num_images)
        data = extract(args, samples, splits, work_dir)

    rows = np.full(len(data['train_labels']), -1, dtype=np.int64)
    rows[data['train_index']] = np.arange(len(data['train_index']))
    if any((rows[s] < 0).any() for s in samples.values()):
        raise DataError(
            f'{data["path"]}: no features for some training images drawn with'
            f' --seed {args.seed} --shots {",".join(map(str, args.shots))} '
            f'--runs {args.runs}; use the settings it was extracted with '
            f'(see its meta) or re-extract')
    cost_grid = (args.costs or list(GOYAL_COST_GRID)) \
        if args.cost_sweep else None
    results = evaluate_low_shot(
        args.dataset,
        data['train_feats'],
        data['train_labels'],
        data['test_feats'],
        data['test_labels'],
        samples,
        train_rows=rows,
        cost=args.cost,
        cost_grid=cost_grid,
        ignore_difficult=args.ignore_difficult,
        jobs=args.jobs)

    report = dict(
        dataset=args.dataset,
        metric=DATASETS[args.dataset],
        config=args.config,
        checkpoint=args.checkpoint,
        features=data['path'],
        feature_dim=int(data['train_feats'].shape[1]),
        num_train_images=int(len(data['train_labels'])),
        num_test_images=int(len(data['test_labels'])),
        seed=args.seed,
        runs=args.runs,
        protocol=dict(
            svm='LIBLINEAR -s 1 (L2-regularised L2-loss SVC, dual), '
            'one-vs-rest',
            cost='cross-validated' if cost_grid else args.cost,
            cost_grid=cost_grid,
            tolerance=SVM_TOLERANCE,
            bias=SVM_BIAS,
            positive_weight=(VOC_POSITIVE_WEIGHT
                             if args.dataset == 'voc07' else 1.0),
            ignore_difficult=args.ignore_difficult,
            feature_normalisation='x / (||x|| + 1e-5)',
            average_precision='area under the interpolated precision-'
            'recall curve, all points (not 11-point)'),
        results={
            str(k): v
            for k, v in sorted(results.items())
        })
    table = format_table({TABLE_NAMES[args.dataset]: results})
    base = os.path.join(work_dir, f'svm_{args.dataset}')
    write_json(base + '.json', report)
    write_text(base + '.md', table)
    print_log('\n' + table, logger='current')
    print_log(f'wrote {base}.json and {base}.md', logger='current')
    return report


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    MMLogger.get_instance('svm_eval')
    return run(args)


if __name__ == '__main__':
    run_tool(main)
