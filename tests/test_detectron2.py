"""Detectron2 transfer (paper Section 5.1, Table 4) on CPU: the converted
encoder loads into Mask R-CNN R50-FPN, its bottom-up backbone computes what
the MoPro encoder computes, tools/train_d2.py trains and evaluates on a tiny
COCO-format dataset, the configs follow the protocol, and
tools/misc/install_detectron2.py is idempotent and installs only detectron2/."""
import io
import json
import math
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

import mopro  # noqa: F401  (d2_compat before detectron2)

pytest.importorskip('detectron2',
                    reason='run tools/misc/install_detectron2.py first')
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from conftest import load_tool  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from mopro.transfer.d2_convert import (convert_checkpoint,  # noqa: E402
                                       save_detectron2)
from mopro.utils.cli import ConfigError, UserError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs', 'detectron2')
BASE = os.path.join(CONFIGS, 'Base-RCNN-FPN-BN.yaml')


train_d2 = load_tool('train_d2')
installer = load_tool('misc/install_detectron2')


@pytest.fixture(scope='module')
def encoder():
    """mmpretrain ResNet-50 with random weights and BN statistics."""
    torch.manual_seed(0)
    model = MODELS.build(dict(type='ResNet', depth=50))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    model.eval()  # mmpretrain's ResNet.train() returns None
    return model


@pytest.fixture(scope='module')
def converted(encoder, tmp_path_factory):
    """The encoder in a MoPro checkpoint, converted to a Detectron2 .pkl."""
    root = tmp_path_factory.mktemp('convert')
    state = {'backbone.' + k: v for k, v in encoder.state_dict().items()}
    state.update({'momentum_backbone.' + k: v.clone()
                  for k, v in encoder.state_dict().items()})
    state.update({'classifier.weight': torch.zeros(2, 2048),
                  'queue': torch.zeros(8, 4),
                  'prototypes': torch.zeros(2, 8)})
    src = root / 'mopro.pth'
    torch.save({'state_dict': state, 'meta': {}}, src)
    out = str(root / 'mopro.pkl')
    save_detectron2(convert_checkpoint(str(src))[0], out)
    return out


def cpu_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(BASE)
    cfg.MODEL.DEVICE = 'cpu'
    assert train_d2.sync_bn_to_bn(cfg) == ['MODEL.FPN.NORM',
                                           'MODEL.RESNETS.NORM']
    return cfg


@pytest.fixture(scope='module')
def d2_model():
    return build_model(cpu_cfg()).eval()


def test_checkpointer_loads_every_backbone_weight(d2_model, converted):
    checkpointer = DetectionCheckpointer(d2_model)
    incompatible = checkpointer._load_model(checkpointer._load_file(converted))
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    # only the parts that are not pretrained are missing
    assert incompatible.missing_keys
    heads = ('backbone.fpn_', 'proposal_generator.', 'roi_heads.')
    assert [k for k in incompatible.missing_keys
            if not k.startswith(heads)] == []
    with open(converted, 'rb') as f:
        weights = pickle.load(f)['model']
    bottom_up = d2_model.backbone.bottom_up.state_dict()
    assert sorted(k for k in bottom_up if k not in weights) == sorted(
        k for k in bottom_up if k.endswith('num_batches_tracked'))
    for name, value in weights.items():
        assert torch.equal(bottom_up[name], torch.from_numpy(value)), name


