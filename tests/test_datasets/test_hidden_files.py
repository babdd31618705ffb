"""A folder as macOS and Jupyter leave it (AppleDouble ``._x.jpg`` files
that are no images, ``.DS_Store``, ``.ipynb_checkpoints/`` with a copy of
an image): every reader of a folder lists its real images only, the same
as from a clean copy, and says how many hidden entries it skipped."""
import os
import os.path as osp
import shutil

import pytest
from mmpretrain.registry import DATASETS

from mopro.datasets.folder_lists import folder_to_lists
from helpers.commands import tool_module
from helpers.data import make_imagenet, write_image
from helpers.log_records import log_messages
from helpers.macos import add_macos_leftovers


def _twins(tmp_path, make):
    """``make(root)`` run for a clean folder and for one that then gets
    the macOS leftovers; (clean root, the other, its hidden entries)."""
    clean, copied = str(tmp_path / 'clean'), str(tmp_path / 'from a mac')
    make(clean)
    shutil.copytree(clean, copied)
    return clean, copied, add_macos_leftovers(copied)


def _own_images(root):
    for c, name in enumerate(['cat', 'dog', 'bird']):
        for i in range(4):
            write_image(osp.join(root, name, f'{i:03d}.jpg'), 10 * c + i, 16)
    write_image(osp.join(root, 'cat', 'more', 'deep.png'), 99, 16)


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def test_folder_to_lists_lists_the_real_images_only(tmp_path):
    clean, copied, hidden = _twins(tmp_path, _own_images)
    assert len(hidden) == 21 and 'cat/more/._deep.png' in hidden
    expected = folder_to_lists(clean)
    lists = folder_to_lists(copied)
    for name in ('train.txt', 'val.txt', 'classes.txt'):
        assert _read(osp.join(copied, name)) == \
            _read(osp.join(clean, name)), name
    assert '._' not in _read(osp.join(copied, 'train.txt')) + \
        _read(osp.join(copied, 'val.txt'))
    assert (lists.num_train, lists.num_val, lists.skipped) == \
        (expected.num_train, expected.num_val, 0) == (10, 3, 0)
    assert lists.hidden == len(hidden)
    assert expected.hidden == 0


def test_converter_tool_reports_the_hidden_entries(tmp_path, capsys):
    _, copied, hidden = _twins(tmp_path, _own_images)
    tool = tool_module('dataset_converters/folder_to_lists')
    tool.main([copied])
    assert capsys.readouterr().out.splitlines()[0] == (
        f'{copied}: 3 classes, 13 images (0 other files skipped, '
        f'{len(hidden)} hidden files and folders skipped) -> '
        f'{copied}/train.txt (10 images), {copied}/val.txt (3), '
        f'{copied}/classes.txt')


def _imagenet_val(root):
    for name in ('n01', 'n02', 'n03'):
        for i in range(2):
            write_image(osp.join(root, 'val', name, f'v{i}.JPEG'), i, 16)


def _imagenet200(root):
    """The 200 class folders, an image file each (listed, not decoded)."""
    for i in range(200):
        folder = osp.join(root, f'n{i:08d}')
        os.makedirs(folder)
        with open(osp.join(folder, f'{i}.jpg'), 'wb') as f:
            f.write(b'x')


# (type, make a clean dataset folder, arguments, the listed folder)
DATASET_FOLDERS = {
    'ImageNetVal': (_imagenet_val, dict(num_classes=3), 'val'),
    'ImageNetSubset': (lambda root: make_imagenet(root, ['n03', 'n01']),
                       dict(subset_file=None, fraction=1.0), 'train'),
    'ImageNet200': (_imagenet200, dict(variant='imagenet-a'), ''),
}


@pytest.mark.parametrize('kind', sorted(DATASET_FOLDERS))
def test_datasets_list_the_real_images_only(tmp_path, kind):
    make, args, listed = DATASET_FOLDERS[kind]
    clean, copied = str(tmp_path / 'clean'), str(tmp_path / 'from a mac')
    make(clean)
    shutil.copytree(clean, copied)
    hidden = add_macos_leftovers(osp.join(copied, listed))

    def build(root):
        return DATASETS.build(
            dict(type=kind, data_root=root, lazy_init=True, **args))

    expected = build(clean)
    expected.full_init()
    dataset = build(copied)
    with log_messages() as logged:
        dataset.full_init()
    paths = [dataset.images.path(i) for i in range(len(dataset))]
    assert paths == [expected.images.path(i) for i in range(len(expected))]
    assert not any('/.' in '/' + path for path in paths)
    assert dataset.get_gt_labels().tolist() == \
        expected.get_gt_labels().tolist()
    folder = osp.join(copied, listed) if listed else copied
    assert logged == [
        f'{folder}: {len(hidden)} hidden files and folders skipped (names '
        f"starting with '.', e.g. {osp.join(folder, hidden[0])})",
        dataset.summary()
    ]
