r"""Low-shot linear SVM benchmark on fixed features (paper Sec. 5.1, Table 2).

Extracts encoder features of VOC07 (trainval / test) or Places205
(train / val), caches them in ``WORK_DIR/features_<dataset>.npz``, trains
LIBLINEAR SVMs on k = 1, 2, 4, 8, 16 images per class (5 seeded draws) and
writes ``WORK_DIR/svm_<dataset>.json`` and ``.md`` (mean ± std, as Table 2).
Only the training images that some draw uses are encoded
(``mopro.evaluation.low_shot``). Examples::

    python tools/svm_eval.py configs/mopro_r50_webvision_v1.py epoch_90.pth \
        --dataset voc07 --data-root data/VOCdevkit
    # the images from shards of the two splits (lists_to_shards.py voc07)
    python tools/svm_eval.py configs/mopro_r50_webvision_v1.py epoch_90.pth \
        --dataset voc07 --data-root data/VOCdevkit \
        --shard-root data/voc07_shards
    # SVM stage alone, from the cached features
    python tools/svm_eval.py --dataset voc07 \
        --features work_dirs/svm_eval/mopro_r50_webvision_v1/features_voc07.npz
"""
import argparse
import os
from typing import List, Optional

from mmengine.logging import MMLogger

from mopro.evaluation.low_shot import (DEFAULT_RUNS, DEFAULT_SHOTS, SPLITS,
                                       SVMBenchmarkSettings, run_svm_benchmark)
from mopro.evaluation.svm import DEFAULT_COST
from mopro.utils.cli import (ConfigOptionsAction, add_checkpoint_args,
                             add_device_arg, non_negative_int, positive_int,
                             positive_list, settings_from_args, tool_parser)
from mopro.utils.errors import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    add = parser.add_argument
    add('config', nargs='?', help='model config file')
    add_checkpoint_args(parser, optional=True)
    add('--dataset', required=True, choices=sorted(SPLITS))
    add('--data-root', help='dataset root (see README)')
    add(
        '--shard-root', help='read the images from the shards of the '
        'training and test splits in this folder (<split>-index.json, '
        'written by lists_to_shards.py voc07|places205); labels and splits '
        'still come from --data-root')
    add(
        '--work-dir', help='output folder (default: '
        'work_dirs/svm_eval/<config or features name>)')
    add(
        '--features', help='cached features (.npz) of an earlier run: run '
        'the SVM stage alone (CONFIG, CKPT and --data-root are then not '
        'needed)')
    add('--cost', type=float, default=DEFAULT_COST,
        help='SVM cost C (default: %(default)s)')
    add(
        '--cost-sweep', action='store_true',
        help='choose the cost by 3-fold cross-validation on each k-shot '
        'training set (Goyal et al. 2019); --cost is kept where too few '
        'samples')
    add('--costs', type=positive_list(float),
        help='cost grid of --cost-sweep (default: Goyal et al. 2019 grid)')
    add(
        '--ignore-difficult', action='store_true',
        help='VOC07: drop "difficult" images from the train and test sets '
        'of their class (standard protocol) instead of counting them as '
        'negatives (released code)')
    add('--shots', type=positive_list(int), default=list(DEFAULT_SHOTS),
        help='comma-separated k values (default: 1,2,4,8,16)')
    add('--runs', type=positive_int, default=DEFAULT_RUNS,
        help='independent draws per k (default: 5)')
    add('--seed', type=non_negative_int, default=0,
        help='seed of the low-shot draws')
    add('--jobs', type=positive_int,
        help='processes for the SVM fits (default: all cores)')
    add('--batch-size', type=positive_int, default=256)
    add('--num-workers', type=non_negative_int,
        default=min(8,
                    os.cpu_count() or 1))
    add('--resize', type=positive_int, default=256,
        help='short side of the resized image')
    add('--crop', type=positive_int, default=224, help='center crop size')
    add_device_arg(parser)
    add('--cfg-options', nargs='+', action=ConfigOptionsAction,
        help='override config settings, key=value (e.g. model.feat_dim=512)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    MMLogger.get_instance('svm_eval')
    return run_svm_benchmark(settings_from_args(SVMBenchmarkSettings, args))


if __name__ == '__main__':
    run_tool(main)
