"""Fine-tuning of a converted MoPro encoder with Detectron2 (Mask R-CNN).

Object detection / instance segmentation transfer of the paper (Section
5.1, Table 4; protocol in Appendix C and ``configs/detectron2/``): the logic
of ``tools/train_d2.py``. Importing this module imports detectron2 (import
:mod:`mopro` first, so that :mod:`mopro.transfer.d2_compat` is in place).

On CPU SyncBN cannot run, so every ``SyncBN`` norm of the config becomes
plain ``BN`` (for smoke runs; the protocol needs GPUs). A local
``MODEL.WEIGHTS`` .pkl must hold a ResNet of the config's
``MODEL.RESNETS.DEPTH`` with finite weights: Detectron2 itself would load a
ResNet-18 into the R-50 config with shape warnings and train a mostly random
backbone.
"""
import argparse
import os
import os.path as osp
import pickle
import re
from typing import Dict, List, Optional

import numpy as np
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import (DefaultTrainer, default_argument_parser,
                               default_setup, hooks, launch)
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import RESNET_DEPTHS, resnet_layout
from ..utils.cli import describe
from ..utils.errors import ConfigError, UserError
from ..utils.outputs import check_not_input, check_output_dir
from .d2_convert import depth_options
from .d2_smoke import SMOKE_DATASET, write_shapes_coco

# Detectron2's period of its metric lines (console, metrics.json,
# TensorBoard), which DefaultTrainer hard-codes
DEFAULT_LOG_PERIOD = 20


def add_mopro_config(cfg: CfgNode) -> None:
    """This project's config keys (Detectron2's ``add_*_config``
    convention): ``MOPRO.LOG_PERIOD``, iterations between metric lines."""
    cfg.MOPRO = CfgNode()
    cfg.MOPRO.LOG_PERIOD = DEFAULT_LOG_PERIOD


