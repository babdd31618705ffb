"""Detectron2 transfer (paper Section 5.1, Table 4) on CPU: the converted
encoder loads into Mask R-CNN R50-FPN, its bottom-up backbone computes what
the MoPro encoder computes, the overrides tools/convert_to_d2.py prints load
its output, tools/train_d2.py trains and evaluates with the smoke config
(metric lines every iteration), and the configs follow the protocol.
Without detectron2 this module is skipped
(tests/test_transfer/test_without_detectron2.py checks that)."""
import json
import math
import os
import pickle
import shlex
import shutil

import numpy as np
import pytest
import torch

import mopro  # noqa: F401  (d2_compat before detectron2)

pytest.importorskip('detectron2',
                    reason='run tools/misc/install_detectron2.py first')
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from mmpretrain.registry import MODELS

from mopro.transfer import d2_train
from mopro.transfer.d2_convert import convert_checkpoint, save_detectron2
from mopro.transfer.d2_smoke import write_shapes_coco
from mopro.utils.errors import ConfigError, UserError
from helpers import ROOT
from helpers.commands import run_tools

CONFIGS = os.path.join(ROOT, 'configs', 'detectron2')
BASE = os.path.join(CONFIGS, 'Base-RCNN-FPN-BN.yaml')
SMOKE = os.path.join(CONFIGS, 'coco_R_50_FPN_smoke_cpu.yaml')


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
    state.update({
        'momentum_backbone.' + k: v.clone()
        for k, v in encoder.state_dict().items()
    })
    state.update({
        'classifier.weight': torch.zeros(2, 2048),
        'queue': torch.zeros(8, 4),
        'prototypes': torch.zeros(2, 8)
    })
    src = root / 'mopro.pth'
    torch.save({'state_dict': state, 'meta': {}}, src)
    out = str(root / 'mopro.pkl')
    save_detectron2(convert_checkpoint(str(src))[0], out)
    return out


def cpu_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(BASE)
    cfg.MODEL.DEVICE = 'cpu'
    assert d2_train.sync_bn_to_bn(cfg) == [
        'MODEL.FPN.NORM', 'MODEL.RESNETS.NORM'
    ]
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