def test_backbone_output_equals_encoder(d2_model, encoder, converted):
    DetectionCheckpointer(d2_model).load(converted)
    # the same RGB, ImageNet-normalised tensor goes into both backbones
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = encoder(x)[-1]
        theirs = d2_model.backbone.bottom_up(x)['res5']
    assert theirs.shape == ours.shape == (2, 2048, 3, 4)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def write_tiny_coco(root):
    """4 images of 128 px with a red box (category 1) and a green triangle
    (category 2) each, polygon annotations."""
    rng = np.random.default_rng(0)
    os.makedirs(root / 'images')
    images, annotations = [], []
    for i in range(4):
        img = Image.fromarray(
            rng.integers(0, 60, (128, 128, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        x, y = (int(v) for v in rng.integers(5, 40, 2))
        box = [x, y, x + 50, y, x + 50, y + 40, x, y + 40]
        x, y = (int(v) for v in rng.integers(65, 85, 2))
        triangle = [x, y, x + 30, y + 5, x + 15, y + 40]
        draw.polygon(box, fill=(220, 40, 40))
        draw.polygon(triangle, fill=(40, 220, 40))
        img.save(root / 'images' / f'{i}.png')
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=128,
                           height=128))
        for category, polygon in ((1, box), (2, triangle)):
            xs, ys = polygon[0::2], polygon[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1,
                category_id=category, segmentation=[polygon], bbox=bbox,
                area=bbox[2] * bbox[3] / category, iscrowd=0))
    with open(root / 'annotations.json', 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=1, name='box'),
                                   dict(id=2, name='triangle')]), f)
    return str(root / 'annotations.json'), str(root / 'images')


# small inputs, few proposals and iterations: a CPU smoke run of the protocol
TINY_OPTS = [
    'DATASETS.TRAIN', '("tiny_coco",)', 'DATASETS.TEST', '("tiny_coco",)',
    'MODEL.ROI_HEADS.NUM_CLASSES', '2',
    'INPUT.MIN_SIZE_TRAIN', '(96,)', 'INPUT.MAX_SIZE_TRAIN', '128',
    'INPUT.MIN_SIZE_TEST', '96', 'INPUT.MAX_SIZE_TEST', '128',
    'SOLVER.IMS_PER_BATCH', '2', 'SOLVER.MAX_ITER', '2', 'SOLVER.STEPS',
    '()', 'SOLVER.BASE_LR', '0.001', 'SOLVER.WARMUP_ITERS', '0',
    'MODEL.RPN.PRE_NMS_TOPK_TRAIN', '100',
    'MODEL.RPN.POST_NMS_TOPK_TRAIN', '50',
    'MODEL.RPN.PRE_NMS_TOPK_TEST', '100',
    'MODEL.RPN.POST_NMS_TOPK_TEST', '50',
    'MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE', '32',
    'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0',
    'DATALOADER.NUM_WORKERS', '0', 'TEST.PRECISE_BN.NUM_ITER', '1',
    'TEST.EVAL_PERIOD', '0', 'SEED', '0'
]


@pytest.mark.parametrize('num_gpus', [
    0, pytest.param(1, marks=pytest.mark.gpu)])
def test_train_and_evaluate_tiny_coco(tmp_path, converted, num_gpus):
    # on CPU with BN; on one GPU with the protocol's SyncBN (one process:
    # torch's SyncBatchNorm then normalises with the local batch)
    json_file, image_dir = write_tiny_coco(tmp_path / 'data')
    out = tmp_path / 'out'
    argv = ['--config-file', os.path.join(CONFIGS, 'coco_R_50_FPN_1x.yaml'),
            '--num-gpus', str(num_gpus), '--register', 'tiny_coco',
            json_file, image_dir]
    args = train_d2.parse_args(argv + TINY_OPTS + [
        'MODEL.WEIGHTS', converted, 'OUTPUT_DIR', str(out)])
    cfg = train_d2.setup(args)
    assert cfg.MODEL.DEVICE == ('cuda' if num_gpus else 'cpu')
    assert cfg.MODEL.RESNETS.NORM == ('SyncBN' if num_gpus else 'BN')
    results = train_d2.main(args)
    assert set(results) == {'bbox', 'segm'}
    for task in ('bbox', 'segm'):
        assert math.isfinite(results[task]['AP']), results
        assert 0 <= results[task]['AP'] <= 100
    assert (out / 'model_final.pth').is_file()
    assert (out / 'inference' / 'tiny_coco' /
            'coco_instances_results.json').is_file()
    # --eval-only on the trained model reproduces the final evaluation
    again = train_d2.main(train_d2.parse_args(
        argv + ['--eval-only'] + TINY_OPTS + [
            'MODEL.WEIGHTS', str(out / 'model_final.pth'), 'OUTPUT_DIR',
            str(tmp_path / 'eval')]))
    for task in ('bbox', 'segm'):
        assert again[task]['AP'] == pytest.approx(results[task]['AP'],
                                                  abs=1e-6)


