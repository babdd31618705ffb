#!/usr/bin/env python
r"""Write the image lists of a folder of class subfolders.

    python tools/dataset_converters/folder_to_lists.py data/my_images \
        [--out DIR] [--val-fraction 0.1] [--seed 0] [--force]

From ``data/my_images/<class name>/<image>`` it writes ``train.txt``,
``val.txt`` (a seeded, per-class held-out split) and ``classes.txt`` (the
class names in label order) into the folder (or ``--out``), the data of
``configs/mopro_r50_custom.py``::

    python tools/train.py configs/mopro_r50_custom.py \
        --cfg-options data_root=data/my_images num_classes=<classes>

Existing lists are kept unless ``--force``; files that are not images,
and hidden files and folders (``._x.jpg``, ``.DS_Store``,
``.ipynb_checkpoints/``), are skipped and counted
(``mopro/datasets/folder_lists.py``). The last line is the training
command, its paths quoted for a shell.
"""
import argparse
import shlex
from typing import List, Optional

from mopro.datasets.folder_lists import FolderLists, folder_to_lists
from mopro.utils.cli import non_negative_int, tool_parser
from mopro.utils.errors import run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument('root', help='folder of class subfolders')
    parser.add_argument(
        '--out', help='folder of the lists (default: root); '
        'their paths are relative to it')
    parser.add_argument(
        '--val-fraction', type=float, default=0.1,
        help='fraction of each class held out for val.txt '
        '(at least one image of a class with two or more)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='seed of the held-out split')
    parser.add_argument('--force', action='store_true',
                        help='overwrite existing lists')
    return parser.parse_args(argv)


def train_command(lists: FolderLists) -> str:
    """The command that pretrains on the lists, quoted to be pasted into a
    shell."""
    return shlex.join([
        'python', 'tools/train.py', 'configs/mopro_r50_custom.py',
        '--cfg-options', f'data_root={lists.out_dir}',
        f'num_classes={lists.num_classes}'
    ])


def report(args: argparse.Namespace, lists: FolderLists) -> str:
    hidden = (f', {lists.hidden} hidden files and folders skipped'
              if lists.hidden else '')
    lines = [
        f'{args.root}: {lists.num_classes} classes, '
        f'{lists.num_train + lists.num_val} images ({lists.skipped} other '
        f'files skipped{hidden}) -> {lists.files["train.txt"]} '
        f'({lists.num_train} images), {lists.files["val.txt"]} '
        f'({lists.num_val}), '
        f'{lists.files["classes.txt"]}'
    ]
    if lists.without_val:
        lines.append(f'{len(lists.without_val)} classes have a single '
                     f'image and none in val.txt (e.g. '
                     f'{lists.without_val[0]})')
    lines.append(f'train: {train_command(lists)}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> FolderLists:
    args = parse_args(argv)
    lists = folder_to_lists(args.root, args.out, args.val_fraction, args.seed,
                            args.force)
    print(report(args, lists))
    return lists


if __name__ == '__main__':
    run_tool(main)
