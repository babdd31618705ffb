"""tools/noise_cleaning.py's work (mopro.apis.clean_noisy_dataset) and
mopro.evaluation.noise_cleaning."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS, MODELS

import mopro.apis.noise_cleaning as cleaning_api
from mopro.evaluation.noise_cleaning import (UNREADABLE_LABEL, cleaned_list,
                                             summarize)
from helpers import ROOT
from helpers.commands import call_tool
from helpers.configs import tiny_mopro_options, tool_config
from helpers.data import make_webvision

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
K = 4


def _options(data_root, work_dir, **extra):
    opts = tiny_mopro_options(data_root, work_dir, K)
    opts.update(extra)
    return opts


def save_checkpoint(path, data_root, bias):
    """A tiny MoPro checkpoint whose classifier ignores the image: logits
    are ``bias`` for every image."""
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(tiny_mopro_options(data_root, '/tmp/unused', K))
    model = MODELS.build(cfg.model)
    model.classifier.weight.data.zero_()
    model.classifier.bias.data.copy_(torch.tensor(bias))
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('clean')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, per_class=8)
    ckpt = str(tmp / 'mopro.pth')
    save_checkpoint(ckpt, root, [0.0, 1.5, 0.0, 0.0])
    return root, ckpt, tmp


# the tool on each device: on CUDA with its bf16, channels-last batches
DEVICES = pytest.mark.parametrize(
    'device', ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)])


@pytest.fixture
def run(capsys, monkeypatch):
    """clean_noisy_dataset behind the tools' error boundary, on CONFIG with
    ``options``: (its result, '') or (None, its one ``error: ...``
    line)."""

    def call(ckpt, out, options, work_dir=None, **kwargs):

        def clean():
            cfg = tool_config(CONFIG, options, work_dir=work_dir)
            return cleaning_api.clean_noisy_dataset(cfg, ckpt, out, **kwargs)

        proc = call_tool(clean, None, capsys, monkeypatch)
        return (proc.value, '') if proc.code == 0 else (None, proc.error)

    return call


@DEVICES
def test_ood_rule(setup, device, run):
    # alpha=1: soft label = softmax([0, 1.5, 0, 0]) = (.134, .599, .134, .134)
    # threshold .99: nobody is relabelled; class 1 keeps its label
    # (.599 > 1/K), the others are OOD (.134 < 1/K = .25)
    root, ckpt, tmp = setup
    out = str(tmp / device / 'ood' / 'pseudo_label.json')
    work = str(tmp / device / 'ood_work')
    summary, err = run(
        ckpt, out,
        _options(root, work, **{
            'model.alpha': 1.0,
            'model.threshold': 0.99
        }), work_dir=work, num_workers=0, batch_size=5, device=device)
    assert err == ''
    with open(out) as f:
        cleaned = json.load(f)
    assert sorted(set(cleaned.values())) == [1]
    assert len(cleaned) == 8
    assert all('/q0001/' in p for p in cleaned)
    assert summary['total'] == dict(images=32, kept=8, relabelled=0, ood=24,
                                    unreadable=0, cleaned=8)
    assert summary['per_class']['ood'] == [8, 0, 8, 8]
    with open(osp.join(work, 'noise_cleaning_summary.json')) as f:
        assert json.load(f)['total']['ood'] == 24
    for name in ('ood_samples', 'relabelled_samples', 'class_changes'):
        assert osp.getsize(osp.join(work, f'{name}.png')) > 1000
    # the cleaned list is a training set for cRT
    ds = DATASETS.build(
        dict(type='CleanedWebVision', data_root=root, pseudo_label_file=out,
             num_classes=K))
    assert len(ds) == 8 and set(ds.get_gt_labels().tolist()) == {1}
    assert osp.isfile(ds.get_data_info(0)['img_path'])


@DEVICES
def test_relabel_rule_and_unreadable(setup, tmp_path, device, run):
    # threshold .5 < .599: every readable image is relabelled to class 1;
    # an undecodable image is left out and counted
    root, ckpt, tmp = setup
    bad = osp.join(root, 'google', 'q0002', '000.jpg')
    with open(bad, 'rb') as f:
        saved = f.read()
    with open(bad, 'wb') as f:
        f.write(b'not a jpeg')
    out = str(tmp_path / 'pseudo_label.json')
    work = str(tmp_path / 'work')
    try:
        summary, err = run(
            ckpt,
            out,
            _options(
                root,
                work,
                **{
                    'model.alpha': 1.0,
                    'model.threshold': 0.5,
                    # 1 of 32 is above the default limit (1 %)
                    'train_dataloader.dataset.max_bad_fraction': 0.05
                }),
            work_dir=work,
            num_workers=0,
            device=device)
    finally:
        with open(bad, 'wb') as f:
            f.write(saved)
    assert err == ''
    with open(out) as f:
        cleaned = json.load(f)
    assert len(cleaned) == 31 and set(cleaned.values()) == {1}
    assert 'google/q0002/000.jpg' not in cleaned
    assert summary['total'] == dict(images=32, kept=8, relabelled=23, ood=0,
                                    unreadable=1, cleaned=31)
    assert summary['per_class']['after'] == [0, 31, 0, 0]
    assert summary['per_class']['relabelled_into'] == [0, 23, 0, 0]


def test_more_unreadable_images_than_training_tolerates(setup, tmp_path, run):
    # 2 of 32 undecodable: training stops above max_bad_fraction (1 %);
    # cleaning used to write a list without them and exit 0
    root, ckpt, _ = setup
    bad = [osp.join(root, 'flickr', 'q0001', f'00{i}.jpg') for i in (0, 1)]
    saved = {}
    for path in bad:
        with open(path, 'rb') as f:
            saved[path] = f.read()
        with open(path, 'wb') as f:
            f.write(b'not a jpeg')
    out = str(tmp_path / 'pseudo_label.json')
    work = str(tmp_path / 'work')
    try:
        _, err = run(ckpt, out, _options(root, work), work_dir=work,
                     num_workers=0, device='cpu')
    finally:
        for path, data in saved.items():
            with open(path, 'wb') as f:
                f.write(data)
    assert err == (
        f'error: WebVision train at {root}: 2 of 32 images could not be '
        'decoded, more than max_bad_fraction=0.01; check the data or raise '
        'train_dataloader.dataset.max_bad_fraction')
    assert not osp.exists(out) and not osp.exists(work)


def test_errors_leave_no_output(setup, tmp_path, run):
    root, ckpt, _ = setup
    out = str(tmp_path / 'pseudo_label.json')
    work = str(tmp_path / 'work')
    opts = _options(root, work)
    _, err = run(str(tmp_path / 'missing.pth'), out, opts, num_workers=0)
    assert err.startswith('error: ') and 'missing.pth' in err
    _, err = run(ckpt, out, dict(opts, **{'model.num_classes': 5}),
                 num_workers=0)
    assert err.startswith('error: ') and 'checkpoint has 4 classes' in err
    assert '\n' not in err
    assert not osp.exists(out)


def test_summary_and_list_helpers():
    original = np.array([0, 0, 1, 2, 2])
    pseudo = np.array([0, 1, -1, 2, UNREADABLE_LABEL])
    s = summarize(original, pseudo, 3)
    assert s['total'] == dict(images=5, kept=2, relabelled=1, ood=1,
                              unreadable=1, cleaned=3)
    assert s['per_class']['before'] == [2, 1, 2]
    assert s['per_class']['after'] == [1, 1, 1]
    assert s['per_class']['relabelled_away'] == [1, 0, 0]
    keys = [f'img{i}.jpg' for i in range(5)]
    assert cleaned_list(keys, pseudo) == {
        'img0.jpg': 0,
        'img1.jpg': 1,
        'img3.jpg': 2
    }


@pytest.fixture
def no_pass(monkeypatch):
    """Fail the test if the cleaning starts its pass over the images."""
    monkeypatch.setattr(
        cleaning_api, 'clean_dataset',
        lambda *a, **k: pytest.fail('the pass ran before the error'))


def test_unwritable_outputs_fail_before_the_pass(setup, tmp_path, run,
                                                 no_pass):
    root, ckpt, _ = setup
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    work = tmp_path / 'work'
    out = str(blocker / 'pseudo_label.json')
    _, err = run(ckpt, out, _options(root, str(work)), work_dir=str(work),
                 num_workers=0)
    assert err == (f'error: {out}: cannot write the --out file: {blocker} '
                   'is a file, not a folder')
    # the work dir is a file: no cleaned list is written without its summary
    out = str(tmp_path / 'pseudo_label.json')
    _, err = run(ckpt, out, _options(root, str(blocker)),
                 work_dir=str(blocker), num_workers=0)
    assert err == f'error: {blocker}: the work dir is a file, not a folder'
    assert not osp.exists(out) and not work.exists()


def test_out_is_never_the_checkpoint(setup, tmp_path, run, no_pass):
    root, ckpt, _ = setup
    size = osp.getsize(ckpt)
    work = str(tmp_path / 'work')
    _, err = run(ckpt, ckpt, _options(root, work), num_workers=0)
    assert err == (f'error: {ckpt}: the --out file is the input {ckpt}; '
                   'write it to another path')
    assert osp.getsize(ckpt) == size


@pytest.mark.parametrize('option, message', [
    (('model.threshold', 'high'),
     "model.threshold must be a number in [0, 1], got 'high'"),
    (('model.threshold', 5), 'model.threshold must be in [0, 1], got 5'),
    (('model.alpha', -3), 'model.alpha must be in [0, 1], got -3'),
])
def test_bad_model_values_fail_before_the_pass(setup, tmp_path, run, no_pass,
                                               option, message):
    root, ckpt, _ = setup
    out = str(tmp_path / 'pseudo_label.json')
    key, value = option
    _, err = run(ckpt, out, _options(root, str(tmp_path / 'w'),
                                     **{key: value}), num_workers=0)
    assert err == f'error: {message}'
    assert not osp.exists(out)


@pytest.mark.parametrize(
    'device, local_rank, expected',
    [
        ('cpu', '1', 'cpu'),
        ('cuda', '1', 'cuda:1'),  # the rank's GPU under a launcher
        ('cuda:0', '1', 'cuda:0'),  # the GPU the user named
    ])
def test_cleaning_device(monkeypatch, device, local_rank, expected):
    current = []
    monkeypatch.setenv('LOCAL_RANK', local_rank)
    monkeypatch.setattr(torch.cuda, 'set_device', current.append)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: current[-1])
    assert str(cleaning_api._cleaning_device(device)) == expected