def setup_cfg(tmp_path, *extra, num_gpus=0):
    args = train_d2.parse_args([
        '--config-file', os.path.join(CONFIGS, 'coco_R_50_FPN_1x.yaml'),
        '--num-gpus', str(num_gpus), 'OUTPUT_DIR', str(tmp_path), *extra])
    return train_d2.setup(args)


def test_setup_uses_bn_only_on_cpu(tmp_path, converted):
    cfg = setup_cfg(tmp_path, 'MODEL.WEIGHTS', converted)
    assert cfg.MODEL.DEVICE == 'cpu'
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM) == ('BN', 'BN')
    cfg = setup_cfg(tmp_path, 'MODEL.WEIGHTS', converted, num_gpus=1)
    assert cfg.MODEL.DEVICE == 'cuda'
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM) == ('SyncBN',
                                                            'SyncBN')


def test_setup_requires_weights(tmp_path):
    with pytest.raises(ConfigError, match='MODEL.WEIGHTS is not set'):
        setup_cfg(tmp_path)
    with pytest.raises(FileNotFoundError, match='x.pkl: MODEL.WEIGHTS: no '
                       'such file'):
        setup_cfg(tmp_path, 'MODEL.WEIGHTS', str(tmp_path / 'x.pkl'))


def test_setup_refuses_weights_of_another_depth(tmp_path):
    # a ResNet-18 conversion into the R-50 config: Detectron2 would load it
    # with shape warnings and train a mostly random backbone
    r18 = MODELS.build(dict(type='ResNet', depth=18)).state_dict()
    src = tmp_path / 'r18.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in r18.items()},
                'meta': {}}, src)
    out = str(tmp_path / 'r18.pkl')
    save_detectron2(convert_checkpoint(str(src))[0], out)
    with pytest.raises(ConfigError) as err:
        setup_cfg(tmp_path / 'out', 'MODEL.WEIGHTS', out)
    assert str(err.value) == (
        f'{out}: MODEL.WEIGHTS is a ResNet-18 (res2.0.conv3 absent, blocks '
        'per stage 2-2-2-2), the config builds ResNet-50 (MODEL.RESNETS.DEPTH'
        ' 50): convert a ResNet-50 checkpoint or set MODEL.RESNETS.DEPTH')
    assert not (tmp_path / 'out').exists()


def test_setup_refuses_non_finite_weights(tmp_path, converted):
    with open(converted, 'rb') as f:
        obj = pickle.load(f)
    obj['model']['res4.2.conv1.weight'] = np.full_like(
        obj['model']['res4.2.conv1.weight'], np.nan)
    bad = str(tmp_path / 'nan.pkl')
    with open(bad, 'wb') as f:
        pickle.dump(obj, f)
    with pytest.raises(UserError, match=r'res4.2.conv1.weight holds 262144 '
                       r'non-finite values'):
        setup_cfg(tmp_path, 'MODEL.WEIGHTS', bad)


def test_register_rejects_missing_paths(tmp_path):
    with pytest.raises(SystemExit):
        train_d2.parse_args(['--config-file', BASE, '--register', 'x',
                             str(tmp_path / 'no.json'), str(tmp_path)])


def flat(cfg, prefix=''):
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flat(value, f'{prefix}{key}.'))
        else:
            out[prefix + key] = value
    return out


def load_cfg(name):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    return cfg


