"""Images of one's own: the lists of a folder of class subfolders
(folder_lists, tools/dataset_converters/folder_to_lists.py) and the dataset
that reads them (CustomImageList)."""
import os
import os.path as osp

import pytest

from mopro.datasets import CustomImageList
from mopro.datasets.folder_lists import (folder_to_lists, scan_class_folders,
                                         split_per_class)
from mopro.utils.errors import DataError, UserError
from helpers.commands import finish, start
from helpers.data import write_image
from helpers.log_records import log_messages


def make_folder(root, counts, extra=True) -> str:
    """``root/<class>/<i>.jpg`` for ``{class: count}``; with ``extra``, a
    text file in a class, a nested image and hidden files."""
    seed = 0
    for name, count in counts.items():
        for i in range(count):
            write_image(osp.join(root, name, f'{i:03d}.jpg'), seed, 16)
            seed += 1
    if extra:
        first = sorted(counts)[0]
        with open(osp.join(root, first, 'notes.txt'), 'w') as f:
            f.write('not an image')
        write_image(osp.join(root, first, 'more', 'deep.png'), seed, 16)
        os.makedirs(osp.join(root, '.thumbnails'))
        with open(osp.join(root, first, '.DS_Store'), 'w') as f:
            f.write('')
    return root


def read_list(path):
    with open(path, encoding='utf-8') as f:
        return [line.rsplit(' ', 1) for line in f.read().splitlines()]


def test_folder_to_lists_writes_a_stratified_split(tmp_path):
    root = make_folder(
        str(tmp_path / 'images'), {
            'cat': 10,
            'dog': 5,
            'bird': 2,
            'single': 1
        })
    lists = folder_to_lists(root, val_fraction=0.2, seed=3)
    with open(osp.join(root, 'classes.txt')) as f:
        assert f.read() == 'bird\ncat\ndog\nsingle\n'
    train = read_list(osp.join(root, 'train.txt'))
    val = read_list(osp.join(root, 'val.txt'))
    per_class = {
        label: sum(1 for _, lab in val if lab == label)
        for label in '0123'
    }
    # round(0.2 n), at least one where a class has two images, never all:
    # bird 3 (the nested image included) -> 1, cat 10 -> 2, dog 5 -> 1,
    # single 1 -> 0
    assert per_class == {'0': 1, '1': 2, '2': 1, '3': 0}
    paths = [p for p, _ in train + val]
    assert len(paths) == len(set(paths)) == 19
    assert 'bird/more/deep.png' in paths
    assert not any(p.endswith(('notes.txt', '.DS_Store')) for p in paths)
    for path, label in train + val:
        name = path.split('/')[0]
        assert ['bird', 'cat', 'dog', 'single'].index(name) == int(label)
    # notes.txt skipped; .DS_Store and .thumbnails/ hidden
    assert (lists.num_classes, lists.num_train, lists.num_val, lists.skipped,
            lists.hidden, lists.without_val) == (4, 15, 4, 1, 2, ['single'])
    # seeded: the same split again, another one with another seed
    again = split_per_class(scan_class_folders(root).images, 0.2, seed=3)
    assert [p for p, _ in again[1]] == [p for p, _ in val]
    other = split_per_class(scan_class_folders(root).images, 0.2, seed=4)
    assert [p for p, _ in other[1]] != [p for p, _ in val]


def test_lists_are_not_overwritten_without_force(tmp_path):
    root = make_folder(str(tmp_path / 'images'), {'a': 3, 'b': 3})
    folder_to_lists(root)
    with open(osp.join(root, 'val.txt'), 'w') as f:
        f.write('mine\n')
    with pytest.raises(UserError, match='train.txt exists; pass --force'):
        folder_to_lists(root, seed=1)
    with open(osp.join(root, 'val.txt')) as f:
        assert f.read() == 'mine\n'
    folder_to_lists(root, force=True)
    assert len(read_list(osp.join(root, 'val.txt'))) == 2


def test_lists_in_another_folder_point_at_the_images(tmp_path):
    root = make_folder(str(tmp_path / 'images'), {'a': 2, 'b': 2}, extra=False)
    out = str(tmp_path / 'lists')
    folder_to_lists(root, out_dir=out)
    assert sorted(os.listdir(root)) == ['a', 'b']
    dataset = CustomImageList(out, ann_file='train.txt', num_classes=2)
    assert osp.isfile(dataset.get_data_info(0)['img_path'])
    # an output folder inside the image folder is no class
    inside = osp.join(root, 'lists')
    lists = folder_to_lists(root, out_dir=inside)
    assert lists.num_classes == 2


