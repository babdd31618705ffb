#!/usr/bin/env python
r"""Write image lists into tar shards for streaming (docs/shards.md).

    python tools/dataset_converters/lists_to_shards.py webvision \
        data/webvision --out data/webvision_shards --shard-mb 500 \
        --workers 8
    python tools/dataset_converters/lists_to_shards.py folder \
        data/my_images --out data/my_shards --split train
    python tools/dataset_converters/lists_to_shards.py voc07 \
        data/VOCdevkit --out data/voc07_shards --split test

KIND is ``webvision`` (V1.0/V2.0 lists of info/, ``--sources``,
``--list-classes 5000`` for V1.0 from the V2.0 download, ``--subset-size``
for V0.5, ``--split val``), ``imagenet-val`` (``val/<class>/`` or
``--ann-file``), ``folder`` (the ``train.txt``/``val.txt`` of
folder_to_lists.py), or a split of the low-shot SVM benchmark
(docs/svm_benchmark.md) as ``tools/svm_eval.py`` reads it: ``voc07``
(``--split trainval``, ``test``, ``train`` or ``val``; 20 classes, every
record's label -1, the multi-label annotations staying in the VOC class
files) or ``places205`` (``--split train`` or ``val``; the class index).
Writes ``<prefix>-000000.tar`` ... in WebDataset's
layout (``<key>.jpg``, ``<key>.cls``, ``<key>.json``) and
``<prefix>-index.json``; undecodable images are named there and in the
output, not written. Interrupted, run the same command again: finished
shards are kept.
"""
import argparse
import os.path as osp
from typing import List, Optional

from mopro.datasets.shards import (Conversion, ListSettings, convert,
                                   read_source_lists)
from mopro.datasets.shards.index import check_shard_name, shard_name
from mopro.datasets.shards.sources import (KINDS, SPLITS, class_names,
                                           index_num_classes)
from mopro.datasets.shards.writer import check_output_folder
from mopro.utils.cli import (non_negative_int, positive_float, positive_int,
                             tool_parser)
from mopro.utils.errors import DataError, run_tool


def shard_prefix(text: str) -> str:
    """An argparse type: a prefix that makes shard file names an index
    accepts (letters, digits, ``.``, ``_``, ``-``)."""
    try:
        check_shard_name(shard_name(text, 0), '--prefix')
    except DataError:
        raise argparse.ArgumentTypeError(
            f'{text!r}: use letters, digits, ".", "_" and "-"') from None
    return text


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('kind', choices=KINDS, help='which lists')
    parser.add_argument('data_root', help='the dataset folder')
    parser.add_argument('--out', required=True,
                        help='folder of the shards (outside data_root)')
    parser.add_argument('--prefix', type=shard_prefix,
                        help='shard name prefix (default: the split)')
    parser.add_argument(
        '--split', default='train',
        choices=sorted({s
                        for splits in SPLITS.values()
                        for s in splits}), help='which split (voc07: '
        'trainval, test, train or val; the others: train or val)')
    parser.add_argument('--sources', nargs='+', default=['google', 'flickr'],
                        help='WebVision training lists')
    parser.add_argument(
        '--num-classes', type=positive_int,
        help='classes (default: 1000 for WebVision and '
        'ImageNet, the lines of classes.txt for a folder, 20 for VOC07, '
        '205 for Places205)')
    parser.add_argument(
        '--list-classes', type=positive_int,
        help='classes of the WebVision lists, when more '
        'than trained (5000: V1.0 from the V2.0 download)')
    parser.add_argument('--subset-size', type=positive_int,
                        help='WebVision seeded subset (1280000: V0.5)')
    parser.add_argument(
        '--ann-file', help='list file below data_root '
        '(imagenet-val, folder)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--shard-records', type=positive_int,
                      help='records per shard')
    size.add_argument('--shard-mb', type=positive_float,
                      help='about this many MB per shard (default 500)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='seed of the order of the records')
    parser.add_argument('--workers', type=positive_int, default=4,
                        help='processes writing shards')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None):
    args = parse_args(argv)
    if args.shard_records is None and args.shard_mb is None:
        args.shard_mb = 500.0
    settings = ListSettings(args.kind, args.data_root, args.split,
                            args.sources, args.num_classes, args.list_classes,
                            args.subset_size, args.ann_file)
    num_classes = index_num_classes(settings)
    lists = read_source_lists(settings)
    check_output_folder(args.out,
                        [args.data_root] + [s.image_root for s in lists])
    conv = Conversion(args.out, args.prefix or args.split, args.shard_records,
                      args.shard_mb, args.seed, args.workers)
    index = convert(lists, conv, num_classes, class_names(settings))
    for bad in index.bad_images:
        print(f'undecodable, not written: {bad["path"]} ({bad["error"]})')
    print(f'{index.path}: {len(index.shards)} shards, {index.num_records} '
          f'images of {sum(s["records"] for s in index.lists)} listed '
          f'({len(index.bad_images)} undecodable) from '
          f'{", ".join(s["file"] for s in index.lists)} in '
          f'{osp.abspath(args.data_root)}')
    return index


if __name__ == '__main__':
    run_tool(main)
