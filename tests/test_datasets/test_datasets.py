"""WebVision / ImageNet readers, file-list errors, tolerant decoding."""
import os
import os.path as osp
import threading
import warnings
from typing import Tuple

import numpy as np
import pytest
from PIL import Image, ImageFile

from mopro.datasets import ImageNetVal, WebVision, read_file_list
from mopro.datasets.transforms import (ImageDecodeError, LoadWebImage,
                                       decode_rgb, decode_rgb_bytes)
from mopro.datasets.transforms.loading import ImageTooLargeError
from mopro.utils.errors import ConfigError, DataError
from helpers.log_records import log_messages


def _write(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def test_webvision_reads_official_layout(webvision_root):
    train = WebVision(webvision_root, split='train', num_classes=4)
    val = WebVision(webvision_root, split='val', num_classes=4)
    assert len(train) == 32 and len(val) == 8
    info = train.get_data_info(0)
    assert info['img_path'] == osp.join(webvision_root, 'google/q0000/000.jpg')
    assert info['gt_label'] == 0 and info['sample_idx'] == 0
    # google first, then flickr, as the released loader
    assert train.images.path(16).startswith('flickr/')
    assert val.get_data_info(0)['img_path'].startswith(
        osp.join(webvision_root, 'val_images_256'))
    np.testing.assert_array_equal(
        np.bincount(train.get_gt_labels()), [8, 8, 8, 8])


def test_webvision_keeps_classes_below_num_classes(webvision_root):
    # the V1-of-V2 filter (list_classes): dropped lines are logged
    with log_messages() as logged:
        train = WebVision(webvision_root, split='train', num_classes=2,
                          list_classes=5000)
    assert len(train) == 16
    assert set(train.get_gt_labels().tolist()) == {0, 1}
    assert any('train_filelist_google.txt: kept 8 images of classes < '
               'num_classes=2; dropped 8 lines of classes 2..4999' in m
               for m in logged)


@pytest.mark.parametrize('split, line', [('train', 9), ('val', 5)])
def test_label_beyond_num_classes_is_an_error(webvision_root, split, line):
    # without list_classes a list label >= num_classes is a user's mistake:
    # it names the list, the line and the key
    name = 'train_filelist_google.txt' if split == 'train' else \
        'val_filelist.txt'
    with pytest.raises(DataError) as err:
        WebVision(webvision_root, split=split, num_classes=2)
    assert str(err.value) == (
        f'{osp.join(webvision_root, "info", name)}:{line}: label 2 is out of '
        'range [0, 2) (dataset num_classes=2)')


def test_list_with_byte_order_mark(webvision_root):
    path = osp.join(webvision_root, 'info', 'val_filelist.txt')
    with open(path, 'rb') as f:
        text = f.read()
    with open(path, 'wb') as f:
        f.write(b'\xef\xbb\xbf' + text)
    val = WebVision(webvision_root, split='val', num_classes=4, test_mode=True,
                    pipeline=[dict(type='LoadWebImage')])
    assert val.images.path(0) == 'val00000.jpg'
    assert val[0]['img'].shape == (40, 40, 3)  # the first image is found


def test_list_in_another_encoding_names_file_and_line(webvision_root):
    path = osp.join(webvision_root, 'info', 'train_filelist_flickr.txt')
    with open(path, 'ab') as f:
        f.write('flickr/caf\xe9.jpg 1\n'.encode('latin-1'))
    with pytest.raises(DataError) as err:
        WebVision(webvision_root, num_classes=4)
    assert str(err.value) == (f'{path}:17: not UTF-8 text (byte 0xe9 at '
                              'column 11); save the file as UTF-8')


def test_webvision_subset_is_written_once_and_reused(webvision_root):
    first = WebVision(webvision_root, num_classes=4, subset_size=10,
                      subset_seed=3)
    subset_file = first.subset_file
    assert osp.isfile(subset_file)
    paths = [first.images.path(i) for i in range(len(first))]
    assert len(set(paths)) == 10
    # a later run reads the file, even if the full lists changed
    os.remove(osp.join(webvision_root, 'info', 'train_filelist_flickr.txt'))
    again = WebVision(webvision_root, num_classes=4, subset_size=10,
                      subset_seed=3)
    assert [again.images.path(i) for i in range(10)] == paths


def test_webvision_pipeline_yields_two_views(webvision_root):
    views = [[dict(type='RandomResizedCrop', scale=16)],
             [
                 dict(type='RandomResizedCrop', scale=16),
                 dict(type='NumpyToPIL', to_rgb=True),
                 dict(type='torchvision/ColorJitter', brightness=0.4,
                      contrast=0.4, saturation=0.4, hue=0.4),
                 dict(type='PILToNumpy', to_bgr=True)
             ]]
    dataset = WebVision(
        webvision_root, num_classes=4, pipeline=[
            dict(type='LoadWebImage'),
            dict(type='MultiView', num_views=[1, 1], transforms=views),
            dict(type='PackInputs', meta_keys=['sample_idx']),
        ])
    for idx in range(6):  # negative hue factors included, no overflow
        item = dataset[idx]
        assert [tuple(v.shape) for v in item['inputs']] == [(3, 16, 16)] * 2
        assert item['data_samples'].sample_idx == idx


@pytest.mark.parametrize('content, message', [
    ('a.jpg 1\nbroken_line\n', ':2: expected "relative/path label"'),
    ('a.jpg 1\nb.jpg x\n', ":2: label 'x' is not an integer"),
    ('a.jpg -1\n', ':1: label -1 is negative'),
    ('a.jpg 1\nb.jpg 6000\n', ':2: label 6000 is out of range [0, 1000) '
     '(dataset num_classes=1000)'),
    ('a.jpg 1\nb.jpg 2\na.jpg 3\n', ":3: duplicate path 'a.jpg' (first at "
     'line 1)'),
])
def test_file_list_errors_name_file_and_line(tmp_path, content, message):
    root = str(tmp_path)
    _write(osp.join(root, 'info', 'train_filelist_google.txt'), content)
    _write(osp.join(root, 'info', 'train_filelist_flickr.txt'), '')
    with pytest.raises(ValueError) as err:
        WebVision(root, num_classes=1000)
    assert str(err.value).startswith(
        osp.join(root, 'info', 'train_filelist_google.txt') + message)


@pytest.mark.parametrize('split, missing',
                         [('train', 'train_filelist_flickr.txt'),
                          ('val', 'val_filelist.txt')])
def test_missing_official_list_says_which_and_what_to_do(
        tmp_path, split, missing):
    # WebVision reads both official training lists: a download without the
    # Flickr list is an error naming it, data_root and the way to train on
    # images of one's own
    root = str(tmp_path)
    _write(
        osp.join(root, 'info', 'train_filelist_google.txt'),
        'google/a.jpg 0\n')
    with pytest.raises(FileNotFoundError) as err:
        WebVision(root, split=split)
    assert str(err.value) == (
        f'{osp.join(root, "info", missing)}: WebVision list not found; '
        f'data_root ({root}) must be the WebVision download: info/ with the '
        'official train_filelist_google.txt, train_filelist_flickr.txt and '
        'val_filelist.txt beside the images. For a folder of your own '
        'images use configs/mopro_r50_custom.py (configs/README.md)')


def test_each_dataset_logs_what_it_read(webvision_root, tmp_path):
    with log_messages() as logged:
        WebVision(webvision_root, split='train', num_classes=4)
        WebVision(webvision_root, split='val', num_classes=5)
        WebVision(webvision_root, split='train', num_classes=4,
                  sources=['google'], subset_size=10)
    assert logged == [
        f'WebVision train at {webvision_root}: 32 images of 4 classes from '
        'google, flickr',
        # a class without images is counted
        f'WebVision val at {webvision_root}: 8 images of 5 classes (4 of '
        'them with images) from val_filelist.txt',
        f'WebVision train at {webvision_root}: 10 images of 4 classes (3 of '
        'them with images) from google (subset train_subset_10_seed0.txt)',
    ]
    # the thousands separated, as for WebVision's 2,439,574 training images
    _write(
        str(tmp_path / 'info' / 'val_filelist.txt'),
        ''.join(f'{i}.jpg {i % 3}\n' for i in range(1234)))
    with log_messages() as logged:
        WebVision(str(tmp_path), split='val', num_classes=3)
    assert logged == [
        f'WebVision val at {tmp_path}: 1,234 images of 3 '
        'classes from val_filelist.txt'
    ]


def test_empty_dataset_is_an_error(tmp_path):
    _write(str(tmp_path / 'info' / 'val_filelist.txt'), 'a.jpg 7\n')
    with pytest.raises(ValueError, match='the dataset is empty'):
        WebVision(str(tmp_path), split='val', num_classes=5, list_classes=5000)


def test_read_file_list_is_compact(tmp_path):
    path = str(tmp_path / 'list.txt')
    _write(path, ''.join(f'd/{i}.jpg {i % 7}\n' for i in range(1000)))
    images = read_file_list(path, num_classes=5, list_classes=7)
    assert len(images) == sum(1 for i in range(1000) if i % 7 < 5)
    assert images.labels.dtype == np.int32
    assert images.path(0) == 'd/0.jpg' and images.path(5) == 'd/7.jpg'


@pytest.mark.parametrize('numeric', [True, False])
def test_imagenet_val_folder_layouts(tmp_path, numeric):
    names = ['0', '1', '2', '10'] if numeric else \
        ['n01440764', 'n01443537', 'n01484850', 'n01491361']
    for name in names:
        folder = tmp_path / 'val' / name
        folder.mkdir(parents=True)
        Image.new('RGB', (8, 8)).save(folder / 'x.JPEG')
    dataset = ImageNetVal(str(tmp_path), num_classes=3)
    labels = {
        dataset.images.path(i).split('/')[0]: int(dataset.images.labels[i])
        for i in range(len(dataset))
    }
    expected = {names[0]: 0, names[1]: 1, names[2]: 2}
    assert labels == expected


# --- tolerant decoding ------------------------------------------------------
def _rgb(tmp_path, name, img, **save):
    path = str(tmp_path / name)
    img.save(path, **save)
    return path


def test_decodes_every_mode_to_rgb(tmp_path):
    base = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (12, 10, 3), np.uint8))
    paths = [
        _rgb(tmp_path, 'cmyk.jpg', base.convert('CMYK')),
        _rgb(tmp_path, 'palette.png', base.convert('P')),
        _rgb(tmp_path, 'grey.png', base.convert('L')),
        _rgb(tmp_path, 'alpha.png', base.convert('RGBA')),
        _rgb(tmp_path, 'grey16.png',
             Image.fromarray(np.full((12, 10), 65535, np.uint16))),
    ]
    for path in paths:
        arr = decode_rgb(path)
        assert arr.shape == (12, 10, 3) and arr.dtype == np.uint8, path
    assert decode_rgb(paths[-1]).min() == 255  # 16-bit white stays white


