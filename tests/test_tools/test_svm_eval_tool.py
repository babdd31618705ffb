"""tools/svm_eval.py (mopro.evaluation.low_shot.run_svm_benchmark) end to
end on a tiny VOC layout and a tiny ResNet-18 MoPro (CPU), the --features
SVM stage, the images read from shards (--shard-root, after
lists_to_shards.py voc07|places205), and its one-line errors."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

import mopro.evaluation.low_shot as low_shot
from mopro.datasets.lowshot import VOC07_CLASSES, image_dir
from mopro.datasets.shards import read_index
from mopro.evaluation.low_shot import SVMBenchmarkSettings, run_svm_benchmark
from helpers.commands import call_tool, run_tools, tool_module
from helpers.configs import tiny_mopro_cfg
from helpers.shards import shard_records

C = len(VOC07_CLASSES)
MODEL = tiny_mopro_cfg(
    backbone=dict(type='ResNet', depth=18, zero_init_residual=False),
    num_classes=5, embed_dim=128, proj_hidden_dim=2048, queue_len=64)
FAST = dict(resize=40, crop=32, batch_size=4, num_workers=0, shots=[1, 2],
            runs=2, jobs=1, device='cpu')


def voc_labels(num: int, offset: int) -> np.ndarray:
    """Image i is a positive of the classes c with c % 5 == (i + offset) % 5;
    trainval (10 images) has 2 positives per class, test (5) has 1."""
    labels = -np.ones((num, C), dtype=np.int8)
    for i in range(num):
        labels[i, np.arange(C) % 5 == (i + offset) % 5] = 1
    return labels


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc')
    voc = root / 'VOC2007'
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    (voc / 'JPEGImages').mkdir()
    rng = np.random.default_rng(0)
    splits = {
        'trainval': (range(0, 10), voc_labels(10, 0)),
        'test': (range(10, 15), voc_labels(5, 0))
    }
    splits['trainval'][1][3, 7] = 0  # a difficult label
    for split, (ids, labels) in splits.items():
        for c, name in enumerate(VOC07_CLASSES):
            text = ''.join(f'{i:06d} {labels[j][c]:2d}\n'
                           for j, i in enumerate(ids))
            (voc / 'ImageSets' / 'Main' /
             f'{name}_{split}.txt').write_text(text)
        for i in ids:
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(voc / 'JPEGImages' / f'{i:06d}.jpg')
    return root


@pytest.fixture(scope='module')
def places_root(tmp_path_factory):
    """Places205 in the released code's layout: 3 scenes, 2 training and
    1 validation image each."""
    root = tmp_path_factory.mktemp('places')
    images = root / 'data/vision/torralba/deeplearning/images256'
    lists = root / 'trainvalsplit_places205'
    lists.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, per_class in (('train', 2), ('val', 1)):
        lines = []
        for c, scene in enumerate(('abbey', 'bar', 'canyon')):
            for i in range(per_class):
                rel = f'{scene[0]}/{scene}/{split}{i}.jpg'
                (images / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(
                    rng.integers(0, 256, (40, 52, 3),
                                 dtype=np.uint8)).save(images / rel)
                lines.append(f'{rel} {c}\n')
        (lists / f'{split}_places205.csv').write_text(''.join(lines))
    return root


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    from mmpretrain.registry import MODELS
    root = tmp_path_factory.mktemp('model')
    config = root / 'tiny_mopro.py'
    config.write_text(f'model = {MODEL!r}\n')
    torch.manual_seed(0)
    model = MODELS.build(MODEL)
    ckpt = root / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    # the same encoder in the released code's checkpoint format
    released = {
        f'module.encoder_q.{k}': v
        for k, v in model.backbone.state_dict().items()
    }
    released['module.encoder_q.fc1.weight'] = torch.zeros(2048, 512)
    released['module.queue'] = torch.zeros(128, 64)
    original = root / 'released.pth.tar'
    torch.save({
        'epoch': 90,
        'arch': 'resnet18',
        'state_dict': released
    }, original)
    return str(config), str(ckpt), str(original)


def run(dataset, config=None, checkpoint=None, **settings) -> dict:
    """run_svm_benchmark, paths given as strings (as the tool gives them)."""
    settings = {
        k: str(v) if isinstance(v, os.PathLike) else v
        for k, v in settings.items()
    }
    return run_svm_benchmark(
        SVMBenchmarkSettings(dataset, config=config, checkpoint=checkpoint,
                             **settings))


def test_voc07_end_to_end_and_features_rerun(voc_root, tiny_model, tmp_path):
    config, ckpt, original = tiny_model
    work = tmp_path / 'work'
    run('voc07', config, ckpt, data_root=voc_root, work_dir=work, **FAST)
    assert sorted(os.listdir(work)) == [
        'features_voc07.npz', 'svm_voc07.json', 'svm_voc07.md'
    ]

    with np.load(work / 'features_voc07.npz') as npz:
        feats = {k: npz[k] for k in npz.files}
    # k=2 draws both positives of every class: all 10 trainval images
    np.testing.assert_array_equal(feats['train_index'], np.arange(10))
    assert feats['train_feats'].shape == (10, 512)
    assert feats['test_feats'].shape == (5, 512)
    assert feats['train_labels'].shape == (10, C)
    assert feats['train_labels'][3, 7] == 0
    np.testing.assert_array_equal(feats['test_labels'], voc_labels(5, 0))
    assert str(feats['dataset']) == 'voc07'
    assert json.loads(str(feats['meta']))['crop'] == 32

    report = json.loads((work / 'svm_voc07.json').read_text())
    assert report['dataset'] == 'voc07' and report['metric'] == 'mAP'
    assert report['feature_dim'] == 512
    assert (report['num_train_images'], report['num_test_images']) == (10, 5)
    assert report['protocol']['cost'] == 0.5
    assert report['protocol']['positive_weight'] == 2.0
    assert sorted(report['results']) == ['1', '2']
    for entry in report['results'].values():
        assert len(entry['runs']) == 2
        assert all(0 <= v <= 100 for v in entry['runs'])
        assert entry['mean'] == pytest.approx(np.mean(entry['runs']))
        assert entry['std'] == pytest.approx(np.std(entry['runs']))
    table = (work / 'svm_voc07.md').read_text().splitlines()
    assert table[0] == '| Dataset | k=1 | k=2 |'
    r = report['results']
    assert table[2] == (f'| VOC07 (mAP) | {r["1"]["mean"]:.1f} ± '
                        f'{r["1"]["std"]:.1f} | {r["2"]["mean"]:.1f} ± '
                        f'{r["2"]["std"]:.1f} |')

    # SVM stage alone from the cached features: same numbers
    rerun = tmp_path / 'rerun'
    run('voc07', features=work / 'features_voc07.npz', work_dir=rerun, **FAST)
    assert sorted(os.listdir(rerun)) == ['svm_voc07.json', 'svm_voc07.md']
    again = json.loads((rerun / 'svm_voc07.json').read_text())
    assert again['results'] == report['results']

    # the released code's checkpoint gives the same features
    released = tmp_path / 'released'
    run('voc07', config, original, data_root=voc_root, work_dir=released,
        **FAST)
    with np.load(released / 'features_voc07.npz') as npz:
        np.testing.assert_allclose(npz['train_feats'], feats['train_feats'],
                                   rtol=1e-5, atol=1e-6)


def write_features(path, dataset, train_feats, train_labels, test_feats,
                   test_labels, train_index=None):
    """A features file as tools/svm_eval.py writes it (None: key left
    out); ``dataset`` may be an array to override it."""
    arrays = dict(
        dataset=np.array(dataset), train_feats=train_feats,
        train_index=(np.arange(len(train_feats)) if train_index is None else
                     train_index), train_labels=train_labels,
        test_feats=test_feats, test_labels=test_labels)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def one_hot_feats(cls: np.ndarray, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.eye(dim)[cls] + 0.05 * rng.standard_normal(
        (len(cls), dim))).astype(np.float32)


def test_features_separable_voc07_is_100(tmp_path):
    train_cls, test_cls = np.repeat(np.arange(C), 3), np.arange(C)
    train_labels = -np.ones((3 * C, C), dtype=np.int8)
    train_labels[np.arange(3 * C), train_cls] = 1
    test_labels = -np.ones((C, C), dtype=np.int8)
    test_labels[np.arange(C), test_cls] = 1
    path = write_features(tmp_path / 'f.npz', 'voc07',
                          one_hot_feats(train_cls, 64, 0), train_labels,
                          one_hot_feats(test_cls, 64, 1), test_labels)
    run('voc07', features=path, work_dir=tmp_path / 'w', shots=[1, 2], runs=3,
        jobs=2)
    report = json.loads((tmp_path / 'w' / 'svm_voc07.json').read_text())
    for entry in report['results'].values():
        assert entry['runs'] == pytest.approx([100.0] * 3)
        assert entry['std'] == pytest.approx(0.0)
    assert (tmp_path / 'w' / 'svm_voc07.md').read_text().splitlines()[2] == \
        '| VOC07 (mAP) | 100.0 ± 0.0 | 100.0 ± 0.0 |'


@pytest.mark.slow
def test_features_separable_places205_is_100_with_cost_sweep(tmp_path):
    # the command line: its flags reach the benchmark
    train_cls, test_cls = np.repeat(np.arange(8),
                                    4), np.repeat(np.arange(8), 2)
    path = write_features(tmp_path / 'f.npz', 'places205',
                          one_hot_feats(train_cls, 16, 0), train_cls,
                          one_hot_feats(test_cls, 16, 1), test_cls)
    command, = run_tools([[
        'svm_eval', '--dataset', 'places205', '--features', path, '--work-dir',
        tmp_path / 'w', '--shots', '1,4', '--runs', '2', '--jobs', '1',
        '--cost-sweep', '--costs', '0.1,1'
    ]])
    assert command.code == 0, command.stderr
    report = json.loads((tmp_path / 'w' / 'svm_places205.json').read_text())
    assert report['metric'] == 'top-1 accuracy'
    assert report['protocol']['cost_grid'] == [0.1, 1.0]
    assert report['results']['1']['costs'] == [0.5, 0.5]  # 1 shot: no CV
    assert set(report['results']['4']['costs']) <= {0.1, 1.0}
    for entry in report['results'].values():
        assert entry['mean'] == pytest.approx(100.0)


@pytest.fixture
def assert_error(capsys, monkeypatch):
    """Run the benchmark behind the tools' error boundary; check its one
    error line holds ``message`` and that none of ``outputs`` was
    written."""

    def check(settings, message, outputs):
        text = call_tool(lambda: run(**settings), None, capsys,
                         monkeypatch).error
        assert message in text
        assert not any(os.path.exists(p) for p in outputs)
        return text

    return check


def test_missing_data_root(tiny_model, tmp_path, assert_error):
    config, ckpt, _ = tiny_model
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='voc07', config=config, checkpoint=ckpt,
             data_root=tmp_path / 'none', work_dir=work),
        'no such data root directory', [work])


def test_empty_dataset(tiny_model, tmp_path, assert_error):
    config, ckpt, _ = tiny_model
    main = tmp_path / 'VOC2007' / 'ImageSets' / 'Main'
    main.mkdir(parents=True)
    for name in VOC07_CLASSES:
        for split in ('trainval', 'test'):
            (main / f'{name}_{split}.txt').write_text('')
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='voc07', config=config, checkpoint=ckpt,
             data_root=tmp_path, work_dir=work),
        'the trainval split lists no images', [work])


def test_missing_image_and_bad_checkpoint(voc_root, tiny_model, tmp_path,
                                          assert_error):
    config, ckpt, _ = tiny_model
    work = tmp_path / 'work'
    voc = dict(dataset='voc07', config=config, data_root=voc_root,
               work_dir=work)
    assert_error(
        dict(voc, checkpoint=ckpt, **FAST,
             cfg_options={'model.backbone.depth': 34}),
        'checkpoint is a ResNet-18 (blocks per stage 2-2-2-2), the '
        'config builds ResNet-34: set model.backbone.depth=18', [work])
    assert_error(
        dict(voc, checkpoint=tmp_path / 'no.pth', **FAST),
        'no such checkpoint file', [work])
    assert_error(
        dict(voc, checkpoint=ckpt, shots=[3]), 'fewer than k=3', [work])


@pytest.mark.parametrize('changes, message', [
    (dict(train_feats=np.zeros((6, 4, 2), np.float32)),
     'train_feats must be a non-empty float N x D array'),
    (dict(test_feats=np.zeros((4, 3), np.float32)),
     'train_feats are 8-d, test_feats 3-d'),
    (dict(test_labels=np.zeros((4, 5), np.int8)),
     'test_labels must be N x 20'),
    (dict(train_labels=None), "missing keys ['train_labels']"),
    (dict(train_index=np.arange(5)), 'train_index must hold one integer'),
])
def test_bad_features_file(tmp_path, assert_error, changes, message):
    arrays = dict(
        train_feats=np.ones((6, 8), np.float32), train_labels=np.ones(
            (6, C), np.int8), test_feats=np.ones((4, 8), np.float32),
        test_labels=np.ones((4, C), np.int8))
    arrays.update(changes)
    path = write_features(tmp_path / 'f.npz', 'voc07', **arrays)
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='voc07', features=path, work_dir=work),
        f'{path}: {message}', [work])


def test_features_file_of_another_dataset(tmp_path, assert_error):
    cls = np.repeat(np.arange(4), 2)
    feats = one_hot_feats(cls, 8, 0)
    path = write_features(tmp_path / 'f.npz', 'places205', feats, cls, feats,
                          cls)
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='voc07', features=path, work_dir=work),
        f"{path}: holds 'places205' features, not 'voc07'", [work])


def test_features_file_without_the_drawn_images(tmp_path, assert_error):
    cls = np.repeat(np.arange(4), 2)
    feats = one_hot_feats(cls, 8, 0)
    path = write_features(tmp_path / 'f.npz', 'places205', feats[1:], cls,
                          feats, cls, train_index=np.arange(1, 8))
    work = tmp_path / 'work'
    places = dict(dataset='places205', work_dir=work)
    assert_error(
        dict(places, features=path, shots=[2]),
        'no features for some training images drawn', [work])
    assert_error(
        dict(places, features=tmp_path / 'missing.npz'),
        'no such features file', [work])
    (tmp_path / 'junk.npz').write_text('not a zip')
    assert_error(
        dict(places, features=tmp_path / 'junk.npz'),
        'not a readable .npz features file', [work])


def test_arguments_required_without_features(tiny_model, tmp_path,
                                             assert_error):
    config, _, _ = tiny_model
    assert_error(
        dict(dataset='voc07', config=config),
        'CKPT is required unless --features is given', [])
    assert_error(
        dict(dataset='places205', features=tmp_path / 'f.npz',
             ignore_difficult=True),
        '--ignore-difficult applies to voc07 only', [])
    assert_error(
        dict(dataset='voc07', features=tmp_path / 'f.npz',
             shard_root=tmp_path), 'error: --shard-root cannot go with '
        '--features', [])


def test_places205_layout_end_to_end(tiny_model, places_root, tmp_path):
    config, ckpt, _ = tiny_model
    work = tmp_path / 'work'
    run('places205', config, ckpt, data_root=places_root, work_dir=work,
        **dict(FAST, shots=[1]))
    with np.load(work / 'features_places205.npz') as npz:
        assert npz['test_feats'].shape == (3, 512)
        np.testing.assert_array_equal(npz['test_labels'], [0, 1, 2])
        assert npz['train_labels'].tolist() == [0, 0, 1, 1, 2, 2]
        assert len(npz['train_index']) == len(npz['train_feats']) >= 3
    report = json.loads((work / 'svm_places205.json').read_text())
    runs = report['results']['1']['runs']
    assert len(runs) == 2  # 3 test images: accuracy in steps of 100 / 3
    for value in runs:
        assert value * 3 / 100 == pytest.approx(round(value * 3 / 100))


@pytest.mark.gpu
def test_features_on_cuda_match_cpu(voc_root, tiny_model, tmp_path):
    # on CUDA the encoder runs in bf16 and channels-last: the features keep
    # their direction (cosine > 0.99 per image) and the same SVM protocol
    config, ckpt, _ = tiny_model
    feats = {}
    for device in ('cpu', 'cuda'):
        work = tmp_path / device
        run('voc07', config, ckpt, data_root=voc_root, work_dir=work,
            **dict(FAST, device=device))
        with np.load(work / 'features_voc07.npz') as npz:
            feats[device] = npz['train_feats'], npz['test_feats']
    for cpu, cuda in zip(feats['cpu'], feats['cuda']):
        assert cuda.shape == cpu.shape and cuda.dtype == np.float32
        cosine = (cpu * cuda).sum(1) / (
            np.linalg.norm(cpu, axis=1) * np.linalg.norm(cuda, axis=1))
        assert cosine.min() > 0.99, cosine


def separable_places(tmp_path, name='f.npz'):
    train_cls, test_cls = np.repeat(np.arange(4),
                                    3), np.repeat(np.arange(4), 2)
    return write_features(tmp_path / name, 'places205',
                          one_hot_feats(train_cls, 8, 0), train_cls,
                          one_hot_feats(test_cls, 8, 1), test_cls)


@pytest.mark.slow
def test_cost_must_be_finite_and_positive(tmp_path):
    # the command line's --cost: one error line naming it, nothing written
    costs = ['nan', 'inf', '0', '-1']
    works = [tmp_path / f'work{i}' for i in range(len(costs))]
    features = separable_places(tmp_path)
    runs = run_tools([[
        'svm_eval', '--dataset', 'places205', '--features', features,
        '--work-dir', work, '--cost', cost
    ] for cost, work in zip(costs, works)])
    for result, work in zip(runs, works):
        assert '--cost must be ' in result.error
        assert not os.path.exists(work)


def test_one_nan_in_cached_features_is_refused(tmp_path, assert_error):
    # one NaN used to move the score silently (an SVM trains on it)
    path = separable_places(tmp_path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays['test_feats'][3, 5] = np.nan
    np.savez(path, **arrays)
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='places205', features=path, work_dir=work, shots=[1]),
        f'{path}: test_feats hold 1 non-finite values (NaN or inf) '
        'in 1 of 8 rows', [work])


def test_non_finite_encoder_features_are_not_cached(voc_root, tiny_model,
                                                    tmp_path, assert_error,
                                                    monkeypatch):
    # features of a model that outputs NaN: refused before they are cached
    config, ckpt, _ = tiny_model
    extract = low_shot.extract_features
    monkeypatch.setattr(low_shot, 'extract_features',
                        lambda *a, **k: np.full_like(extract(*a, **k), np.nan))
    work = tmp_path / 'work'
    assert_error(
        dict(dataset='voc07', config=config, checkpoint=ckpt,
             data_root=voc_root, work_dir=work, **FAST),
        f'features of {ckpt} hold 7680 non-finite values (NaN or '
        'inf) in 15 of 15 rows', [work])


def test_empty_image_is_named_before_encoding(voc_root, tiny_model, tmp_path,
                                              assert_error, monkeypatch):
    config, ckpt, _ = tiny_model
    image = voc_root / 'VOC2007' / 'JPEGImages' / '000012.jpg'
    saved = image.read_bytes()
    image.write_bytes(b'')
    monkeypatch.setattr(low_shot, 'extract_features',
                        lambda *a, **k: pytest.fail('encoded images'))
    work = tmp_path / 'work'
    try:
        assert_error(
            dict(dataset='voc07', config=config, checkpoint=ckpt,
                 data_root=voc_root, work_dir=work, **FAST),
            f'{image}: empty image file (0 bytes) (1 of 15 images)', [work])
    finally:
        image.write_bytes(saved)


def test_undecodable_image_is_named(voc_root, tiny_model, tmp_path,
                                    assert_error):
    config, ckpt, _ = tiny_model
    image = voc_root / 'VOC2007' / 'JPEGImages' / '000013.jpg'
    saved = image.read_bytes()
    image.write_bytes(b'not a jpeg')
    work = tmp_path / 'work'
    try:
        assert_error(
            dict(dataset='voc07', config=config, checkpoint=ckpt,
                 data_root=voc_root, work_dir=work, **FAST),
            f'{image}: cannot decode image', [work / 'svm_voc07.json'])
    finally:
        image.write_bytes(saved)


def test_outputs_never_overwrite_the_features(tmp_path, assert_error):
    # a work dir whose report name is the features file itself
    work = tmp_path / 'work'
    work.mkdir()
    features = work / 'svm_places205.json'
    os.rename(separable_places(tmp_path), features)
    size = os.path.getsize(features)
    assert_error(
        dict(dataset='places205', features=features, work_dir=work),
        f'the output is the input {features}', [])
    assert os.path.getsize(features) == size


def _places_file(tmp_path, train_cls, test_cls, dim=8, name='f.npz'):
    return write_features(tmp_path / name, 'places205',
                          one_hot_feats(np.asarray(train_cls) % dim, dim, 0),
                          np.asarray(train_cls),
                          one_hot_feats(np.asarray(test_cls) % dim, dim, 1),
                          np.asarray(test_cls))


def _voc_file(tmp_path, train_labels, test_labels):
    return write_features(tmp_path / 'f.npz', 'voc07',
                          np.ones((len(train_labels), 8),
                                  np.float32), train_labels,
                          np.ones((len(test_labels), 8), np.float32),
                          test_labels)


def _voc_positives(num):
    """Image i is a positive of class i % C only."""
    labels = -np.ones((num, C), dtype=np.int8)
    labels[np.arange(num), np.arange(num) % C] = 1
    return labels


def _without_test_positive(labels):
    labels = labels.copy()
    labels[:, 7] = -1
    return labels


def _with_value(labels, value):
    labels = labels.copy()
    labels[2, 3] = value
    return labels


TRAIN4, TEST4 = np.repeat(np.arange(4), 3), np.repeat(np.arange(4), 2)


def _zero_dim_file(tmp_path):
    return write_features(tmp_path / 'f.npz', 'places205',
                          np.ones((12, 0), np.float32), TRAIN4,
                          np.ones((8, 0), np.float32), TEST4)


# id: (features file in tmp_path, message after its path)
LABEL_CASES = {
    'test_classes_unseen':
    (lambda t: _places_file(t, TRAIN4, TEST4 + 10),
     'test_labels hold classes 10, 11, 12, 13 that train_labels lack; '
     'every test class must occur in training (no SVM scores it)'),
    'one_test_class_unseen':
    (lambda t: _places_file(t, TRAIN4, np.r_[TEST4, 9]),
     'test_labels hold classes 9 that train_labels lack; every test class '
     'must occur in training (no SVM scores it)'),
    'negative_train': (lambda t: _places_file(t, TRAIN4 - 1, TEST4),
                       'train_labels hold negative class indices -1; class '
                       'indices must be >= 0'),
    'negative_test': (lambda t: _places_file(t, TRAIN4, TEST4 - 2),
                      'test_labels hold negative class indices -2, -1; class '
                      'indices must be >= 0'),
    'one_class':
    (lambda t: _places_file(t, np.zeros(6, int), np.zeros(2, int)),
     'train_labels hold 1 class; the benchmark needs at least 2'),
    'zero_dim': (_zero_dim_file, 'train_feats must be a non-empty float N x '
                 'D array (N, D >= 1), got float32 (12, 0)'),
    'voc_no_test_positive':
    (lambda t: _voc_file(t, _voc_positives(2 * C),
                         _without_test_positive(_voc_positives(C))),
     'test_labels have no positive (1) of class 7; every class needs one '
     'in both splits'),
    'voc_bad_value':
    (lambda t: _voc_file(t, _with_value(_voc_positives(2 * C), 2),
                         _voc_positives(C)),
     'train_labels hold 2; VOC07 labels are 1, 0 (difficult) or -1'),
}


@pytest.mark.parametrize('case', sorted(LABEL_CASES))
def test_labels_no_svm_can_score_are_refused(tmp_path, capsys, monkeypatch,
                                             case):
    # test classes absent from training used to score 0.0 ± 0.0 with exit
    # 0; zero-dimensional features were a ZeroDivisionError traceback. Now
    # one line naming the file and key, before any SVM is fitted.
    make, message = LABEL_CASES[case]
    path = make(tmp_path)
    dataset = str(np.load(path)['dataset'])
    monkeypatch.setattr(low_shot, 'evaluate_low_shot',
                        lambda *a, **k: pytest.fail('fitted SVMs'))
    work = tmp_path / 'work'
    result = call_tool(
        lambda: run(dataset, features=path, work_dir=work, shots=[1], runs=1,
                    jobs=1), None, capsys, monkeypatch)
    assert result.error == f'error: {path}: {message}'
    assert not os.path.exists(work)


def test_data_root_test_class_missing_from_training(tiny_model, tmp_path,
                                                    capsys, monkeypatch):
    # the same check on the lists of a data root, before any image is read
    config, ckpt, _ = tiny_model
    lists = tmp_path / 'places' / 'trainvalsplit_places205'
    lists.mkdir(parents=True)
    (lists / 'train_places205.csv').write_text('a/x.jpg 0\nb/y.jpg 1\n')
    (lists / 'val_places205.csv').write_text('a/z.jpg 0\nc/w.jpg 2\n')
    work = tmp_path / 'work'
    result = call_tool(
        lambda: run('places205', config, ckpt, data_root=tmp_path / 'places',
                    work_dir=work, **dict(FAST, shots=[1])), None, capsys,
        monkeypatch)
    assert result.error == (
        f'error: {tmp_path / "places"}: val labels hold classes 2 that train '
        'labels lack; every test class must occur in training (no SVM scores '
        'it)')
    assert not os.path.exists(work)


@pytest.mark.slow
def test_contradicting_flags_are_refused(tiny_model, voc_root, tmp_path):
    # the command line: --features used to ignore CONFIG, CKPT and
    # --data-root (yet record them in the report), and --crop larger than
    # --resize was clipped while the features' meta recorded the crop
    config, ckpt, _ = tiny_model
    features = separable_places(tmp_path)
    works = [tmp_path / f'work{i}' for i in range(3)]
    common = ['--dataset', 'places205', '--shots', '1', '--runs', '1']
    both, options, crop = run_tools([
        [
            'svm_eval', config, ckpt, *common, '--features', features,
            '--data-root', tmp_path / 'none', '--work-dir', works[0]
        ],
        [
            'svm_eval', *common, '--features', features, '--cfg-options',
            'model.backbone.depth=34', '--work-dir', works[1]
        ],
        [
            'svm_eval', config, ckpt, *common, '--data-root', voc_root,
            '--resize', '32', '--crop', '64', '--work-dir', works[2]
        ],
    ])
    assert both.error == (
        'error: CONFIG, CKPT, --data-root cannot go with --features (the SVM '
        'stage runs on the cached features alone); leave out one or the '
        'other')
    assert options.error == (
        'error: --cfg-options cannot go with --features (the SVM stage runs '
        'on the cached features alone); leave out one or the other')
    assert crop.error == (
        'error: --crop 64 is larger than --resize 32 (the short side it is '
        'cut from); use --crop <= --resize')
    assert not any(os.path.exists(w) for w in works)


# ----------------------------------------------------------------------
# the images from shards: lists_to_shards.py voc07|places205, then
# svm_eval --shard-root
SVM_EVAL = tool_module('svm_eval')
CONVERTER = tool_module('dataset_converters/lists_to_shards')


def convert_splits(capsys, monkeypatch, dataset, data_root, out):
    """The converter's commands for the benchmark's two splits, 4 records
    a shard, into ``out``."""
    _, train_split, test_split, _ = low_shot.SPLITS[dataset]
    for split in (train_split, test_split):
        result = call_tool(CONVERTER, [
            dataset, data_root, '--out', out, '--split', split,
            '--shard-records', 4, '--workers', 1
        ], capsys, monkeypatch)
        assert result.code == 0, result.stderr
    return out


def svm_eval_argv(dataset, tiny_model, data_root, work, *extra):
    """svm_eval's command line as a user types it, at the tests' size."""
    config, ckpt, _ = tiny_model
    return [
        config, ckpt, '--dataset', dataset, '--data-root', data_root,
        '--work-dir', work, '--resize', 40, '--crop', 32, '--batch-size', 4,
        '--shots', '1,2', '--runs', 2, '--jobs', 1, '--device', 'cpu', *extra
    ]


@pytest.fixture
def roots(voc_root, places_root):
    return dict(voc07=voc_root, places205=places_root)


@pytest.mark.parametrize('dataset', ['voc07', 'places205'])
def test_benchmark_shards_hold_the_readers_images(dataset, roots, tmp_path,
                                                  capsys, monkeypatch):
    # record i of a split is the reader's image i, its bytes as they were;
    # its label is the Places205 class, or -1 (no single class) for VOC07
    data_root = str(roots[dataset])
    out = convert_splits(capsys, monkeypatch, dataset, data_root,
                         tmp_path / 'shards')
    reader, train_split, test_split, columns = low_shot.SPLITS[dataset]
    folder = image_dir(dataset, data_root)
    for split in (train_split, test_split):
        paths, labels = reader(data_root, split)
        index = read_index(str(out / f'{split}-index.json'))
        records = {r.key: r for r in shard_records(index)}
        assert sorted(records) == [
            f'{split}-{i:09d}' for i in range(len(paths))
        ]
        for i, path in enumerate(paths):
            record = records[f'{split}-{i:09d}']
            assert osp.join(folder, record.meta['path']) == path
            with open(path, 'rb') as f:
                assert record.image == f.read()
            assert record.label == (-1 if columns else labels[i])
        lists = osp.join('VOC2007', 'ImageSets', 'Main',
                         f'{{class}}_{split}.txt') if columns else osp.join(
                             'trainvalsplit_places205',
                             f'{split}_places205.csv')
        assert index.lists == [
            dict(name=split, file=lists, records=len(paths))
        ]
        assert (index.num_classes,
                index.classes) == ((C, list(VOC07_CLASSES)) if columns else
                                   (205, []))
    wrong = call_tool(CONVERTER, [
        dataset, data_root, '--out', tmp_path / 'other', '--split',
        'test' if dataset == 'places205' else 'val', '--num-classes', 5
    ], capsys, monkeypatch)
    assert wrong.error == ('error: --split test: the places205 splits are '
                           'train, val' if dataset == 'places205' else
                           'error: --num-classes 5: VOC2007 has 20 classes')


@pytest.mark.parametrize('dataset', ['voc07', 'places205'])
def test_features_from_shards_equal_features_from_files(
        dataset, roots, tiny_model, tmp_path, capsys, monkeypatch):
    # the same model and pipeline give the same bytes of features, whether
    # the images are files or shard records (read in 2 worker processes)
    data_root = roots[dataset]
    shards = convert_splits(capsys, monkeypatch, dataset, data_root,
                            tmp_path / 'shards')
    outputs, results = {}, {}
    for name, extra in (('files', ['--num-workers', 0]),
                        ('shards',
                         ['--num-workers', 2, '--shard-root', shards])):
        work = tmp_path / name
        result = call_tool(
            SVM_EVAL,
            svm_eval_argv(dataset, tiny_model, data_root, work, *extra),
            capsys, monkeypatch)
        assert result.code == 0, result.stderr
        with np.load(work / f'features_{dataset}.npz') as npz:
            outputs[name] = {k: npz[k] for k in npz.files}
        results[name] = result.value['results']
    files, from_shards = outputs['files'], outputs['shards']
    assert sorted(files) == sorted(from_shards)
    for key in files:
        if key != 'meta':
            np.testing.assert_array_equal(from_shards[key], files[key])
    assert from_shards['test_feats'].shape[0] == len(files['test_labels'])
    assert results['shards'] == results['files']
    shard_meta, file_meta = (
        json.loads(str(o['meta'])) for o in (from_shards, files))
    assert shard_meta == dict(file_meta, shard_root=str(shards))


def test_images_missing_from_the_shards_are_named_first(
        voc_root, tiny_model, tmp_path, capsys, monkeypatch):
    # two images the converter found undecodable (not written), one of a
    # split and one of the other; then a shard root without the test
    # split, and an index that names a command: each one line, before the
    # model is built, nothing written
    jpegs = voc_root / 'VOC2007' / 'JPEGImages'
    bad = [jpegs / '000004.jpg', jpegs / '000012.jpg']
    saved = [image.read_bytes() for image in bad]
    try:
        for image in bad:
            image.write_bytes(b'not a jpeg')
        shards = convert_splits(capsys, monkeypatch, 'voc07', voc_root,
                                tmp_path / 'shards')
    finally:
        for image, data in zip(bad, saved):
            image.write_bytes(data)
    only_trainval = tmp_path / 'only_trainval'
    only_trainval.mkdir()
    for name in os.listdir(shards):
        if name.startswith('trainval-'):
            os.symlink(shards / name, only_trainval / name)
    command = tmp_path / 'commands'
    command.mkdir()
    index = json.loads((shards / 'test-index.json').read_text())
    index['shards'][0]['name'] = f'pipe:touch {tmp_path / "ran"}'
    (command / 'test-index.json').write_text(json.dumps(index))
    os.symlink(shards / 'trainval-index.json', command / 'trainval-index.json')
    monkeypatch.setattr(low_shot, 'build_feature_model',
                        lambda *a, **k: pytest.fail('built the model'))
    work = tmp_path / 'work'
    for root, message in (
        (shards, f'error: {bad[0]}: no shard record holds it (2 of 15 images '
         f'missing from the shards at {shards}); convert the trainval and '
         f'test splits of {voc_root} with lists_to_shards.py voc07 '
         '(undecodable images are named in the index, not written)'),
        (only_trainval, f'error: {only_trainval / "test-index.json"}: shard '
         'index not found (written by '
         'tools/dataset_converters/lists_to_shards.py)'),
        (command, f'error: {command / "test-index.json"}: shards[0]: shard '
         f"name 'pipe:touch {tmp_path / 'ran'}' is not a file name relative "
         'to the index (commands such as pipe:... and URLs are taken only '
         'from the config: ShardDataset shard_url)'),
    ):
        result = call_tool(
            SVM_EVAL,
            svm_eval_argv('voc07', tiny_model, voc_root, work, '--shard-root',
                          root), capsys, monkeypatch)
        assert result.error == message
        assert not os.path.exists(work)
    assert not os.path.exists(tmp_path / 'ran')