def save_mopro_checkpoint(encoder_state, path):
    """A MoPro checkpoint holding ``encoder_state`` as its encoder."""
    torch.save(
        {
            'state_dict': {
                'backbone.' + k: v
                for k, v in encoder_state.items()
            },
            'meta': {}
        }, path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('depth', [18, 50])
def test_printed_overrides_load_the_conversion(tmp_path, depth):
    """The last line tools/convert_to_d2.py prints, appended to the
    protocol config, builds a backbone that takes every converted tensor."""
    torch.manual_seed(0)
    state = MODELS.build(dict(type='ResNet', depth=depth)).state_dict()
    src = save_mopro_checkpoint(state, tmp_path / 'mopro.pth')
    out = str(tmp_path / 'converted.pkl')
    (result, ) = run_tools([['convert_to_d2', src, out]])
    assert result.code == 0, result.stderr
    line = result.value.splitlines()[-1]
    expected = {
        18: f'MODEL.WEIGHTS {out} MODEL.RESNETS.DEPTH 18 '
        'MODEL.RESNETS.RES2_OUT_CHANNELS 64',
        50: f'MODEL.WEIGHTS {out} MODEL.RESNETS.DEPTH 50'
    }
    assert line == expected[depth]
    cfg = cpu_cfg()
    cfg.merge_from_list(shlex.split(line))
    model = build_model(cfg).eval()
    checkpointer = DetectionCheckpointer(model)
    incompatible = checkpointer._load_model(
        checkpointer._load_file(cfg.MODEL.WEIGHTS))
    assert incompatible.unexpected_keys == []
    assert incompatible.incorrect_shapes == []
    bottom_up = model.backbone.bottom_up.state_dict()
    with open(out, 'rb') as f:
        weights = pickle.load(f)['model']
    assert sorted(k for k in bottom_up if k not in weights) == sorted(
        k for k in bottom_up if k.endswith('num_batches_tracked'))


# the smoke config, shortened further: 2 iterations, 1 precise-BN batch
SHORT_OPTS = [
    'SOLVER.MAX_ITER', '2', 'SOLVER.STEPS', '()', 'TEST.PRECISE_BN.NUM_ITER',
    '1'
]


def metric_iterations(out_dir):
    """Iterations of Detectron2's metric lines in ``metrics.json``."""
    with open(os.path.join(out_dir, 'metrics.json')) as f:
        return [json.loads(line).get('iteration') for line in f]


@pytest.mark.slow
@pytest.mark.parametrize('num_gpus',
                         [0, pytest.param(1, marks=pytest.mark.gpu)])
def test_smoke_config_trains_and_evaluates(tmp_path, converted, num_gpus):
    # on CPU with BN; on one GPU with the protocol's SyncBN (one process:
    # torch's SyncBatchNorm then normalises with the local batch)
    out = tmp_path / 'out'
    device = ['MODEL.DEVICE', 'cuda'] if num_gpus else []
    argv = ['--config-file', SMOKE, '--num-gpus', str(num_gpus)]
    args = d2_train.parse_args(
        argv + SHORT_OPTS + device +
        ['MODEL.WEIGHTS', converted, 'OUTPUT_DIR',
         str(out)])
    cfg = d2_train.setup(args)
    assert cfg.MODEL.DEVICE == ('cuda' if num_gpus else 'cpu')
    assert cfg.MODEL.RESNETS.NORM == ('SyncBN' if num_gpus else 'BN')
    results = d2_train.train_or_evaluate(args)
    assert set(results) == {'bbox', 'segm'}
    for task in ('bbox', 'segm'):
        assert math.isfinite(results[task]['AP']), results
        assert 0 <= results[task]['AP'] <= 100
    assert (out / 'model_final.pth').is_file()
    assert (out / 'inference' / 'mopro_smoke_shapes' /
            'coco_instances_results.json').is_file()
    # MOPRO.LOG_PERIOD 1: a metric line after every iteration (Detectron2's
    # period of 20 writes only the last), then the evaluation's
    assert metric_iterations(out) == [0, 1, 2]
    # --eval-only of the trained model on the same images, registered by
    # hand (--register), reproduces the final evaluation
    data = tmp_path / 'copy'
    shutil.copytree(out / 'smoke_data', data)
    again = d2_train.train_or_evaluate(
        d2_train.parse_args(argv + [
            '--eval-only', '--register', 'copy',
            str(data / 'annotations.json'),
            str(data / 'images')
        ] + SHORT_OPTS + device + [
            'DATASETS.TEST', '("copy",)', 'MODEL.WEIGHTS',
            str(out / 'model_final.pth'), 'OUTPUT_DIR',
            str(tmp_path / 'eval')
        ]))
    for task in ('bbox', 'segm'):
        assert again[task]['AP'] == pytest.approx(results[task]['AP'],
                                                  abs=1e-6)


@pytest.mark.slow
def test_train_d2_tool_reports_user_errors(tmp_path):
    # the overrides were yacs AssertionError tracebacks
    cases = {
        ():
        'MODEL.WEIGHTS is not set; pass the .pkl written by '
        'tools/convert_to_d2.py (MODEL.WEIGHTS path.pkl)',
        ('MODEL.NOPE', '1'):
        'MODEL.NOPE: no such Detectron2 config key '
        '(check the spelling)',
        ('MODEL.WEIGHTS', ):
        'config overrides come as KEY VALUE pairs: '
        'MODEL.WEIGHTS has no value',
        ('MODEL.RESNETS.DEPTH', 'fifty'):
        "MODEL.RESNETS.DEPTH fifty: not a "
        "value of the key's type int (default: 50)",
    }
    outs = [tmp_path / f'out{i}' for i in range(len(cases))]
    results = run_tools([[
        'train_d2', '--config-file', SMOKE, '--num-gpus', '0', 'OUTPUT_DIR',
        out, *extra
    ] for out, extra in zip(outs, cases)])
    for result, message in zip(results, cases.values()):
        assert result.error == f'error: {message}'
    assert not any(out.exists() for out in outs)


def test_smoke_dataset_is_seeded_and_reused(tmp_path):
    first = write_shapes_coco(str(tmp_path / 'a'))
    second = write_shapes_coco(str(tmp_path / 'b'))
    with open(first[0]) as f, open(second[0]) as g:
        assert json.load(f) == json.load(g)
    for name in os.listdir(first[1]):
        assert (tmp_path / 'a' / 'images' / name).read_bytes() == \
            (tmp_path / 'b' / 'images' / name).read_bytes()
    with open(first[0]) as f:
        coco = json.load(f)
    assert len(coco['images']) == 8 and len(coco['annotations']) == 16
    mtime = os.path.getmtime(first[0])
    assert write_shapes_coco(str(tmp_path / 'a')) == first
    assert os.path.getmtime(first[0]) == mtime
    assert sorted(os.listdir(tmp_path)) == ['a', 'b']


def setup_cfg(tmp_path, *extra, num_gpus=0):
    args = d2_train.parse_args([
        '--config-file',
        os.path.join(CONFIGS, 'coco_R_50_FPN_1x.yaml'), '--num-gpus',
        str(num_gpus), 'OUTPUT_DIR',
        str(tmp_path), *extra
    ])
    return d2_train.setup(args)


def test_setup_uses_bn_only_on_cpu(tmp_path, converted):
    cfg = setup_cfg(tmp_path, 'MODEL.WEIGHTS', converted)
    assert cfg.MODEL.DEVICE == 'cpu'
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM) == ('BN', 'BN')
    cfg = setup_cfg(tmp_path, 'MODEL.WEIGHTS', converted, num_gpus=1)
    assert cfg.MODEL.DEVICE == 'cuda'
    assert (cfg.MODEL.RESNETS.NORM, cfg.MODEL.FPN.NORM) == ('SyncBN', 'SyncBN')


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
    torch.save(
        {
            'state_dict': {
                'backbone.' + k: v
                for k, v in r18.items()
            },
            'meta': {}
        }, src)
    out = str(tmp_path / 'r18.pkl')
    save_detectron2(convert_checkpoint(str(src))[0], out)
    with pytest.raises(ConfigError) as err:
        setup_cfg(tmp_path / 'out', 'MODEL.WEIGHTS', out)
    assert str(err.value) == (
        f'{out}: MODEL.WEIGHTS is a ResNet-18 (res2.0.conv3 absent, blocks '
        'per stage 2-2-2-2), the config builds ResNet-50 (MODEL.RESNETS.DEPTH'
        ' 50): convert a ResNet-50 checkpoint or set MODEL.RESNETS.DEPTH 18 '
        'MODEL.RESNETS.RES2_OUT_CHANNELS 64')
    assert not (tmp_path / 'out').exists()
    # with the depth alone Detectron2 would assert in build_model
    with pytest.raises(ConfigError) as err:
        setup_cfg(tmp_path / 'out', 'MODEL.WEIGHTS', out,
                  'MODEL.RESNETS.DEPTH', '18')
    assert str(err.value) == (
        'MODEL.RESNETS.DEPTH 18 builds basic blocks, whose res2 has 64 '
        'channels, not MODEL.RESNETS.RES2_OUT_CHANNELS 256: set '
        'MODEL.RESNETS.DEPTH 18 MODEL.RESNETS.RES2_OUT_CHANNELS 64')
    cfg = setup_cfg(tmp_path / 'out', 'MODEL.WEIGHTS', out,
                    'MODEL.RESNETS.DEPTH', '18',
                    'MODEL.RESNETS.RES2_OUT_CHANNELS', '64')
    assert cfg.MODEL.RESNETS.DEPTH == 18


