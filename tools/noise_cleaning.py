#!/usr/bin/env python
"""Clean the noisy training set with a trained MoPro model (Section 4.3).

    python tools/noise_cleaning.py configs/mopro_r50_webvision_v1.py CKPT \
        --out work_dirs/cleaning/pseudo_label.json
    torchrun --nproc_per_node 8 tools/noise_cleaning.py CONFIG CKPT \
        --out ... --launcher pytorch

Writes ``--out`` (``{relative/path: label}``, OOD images removed; the
training list of ``configs/crt_r50_webvision_v1.py``), and, in the work dir,
``noise_cleaning_summary.json`` (counts relabelled / OOD / kept, per class)
and the PNG report (OOD samples, relabelled samples, per-class changes).
"""
import argparse
import os
import os.path as osp

import mopro  # noqa: F401
import torch
from mmengine.dist import get_dist_info, init_dist
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

from mopro.evaluation.noise_cleaning import (clean_dataset, cleaned_list,
                                             summarize)
from mopro.utils import write_json
from mopro.utils.checkpoint import load_model_weights
from mopro.utils.cli import ConfigError, run_tool
from mopro.utils.outputs import check_output_dir, check_output_file
from mopro.utils.runner import (add_config_args, compile_only_on_cuda,
                                load_config)
from mopro.visualization import save_report

SUMMARY_NAME = 'noise_cleaning_summary.json'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument('checkpoint', help='MoPro checkpoint (this project '
                        'or the released code)')
    parser.add_argument('--out', required=True,
                        help='cleaned list (JSON {relative/path: label})')
    parser.add_argument('--batch-size', type=int, default=256,
                        help='images per batch and GPU')
    parser.add_argument('--num-workers', type=int, default=8)
    parser.add_argument('--num-show', type=int, default=16,
                        help='images per sample grid of the report')
    parser.add_argument('--device', choices=['cuda', 'cpu'],
                        help='default: cuda when available (the rank\'s GPU '
                        'under a launcher), else cpu')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='unpickle arbitrary objects in the checkpoint')
    return parser.parse_args(argv)


def build_cleaning_dataset(cfg):
    """The training set of the config, with the test (val) pipeline."""
    dataset_cfg = cfg.train_dataloader.dataset.copy()
    dataset_cfg.pipeline = cfg.val_dataloader.dataset.pipeline
    dataset = DATASETS.build(dataset_cfg)
    dataset.full_init()
    return dataset


def check_outputs(args: argparse.Namespace, cfg, num_images: int) -> None:
    """``--out`` (about 100 bytes per image) and the work dir (summary and
    report) can be written, and neither is an input."""
    inputs = (args.config, args.checkpoint)
    check_output_file(args.out, inputs=inputs, need_bytes=100 * num_images,
                      what='--out file')
    check_output_dir(cfg.work_dir, what='work dir')
    summary = osp.join(cfg.work_dir, SUMMARY_NAME)
    check_output_file(summary, inputs=(*inputs, args.out),
                      what='summary')


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = compile_only_on_cuda(load_config(args), device=args.device)
    if cfg.model.get('type') != 'MoPro':
        raise ConfigError(f'{args.config}: noise cleaning needs a MoPro '
                          f'model config, got model.type='
                          f'{cfg.model.get("type")}')
    if args.launcher != 'none':
        init_dist(args.launcher,
                  backend='nccl' if torch.cuda.is_available() else 'gloo')
    init_default_scope('mmpretrain')
    logger = MMLogger.get_instance('noise_cleaning')
    model = MODELS.build(cfg.model)
    load_model_weights(model, args.checkpoint, trust=args.trust_checkpoint)
    dataset = build_cleaning_dataset(cfg)
    check_outputs(args, cfg, len(dataset))
    device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        device = torch.device('cuda', torch.cuda.current_device())
    model.to(device)
    logger.info(f'noise cleaning of {len(dataset)} images with '
                f'{args.checkpoint} (alpha={model.alpha}, '
                f'threshold={model.threshold})')
    pseudo = clean_dataset(model, dataset, args.batch_size, args.num_workers,
                           device)
    original = dataset.get_gt_labels()
    summary = summarize(original, pseudo, model.num_classes)
    if get_dist_info()[0] != 0:
        return summary
    # the cleaned list last: a run that fails to write leaves none
    summary_path = osp.join(cfg.work_dir, SUMMARY_NAME)
    write_json(summary_path,
               dict(checkpoint=args.checkpoint, out=args.out, **summary),
               indent=1)
    figures = save_report(dataset, original, pseudo, summary, cfg.work_dir,
                          args.num_show)
    write_json(args.out, cleaned_list(dataset, pseudo), indent=None)
    total = summary['total']
    logger.info(f'{total["images"]} images: {total["kept"]} kept, '
                f'{total["relabelled"]} relabelled, {total["ood"]} OOD, '
                f'{total["unreadable"]} unreadable -> {args.out} '
                f'({total["cleaned"]} images); summary {summary_path}; '
                f'report {", ".join(figures.values())}')
    return summary


if __name__ == '__main__':
    run_tool(main)