@pytest.mark.parametrize('layout, message', [
    ({}, 'no class folders; expected {root}/<class name>/<image>'),
    ({
        'a': 2,
        'empty': 0
    }, 'no images (.jpg, .jpeg, .png, .bmp, .webp) in this class folder'),
])
def test_folder_errors_are_one_line(tmp_path, layout, message):
    root = str(tmp_path / 'images')
    os.makedirs(root)
    make_folder(root, layout, extra=False)
    for name in layout:
        os.makedirs(osp.join(root, name), exist_ok=True)
    with pytest.raises(DataError) as err:
        folder_to_lists(root)
    assert message.format(root=root) in str(err.value)
    assert '\n' not in str(err.value)
    assert not osp.exists(osp.join(root, 'train.txt'))


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    root = make_folder(str(tmp_path / 'images'), {'a': 2, 'b': 2}, extra=False)
    locked = osp.join(root, 'b')
    scandir = os.scandir

    def no_permission(path='.'):
        # as without the read permission (which root does not need)
        if osp.realpath(path) == osp.realpath(locked):
            raise PermissionError(13, 'Permission denied', path)
        return scandir(path)

    monkeypatch.setattr(os, 'scandir', no_permission)
    with pytest.raises(DataError) as err:
        folder_to_lists(root)
    assert str(err.value) == (f'{locked}: cannot read the folder '
                              '(Permission denied)')
    assert not osp.exists(osp.join(root, 'train.txt'))


def test_val_fraction_is_checked_before_any_work(tmp_path):
    with pytest.raises(
            UserError, match=r'--val-fraction must be in \(0, '
            r'1\), got 1.0'):
        folder_to_lists(str(tmp_path / 'missing'), val_fraction=1.0)


@pytest.mark.slow
def test_converter_tool_reports_and_errs_in_one_line(tmp_path):
    root = make_folder(str(tmp_path / 'images'), {'a': 4, 'b': 4})
    listed = make_folder(str(tmp_path / 'listed'), {'a': 2}, extra=False)
    with open(osp.join(listed, 'train.txt'), 'w') as f:
        f.write('mine\n')
    afile = tmp_path / 'afile'
    afile.write_text('mine')
    tool = 'dataset_converters/folder_to_lists'
    result, again, to_file = finish([
        start(tool, [root, '--val-fraction', '0.25'], str(tmp_path)),
        start(tool, [listed], str(tmp_path)),
        # --out a file was "[Errno 17] File exists"
        start(tool, [root, '--out', afile, '--force'], str(tmp_path))
    ])
    assert result.returncode == 0, result.stderr
    # a: 4 + 1 nested image, b: 4; a quarter of each, rounded: 1 and 1
    assert result.stdout.splitlines() == [
        f'{root}: 2 classes, 9 images (1 other files skipped, 2 hidden '
        'files and folders skipped) -> '
        f'{root}/train.txt (7 images), {root}/val.txt (2), '
        f'{root}/classes.txt',
        'train: python tools/train.py configs/mopro_r50_custom.py '
        f'--cfg-options data_root={root} num_classes=2'
    ]
    assert again.returncode == 1
    assert again.stderr == (f'error: {listed}/train.txt exists; pass '
                            '--force to overwrite the lists\n')
    assert sorted(os.listdir(listed)) == ['a', 'train.txt']
    assert to_file.returncode == 1
    assert to_file.stderr == (f'error: {afile}: the list folder is a file, '
                              'not a folder\n')
    assert afile.read_text() == 'mine'


def test_custom_image_list_reads_names_and_logs(tmp_path):
    root = make_folder(
        str(tmp_path / 'images'), {
            'cat': 3,
            'dog': 3
        }, extra=False)
    folder_to_lists(root)
    with log_messages() as logged:
        train = CustomImageList(root, ann_file='train.txt', num_classes=2)
    assert logged == [
        f'CustomImageList at {root}: 4 images of 2 classes '
        'from train.txt'
    ]
    assert list(train.metainfo['classes']) == ['cat', 'dog']
    info = train.get_data_info(0)
    assert info['img_path'] == osp.join(
        root, 'cat',
        read_list(osp.join(root, 'train.txt'))[0][0].split('/', 1)[1])
    with pytest.raises(DataError) as err:
        CustomImageList(root, ann_file='train.txt', num_classes=3)
    assert str(err.value) == (
        f'{root}/classes.txt: 2 class names but num_classes=3; pass '
        '--cfg-options num_classes=2')
    # without classes.txt the classes are numbered
    os.remove(osp.join(root, 'classes.txt'))
    val = CustomImageList(root, ann_file='val.txt', num_classes=2)
    assert list(val.metainfo['classes']) == ['0', '1']


@pytest.mark.parametrize('content, message', [
    ('cat\n\ndog\n', ':2: blank class name (one name a line, in label '
     'order)'),
    ('cat\ndog\ncat\n', ":3: duplicate class name 'cat' (first at line 1)"),
])
def test_class_names_errors_name_the_line(tmp_path, content, message):
    (tmp_path / 'classes.txt').write_text(content)
    (tmp_path / 'train.txt').write_text('a.jpg 0\n')
    with pytest.raises(DataError) as err:
        CustomImageList(str(tmp_path), num_classes=3)
    assert str(err.value) == f'{tmp_path}/classes.txt{message}'


def test_missing_list_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        CustomImageList(str(tmp_path), ann_file='val.txt', num_classes=2)
    assert str(err.value) == (
        f'{tmp_path}/val.txt: image list not found; data_root must be the '
        'folder of train.txt, val.txt and classes.txt, which python '
        'tools/dataset_converters/folder_to_lists.py <image folder> writes')