def test_setup_refuses_non_finite_weights(tmp_path, converted):
    with open(converted, 'rb') as f:
        obj = pickle.load(f)
    obj['model']['res4.2.conv1.weight'] = np.full_like(
        obj['model']['res4.2.conv1.weight'], np.nan)
    bad = str(tmp_path / 'nan.pkl')
    with open(bad, 'wb') as f:
        pickle.dump(obj, f)
    with pytest.raises(
            UserError, match=r'res4.2.conv1.weight holds 262144 '
            r'non-finite values'):
        setup_cfg(tmp_path, 'MODEL.WEIGHTS', bad)


def test_setup_names_bad_keys_of_the_file_and_sections(tmp_path):
    config = tmp_path / 'bad.yaml'
    config.write_text(f'_BASE_: "{BASE}"\nMODEL:\n  NOPE: 1\n')
    args = d2_train.parse_args(['--config-file', str(config)])
    with pytest.raises(ConfigError) as err:
        d2_train.setup(args)
    assert str(err.value) == (f'{config}: Non-existent config key: '
                              'MODEL.NOPE')
    with pytest.raises(ConfigError) as err:
        setup_cfg(tmp_path / 'out', 'MODEL.RESNETS', '1')
    assert str(err.value) == ('MODEL.RESNETS is a section of the config, '
                              'not a value; override one of its keys '
                              '(MODEL.RESNETS.KEY VALUE)')
    assert not (tmp_path / 'out').exists()