def _jpeg_and_its_cut(tmp_path) -> Tuple[str, bytes]:
    """A 64 x 64 noise JPEG (quality 95) and its first two thirds."""
    path = _rgb(
        tmp_path, 'full.jpg',
        Image.fromarray(
            np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)),
        quality=95)
    data = open(path, 'rb').read()
    return path, data[:len(data) * 2 // 3]


def test_truncated_jpeg_decodes(tmp_path):
    path, cut_bytes = _jpeg_and_its_cut(tmp_path)
    cut = str(tmp_path / 'cut.jpg')
    with open(cut, 'wb') as f:
        f.write(cut_bytes)
    arr = decode_rgb(cut)
    assert arr.shape == (64, 64, 3)
    # the decoded part equals the full image's top rows
    np.testing.assert_array_equal(arr[:8], decode_rgb(path)[:8])


def test_overlapping_decodes_in_threads_keep_the_tolerance(
        tmp_path, monkeypatch):
    """Thread F starts decoding, thread S starts a truncated JPEG, F ends
    first: S still decodes it (PIL's LOAD_TRUNCATED_IMAGES stays on), and
    once both are done PIL's switch and the warning filters are as before
    (not left ignoring every warning)."""
    whole, cut = _jpeg_and_its_cut(tmp_path)
    data = open(whole, 'rb').read()
    inside = {name: threading.Event() for name in 'FS'}
    release = {name: threading.Event() for name in 'FS'}
    real_open = Image.open

    def paused_open(fp, *args, **kwargs):
        name = threading.current_thread().name
        inside[name].set()
        assert release[name].wait(30)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, 'open', paused_open)
    truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
    filters_before = list(warnings.filters)
    decoded = {}

    def decode(name, payload):
        try:
            decoded[name] = decode_rgb_bytes(payload, f'{name}.jpg')
        except ImageDecodeError as err:
            decoded[name] = err

    threads = {
        'F': threading.Thread(target=decode, args=('F', data), name='F'),
        'S': threading.Thread(target=decode, args=('S', cut), name='S')
    }
    threads['F'].start()
    assert inside['F'].wait(30)
    threads['S'].start()
    assert inside['S'].wait(30)
    release['F'].set()
    threads['F'].join(30)
    release['S'].set()
    threads['S'].join(30)
    assert decoded['F'].shape == (64, 64, 3)
    assert not isinstance(decoded['S'], Exception), decoded['S']
    assert decoded['S'].shape == (64, 64, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES == truncated_before
    assert warnings.filters == filters_before


@pytest.mark.parametrize('kind', ['missing', 'empty', 'text'])
def test_undecodable_files_raise_named_error(tmp_path, kind):
    path = str(tmp_path / 'bad.jpg')
    if kind == 'empty':
        open(path, 'wb').close()
    elif kind == 'text':
        _write(path, 'not an image')
    with pytest.raises(ImageDecodeError, match='bad.jpg'):
        LoadWebImage()(dict(img_path=path))


def test_load_web_image_is_bgr(tmp_path):
    path = _rgb(tmp_path, 'red.png', Image.new('RGB', (4, 4), (255, 0, 0)))
    out = LoadWebImage()(dict(img_path=path))
    assert out['img'][0, 0].tolist() == [0, 0, 255]
    assert out['img_shape'] == (4, 4)


def test_bad_training_images_are_skipped_and_counted(webvision_root):
    bad = osp.join(webvision_root, 'google/q0001/000.jpg')
    open(bad, 'wb').close()
    dataset = WebVision(webvision_root, num_classes=4,
                        pipeline=[dict(type='LoadWebImage')])
    idx = next(
        i for i in range(len(dataset))
        if dataset.get_data_info(i)['img_path'] == bad)
    item = dataset[idx]  # another sample is drawn instead
    assert item['img_path'] != bad
    # the random redraw may hit the bad image again: each try is counted
    assert dataset.num_bad >= 1
    assert dataset.num_loaded == 1


def test_too_many_bad_images_stop_the_run(webvision_root):
    dataset = WebVision(webvision_root, num_classes=4,
                        pipeline=[dict(type='LoadWebImage')],
                        max_bad_fraction=0.01)
    dataset.num_loaded = 99
    open(osp.join(webvision_root, 'google/q0000/000.jpg'), 'wb').close()
    open(osp.join(webvision_root, 'google/q0000/001.jpg'), 'wb').close()
    dataset.prepare_data(0)
    with pytest.raises(DataError, match='2 of 101 images could not be '
                       'decoded'):
        dataset.prepare_data(1)


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    # a small PNG declaring 13000 x 13000 pixels: its header is read, its
    # 0.5 GB of pixels never decoded
    path = str(tmp_path / 'huge.png')
    Image.new('L', (13000, 13000)).save(path, optimize=True)
    assert osp.getsize(path) < 200_000
    small = _rgb(tmp_path, 'small.png', Image.new('RGB', (20, 20)))
    monkeypatch.setattr(ImageFile.ImageFile, 'load',
                        lambda self: pytest.fail('decoded an oversized image'))
    with pytest.raises(ImageTooLargeError) as err:
        LoadWebImage()(dict(img_path=path))
    assert str(err.value).startswith(
        f'{path}: 13000 x 13000 image (169 megapixels, 0.5 GiB decoded) is '
        'larger than max_pixels=67108864')
    with pytest.raises(ImageTooLargeError, match='max_pixels=100 '):
        LoadWebImage(max_pixels=100)(dict(img_path=small))


def test_oversized_training_image_is_skipped_and_counted(webvision_root):
    dataset = WebVision(webvision_root, num_classes=4,
                        pipeline=[dict(type='LoadWebImage', max_pixels=1000)])
    with log_messages() as logged:
        assert dataset.prepare_data(0) is None  # 40 x 40 = 1600 pixels
    assert dataset.num_bad == 1
    (message, ) = logged
    assert message.startswith(
        'skipping undecodable image (1 so far in this worker): '
        f'{webvision_root}/google/q0000/000.jpg: 40 x 40 image')


@pytest.mark.parametrize('value, message', [
    ('abc', "train_dataloader.dataset.max_bad_fraction must be a number in "
     "[0, 1], got 'abc'"),
    (1.5, 'train_dataloader.dataset.max_bad_fraction must be in [0, 1], '
     'got 1.5'),
])
def test_bad_max_bad_fraction_is_refused_when_built(webvision_root, value,
                                                    message):
    with pytest.raises(ConfigError) as err:
        WebVision(webvision_root, num_classes=4, max_bad_fraction=value)
    assert str(err.value) == message


def test_bad_test_image_is_an_error(webvision_root):
    dataset = WebVision(webvision_root, split='val', num_classes=4,
                        test_mode=True, pipeline=[dict(type='LoadWebImage')])
    open(dataset.get_data_info(0)['img_path'], 'wb').close()
    with pytest.raises(ImageDecodeError, match='empty'):
        dataset[0]