def test_configs_follow_the_protocol():
    base = load_cfg('Base-RCNN-FPN-BN.yaml')
    assert base.MODEL.META_ARCHITECTURE == 'GeneralizedRCNN'
    assert base.MODEL.MASK_ON
    assert base.MODEL.BACKBONE.NAME == 'build_resnet_fpn_backbone'
    assert base.MODEL.BACKBONE.FREEZE_AT == 0
    assert base.MODEL.RESNETS.DEPTH == 50
    assert base.MODEL.RESNETS.NORM == base.MODEL.FPN.NORM == 'SyncBN'
    assert base.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert base.MODEL.PIXEL_MEAN == [123.675, 116.280, 103.530]
    assert base.MODEL.PIXEL_STD == [58.395, 57.120, 57.375]
    assert base.INPUT.FORMAT == 'RGB'
    assert base.INPUT.MIN_SIZE_TRAIN == (640, 672, 704, 736, 768, 800)
    assert base.INPUT.MIN_SIZE_TEST == 800
    assert base.TEST.PRECISE_BN.ENABLED
    assert base.SOLVER.IMS_PER_BATCH == 16
    assert base.SOLVER.BASE_LR == 0.02
    assert base.DATASETS.TRAIN == ('coco_2017_train', )
    assert base.DATASETS.TEST == ('coco_2017_val', )
    schedules = {'coco_R_50_FPN_1x.yaml': ((60000, 80000), 90000),
                 'coco_R_50_FPN_2x.yaml': ((120000, 160000), 180000)}
    for name, (steps, max_iter) in schedules.items():
        cfg = load_cfg(name)
        assert (cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER) == (steps, max_iter)
        differ = {k for k, v in flat(cfg).items() if flat(base)[k] != v}
        assert differ == {'SOLVER.STEPS', 'SOLVER.MAX_ITER', 'OUTPUT_DIR'}


def test_installer_is_quick_when_installed():
    result = subprocess.run([sys.executable, 'tools/misc/install_detectron2.py'],
                            cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'already installed: detectron2 ' in result.stdout
    assert 'installing' not in result.stdout


def fake_sdist(directory):
    """A stand-in for the pb1-detectron2 sdist: detectron2/ plus files that
    must not be installed."""
    path = os.path.join(directory, 'pb1-detectron2-0.6.tar.gz')
    files = {
        'pb1-detectron2-0.6/setup.py': 'import torch\n',
        'pb1-detectron2-0.6/detectron2/__init__.py': '__version__ = "0.6"\n',
        'pb1-detectron2-0.6/detectron2/layers/nms.py': 'X = 1\n',
        'pb1-detectron2-0.6/tools/train_net.py': '',
        'pb1-detectron2-0.6/projects/PointRend/x.py': '',
    }
    with tarfile.open(path, 'w:gz') as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_installer_extracts_only_the_package(tmp_path, monkeypatch):
    purelib = tmp_path / 'site-packages'
    purelib.mkdir()
    calls = []

    def fake_pip(args):
        calls.append(args)
        fake_sdist(args[args.index('-d') + 1])

    monkeypatch.setattr(installer, 'pip', fake_pip)
    monkeypatch.setattr(installer.sysconfig, 'get_paths',
                        lambda: {'purelib': str(purelib)})
    installer.install_from_sdist()
    assert calls[0][:4] == ['download', '--quiet', '--no-deps',
                            '--no-build-isolation']
    assert 'pb1-detectron2==0.6' in calls[0]
    assert sorted(os.listdir(purelib)) == ['detectron2',
                                           'detectron2-0.6.dist-info']
    assert (purelib / 'detectron2' / 'layers' / 'nms.py').read_text() == \
        'X = 1\n'
    record = (purelib / 'detectron2-0.6.dist-info' / 'RECORD').read_text()
    assert 'detectron2/layers/nms.py,,' in record
    assert 'setup.py' not in record
    metadata = (purelib / 'detectron2-0.6.dist-info' /
                'METADATA').read_text()
    assert 'Name: detectron2\nVersion: 0.6\n' in metadata
    assert 'Requires-Dist: iopath==0.1.9' in metadata