def test_register_rejects_missing_paths(tmp_path):
    with pytest.raises(SystemExit):
        d2_train.parse_args([
            '--config-file', BASE, '--register', 'x',
            str(tmp_path / 'no.json'),
            str(tmp_path)
        ])


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
    d2_train.add_mopro_config(cfg)
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
    schedules = {
        'coco_R_50_FPN_1x.yaml': ((60000, 80000), 90000),
        'coco_R_50_FPN_2x.yaml': ((120000, 160000), 180000)
    }
    for name, (steps, max_iter) in schedules.items():
        cfg = load_cfg(name)
        assert (cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER) == (steps, max_iter)
        differ = {k for k, v in flat(cfg).items() if flat(base)[k] != v}
        assert differ == {'SOLVER.STEPS', 'SOLVER.MAX_ITER', 'OUTPUT_DIR'}
    # the smoke run keeps the protocol's model and fine-tuning; only sizes,
    # data, schedule and logging are small
    smoke = flat(load_cfg('coco_R_50_FPN_smoke_cpu.yaml'))
    differ = {k for k, v in smoke.items() if flat(base)[k] != v}
    assert differ == {
        'MODEL.DEVICE', 'MODEL.RPN.PRE_NMS_TOPK_TRAIN',
        'MODEL.RPN.POST_NMS_TOPK_TRAIN', 'MODEL.RPN.PRE_NMS_TOPK_TEST',
        'MODEL.RPN.POST_NMS_TOPK_TEST', 'MODEL.ROI_HEADS.NUM_CLASSES',
        'MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE',
        'MODEL.ROI_HEADS.SCORE_THRESH_TEST', 'DATASETS.TRAIN', 'DATASETS.TEST',
        'INPUT.MIN_SIZE_TRAIN', 'INPUT.MAX_SIZE_TRAIN', 'INPUT.MIN_SIZE_TEST',
        'INPUT.MAX_SIZE_TEST', 'DATALOADER.NUM_WORKERS',
        'SOLVER.IMS_PER_BATCH', 'SOLVER.BASE_LR', 'SOLVER.WARMUP_ITERS',
        'SOLVER.STEPS', 'SOLVER.MAX_ITER', 'TEST.EVAL_PERIOD',
        'TEST.PRECISE_BN.NUM_ITER', 'MOPRO.LOG_PERIOD', 'SEED', 'OUTPUT_DIR'
    }
    assert smoke['DATASETS.TRAIN'] == ('mopro_smoke_shapes', )
    assert smoke['MOPRO.LOG_PERIOD'] == 1