class Trainer(DefaultTrainer):
    """Detectron2's default trainer with COCO evaluation through pycocotools
    (``use_fast_impl=False``: the registry build of detectron2 has no
    compiled fast COCOeval) and metric lines every ``MOPRO.LOG_PERIOD``
    iterations."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str,
                        output_folder: Optional[str] = None) -> COCOEvaluator:
        if output_folder is None:
            output_folder = osp.join(cfg.OUTPUT_DIR, 'inference', dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_folder,
                             use_fast_impl=False)

    def build_hooks(self) -> list:
        built = super().build_hooks()
        for hook in built:
            if isinstance(hook, hooks.PeriodicWriter):
                # no public setter; DefaultTrainer passes period=20
                hook._period = self.cfg.MOPRO.LOG_PERIOD
        return built


def sync_bn_to_bn(cfg: CfgNode) -> List[str]:
    """Replace every ``NORM: "SyncBN"`` of ``cfg`` by ``"BN"`` in place;
    return the keys changed."""
    changed = []

    def visit(node: CfgNode, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, CfgNode):
                visit(value, f'{prefix}{key}.')
            elif key == 'NORM' and value == 'SyncBN':
                node[key] = 'BN'
                changed.append(prefix + key)

    visit(cfg, '')
    return changed


def _read_pkl_weights(path: str) -> dict:
    """The ``model`` weights of a Detectron2 .pkl (or the dict itself)."""
    try:
        with open(path, 'rb') as f:
            obj = pickle.load(f, encoding='latin1')
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError) as err:
        raise UserError(f'{path}: MODEL.WEIGHTS is not a readable .pkl '
                        f'checkpoint ({type(err).__name__})') from None
    weights = obj.get('model', obj) if isinstance(obj, dict) else None
    if not isinstance(weights, dict):
        raise UserError(f'{path}: MODEL.WEIGHTS holds no weights dict '
                        "(expected {'model': {name: array}})")
    return weights


def check_resnet_config(cfg: CfgNode) -> None:
    """ResNet-18/34 (basic blocks) need ``RES2_OUT_CHANNELS 64``, which
    Detectron2 asserts only when it builds the model."""
    depth = cfg.MODEL.RESNETS.DEPTH
    channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    if depth in (18, 34) and channels != 64:
        raise ConfigError(
            f'MODEL.RESNETS.DEPTH {depth} builds basic blocks, whose res2 '
            f'has 64 channels, not MODEL.RESNETS.RES2_OUT_CHANNELS '
            f'{channels}: set {" ".join(depth_options(depth))}')


def check_weights(cfg: CfgNode) -> None:
    """A local MODEL.WEIGHTS .pkl of ResNet weights must be of the config's
    depth and finite (URLs and other formats are Detectron2's to read)."""
    path = cfg.MODEL.WEIGHTS
    if not path or '://' in path:
        return
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: MODEL.WEIGHTS: no such file')
    if not path.endswith('.pkl'):
        return
    weights = _read_pkl_weights(path)
    layout = resnet_layout(weights, stage='res', first=2)
    if layout is None:  # not named like tools/convert_to_d2.py's output
        return
    depth, wanted = RESNET_DEPTHS.get(layout), cfg.MODEL.RESNETS.DEPTH
    if depth != wanted:
        found = f'ResNet-{depth}' if depth else 'ResNet of blocks ' + \
            '-'.join(map(str, layout[1]))
        fix = f' or set {" ".join(depth_options(depth))}' if depth else ''
        raise ConfigError(
            f'{path}: MODEL.WEIGHTS is a {found} (res2.0.conv3 '
            f'{"present" if layout[0] else "absent"}, blocks per stage '
            f'{"-".join(map(str, layout[1]))}), the config builds '
            f'ResNet-{wanted} (MODEL.RESNETS.DEPTH {wanted}): convert a '
            f'ResNet-{wanted} checkpoint{fix}')
    for name, value in weights.items():
        value = np.asarray(value)
        if value.dtype.kind == 'f' and not np.isfinite(value).all():
            raise UserError(
                f'{path}: {name} holds {int((~np.isfinite(value)).sum())} '
                'non-finite values (NaN or inf): the weights of a diverged '
                'run')


def check_outputs_apart(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Detectron2 writes its copy of the config, ``OUTPUT_DIR/config.yaml``,
    and, training afresh, ``model_NNNNNNN.pth`` and ``model_final.pth``
    there: neither may be ``--config-file`` or ``MODEL.WEIGHTS``."""
    check_not_input(
        osp.join(cfg.OUTPUT_DIR, 'config.yaml'), [args.config_file],
        what='copy of the config that Detectron2 writes',
        fix='choose another OUTPUT_DIR')
    name = osp.basename(cfg.MODEL.WEIGHTS)
    if not (args.resume or args.eval_only) and \
            re.fullmatch(r'model_(?:final|\d+)\.pth', name):
        check_not_input(
            osp.join(cfg.OUTPUT_DIR, name), [cfg.MODEL.WEIGHTS],
            what='checkpoint this run writes', fix='choose another OUTPUT_DIR')


def _lookup(cfg: CfgNode, key: str):
    """The value of dotted ``key`` in ``cfg``; KeyError if it has none."""
    node = cfg
    for part in key.split('.'):
        if not isinstance(node, CfgNode) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def merge_overrides(cfg: CfgNode, opts: List[str]) -> None:
    """Merge the trailing ``KEY VALUE`` overrides of the command line into
    ``cfg``, with one-line errors naming the key where yacs asserts: an
    odd-length list, a key the config does not have, a value of another
    type than the key's default, a section given a value.

    Raises:
        ConfigError: naming the override.
    """
    if len(opts) % 2:
        raise ConfigError(f'config overrides come as KEY VALUE pairs: '
                          f'{opts[-1]} has no value')
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            old = _lookup(cfg, key)
        except KeyError:
            raise ConfigError(f'{key}: no such Detectron2 config key '
                              '(check the spelling)') from None
        if isinstance(old, CfgNode):
            raise ConfigError(f'{key} is a section of the config, not a '
                              f'value; override one of its keys ({key}.KEY '
                              'VALUE)')
        try:
            cfg.merge_from_list([key, value])
        except (AssertionError, KeyError, TypeError, ValueError):
            raise ConfigError(f'{key} {value}: not a value of the key\'s '
                              f'type {type(old).__name__} (default: '
                              f'{old!r})') from None


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from file and overrides; CPU runs get BN instead of SyncBN;
    the model settings, the weights and the output folder are checked
    before anything runs."""
    cfg = get_cfg()
    add_mopro_config(cfg)
    try:
        cfg.merge_from_file(args.config_file)
    except (AssertionError, KeyError, ValueError) as err:
        # yacs: a key Detectron2 does not have, a value of another type
        message = str(err.args[0] if err.args else err).splitlines()[0]
        raise ConfigError(f'{args.config_file}: {message}') from None
    merge_overrides(cfg, args.opts)
    if args.num_gpus == 0:
        cfg.MODEL.DEVICE = 'cpu'
    changed = sync_bn_to_bn(cfg) if cfg.MODEL.DEVICE == 'cpu' else []
    if not cfg.MODEL.WEIGHTS and not (args.resume or args.eval_only):
        raise ConfigError('MODEL.WEIGHTS is not set; pass the .pkl '
                          'written by tools/convert_to_d2.py (MODEL.WEIGHTS '
                          'path.pkl)')
    check_resnet_config(cfg)
    check_weights(cfg)
    check_output_dir(cfg.OUTPUT_DIR, what='OUTPUT_DIR')
    check_outputs_apart(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    logger = setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(),
                          name='mopro')
    if changed:
        logger.warning('CPU run: SyncBN replaced by BN in %s',
                       ', '.join(changed))
    return cfg


def register_datasets(datasets: List[List[str]]) -> None:
    """Register COCO-format datasets given as ``[name, json, image_dir]``
    (again in every worker process; a repeated identical registration is
    a no-op)."""
    for name, json_file, image_root in datasets:
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            if (meta.get('json_file'), meta.get('image_root')) == (json_file,
                                                                   image_root):
                continue
            raise UserError(f'--register {name}: a dataset of that name is '
                            'already registered')
        register_coco_instances(name, {}, json_file, image_root)


def register_smoke_dataset(cfg: CfgNode) -> None:
    """Write and register :data:`SMOKE_DATASET` (under
    ``OUTPUT_DIR/smoke_data``, in place of an earlier run's in the same
    process) when the config trains or tests on it."""
    if SMOKE_DATASET not in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        return
    paths = write_shapes_coco(osp.join(cfg.OUTPUT_DIR, 'smoke_data'))
    if SMOKE_DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(SMOKE_DATASET)
        MetadataCatalog.remove(SMOKE_DATASET)
    register_coco_instances(SMOKE_DATASET, {}, *paths)


def train_or_evaluate(args: argparse.Namespace) -> Dict[str, dict]:
    """Train (or with ``--eval-only`` evaluate); return the results of the
    last evaluation: ``{task: {metric: value}}`` for one test dataset,
    keyed by dataset name for several (Detectron2's ``DefaultTrainer.test``).
    """
    register_datasets(args.register)
    cfg = setup(args)
    register_smoke_dataset(cfg)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    # DefaultTrainer.train() returns them only with TEST.EXPECTED_RESULTS set
    return getattr(trainer, '_last_eval_results', {})


def parse_args(argv: Optional[List[str]] = None,
               doc: Optional[str] = None) -> argparse.Namespace:
    """Detectron2's arguments (``--config-file``, ``--num-gpus``,
    ``--num-machines``, ``--machine-rank``, ``--dist-url``, ``--eval-only``,
    ``--resume``, trailing ``KEY VALUE`` overrides) plus ``--register NAME
    JSON IMAGE_DIR``; ``doc``, the tool's docstring, describes them in
    ``--help`` (:func:`mopro.utils.cli.describe`) in place of Detectron2's
    generic examples."""
    parser = default_argument_parser()
    if doc:
        describe(parser, doc)
    parser.add_argument(
        '--register', nargs=3, action='append', default=[],
        metavar=('NAME', 'JSON', 'IMAGE_DIR'),
        help='register a COCO-format dataset under NAME (repeatable); use '
        'it in DATASETS.TRAIN / DATASETS.TEST')
    args = parser.parse_args(argv)
    if not args.config_file:
        parser.error('--config-file is required')
    if not osp.isfile(args.config_file):
        parser.error(f'--config-file {args.config_file}: no such file')
    for name, *paths in args.register:
        for path in paths:
            if not os.path.exists(path):
                parser.error(f'--register {name}: {path}: no such file or '
                             'directory')
    return args


def launch_training(args: argparse.Namespace) -> None:
    """:func:`train_or_evaluate` in ``args.num_gpus`` processes per machine
    (Detectron2's ``launch``)."""
    launch(
        train_or_evaluate,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, ),
    )
