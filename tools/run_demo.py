#!/usr/bin/env python
"""Main job: MoPro vs cross-entropy on the embedded noisy digits (CPU).

    python tools/run_demo.py [--work-dir work_dirs/demo]
                             [--data-root data/demo_webvision] [--skip-ce]

1. builds the noisy "web" dataset from scikit-learn's digits if absent
   (tools/dataset_converters/make_demo_dataset.py);
2. trains MoPro (configs/mopro_r18_demo.py) and the cross-entropy baseline
   (configs/ce_r18_demo.py) on the same noisy labels with mmengine Runners;
3. evaluates both on the clean held-out digits;
4. runs the final MoPro model once over the training set and applies the
   training-time noise correction (paper eq. 4-5), scored against the known
   noise (mopro.evaluation.noise_quality);
5. writes ``demo_results.json`` and ``demo_results.md`` to the work dir.
"""
import argparse
import os.path as osp
import time

import mopro  # noqa: F401
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger, print_log
from mmengine.runner import Runner

from mopro.datasets.demo import build_demo_dataset, load_ground_truth
from mopro.evaluation.noise_quality import mopro_pseudo_labels, noise_quality
from mopro.utils import write_json, write_text
from mopro.utils.runner import adapt_to_device

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MOPRO_CONFIG = osp.join(ROOT, 'configs', 'mopro_r18_demo.py')
CE_CONFIG = osp.join(ROOT, 'configs', 'ce_r18_demo.py')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/demo_webvision')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the dataset and of training')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the configs\' number of epochs')
    parser.add_argument('--skip-ce', action='store_true',
                        help='train MoPro only')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to both configs')
    return parser.parse_args(argv)


def demo_config(path: str, args: argparse.Namespace, name: str) -> Config:
    """A demo config pointed at the data root and a sub-work-dir."""
    cfg = Config.fromfile(path)
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = args.data_root
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval,
                                         args.epochs)
        for scheduler in cfg.param_scheduler:
            if scheduler.get('type') == 'CosineAnnealingLR':
                scheduler.T_max = args.epochs
        cfg.default_hooks.checkpoint.interval = args.epochs
        for hook in cfg.get('custom_hooks', []):
            if hook.get('type') == 'MoProHook':
                hook.start_clean_epoch = min(hook.start_clean_epoch,
                                             max(args.epochs - 1, 0))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return adapt_to_device(cfg)


def train_and_eval(cfg: Config) -> tuple:
    """Train with a Runner, then evaluate on the clean split.

    Returns (runner, clean top-1 accuracy in percent, training seconds).
    """
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    metrics = runner.val()
    return runner, float(metrics['accuracy/top1']), seconds


def cleaning_quality(runner: Runner, cfg: Config, data_root: str) -> dict:
    """Noise correction of the final MoPro model over the training set
    (test-style transform), scored against the ground truth."""
    loader_cfg = cfg.val_dataloader.copy()
    loader_cfg.dataset = dict(cfg.train_dataloader.dataset, test_mode=True,
                              pipeline=cfg.val_dataloader.dataset.pipeline)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    print_log('noise correction pass over the training set',
              logger='current')
    indices, labels, pseudo = mopro_pseudo_labels(runner.model, loader)
    truth = {r['path']: r for r in load_ground_truth(data_root)['train']}
    images = loader.dataset.images
    records = [truth[images.path(int(i))] for i in indices]
    for record, label in zip(records, labels):
        if record['label'] != int(label):
            raise ValueError(f'{record["path"]}: file list label {label} '
                             'differs from the ground truth')
    print('')  # end the progress bar line
    return noise_quality(pseudo, labels,
                         [r['true_digit'] for r in records],
                         [r['kind'] for r in records])


def _pct(value) -> str:
    return '-' if value is None else f'{100 * value:.1f}%'


def markdown(results: dict) -> str:
    data, q = results['dataset'], results['noise_cleaning']
    lines = [
        '# MoPro demo: noisy digits (CPU)', '',
        f'Training set: {data["num_train"]} images ({data["clean"]} clean, '
        f'{data["flipped"]} flipped labels, {data["ood"]} OOD digits 8/9); '
        f'clean test set: {data["num_val"]} images of digits 0-7; '
        f'{results["epochs"]} epochs, ResNet-18, 32 px.', '',
        '| model | clean test top-1 | training time |',
        '|---|---|---|',
    ]
    for name in ('ce', 'mopro'):
        if name in results:
            r = results[name]
            lines.append(f'| {r["label"]} | {r["top1"]:.2f}% | '
                         f'{r["train_seconds"] / 60:.1f} min |')
    lines += [
        '', 'Noise correction of the final MoPro model over the training '
        'set (paper eq. 4-5):', '',
        '| metric | value |', '|---|---|',
        f'| precision of "relabelled or OOD" vs truly noisy | '
        f'{_pct(q["noise_precision"])} |',
        f'| recall of truly noisy (flipped + OOD) | '
        f'{_pct(q["noise_recall"])} |',
        f'| OOD recall (digits 8/9 declared OOD) | {_pct(q["ood_recall"])} |',
        f'| OOD precision | {_pct(q["ood_precision"])} |',
        f'| flipped samples relabelled | {_pct(q["flipped_relabelled"])} |',
        f'| correct among relabelled flipped samples | '
        f'{_pct(q["flipped_correction_acc"])} |',
        f'| correct among all relabelled samples | '
        f'{_pct(q["relabel_acc"])} |',
        f'| flipped samples fixed (relabelled to the true digit) | '
        f'{_pct(q["flipped_fixed"])} |',
        f'| clean samples kept | {_pct(q["clean_kept"])} |',
    ]
    return '\n'.join(lines) + '\n'


def write_results(results: dict, work_dir: str) -> None:
    write_json(osp.join(work_dir, 'demo_results.json'), results)
    write_text(osp.join(work_dir, 'demo_results.md'), markdown(results))


def run(args: argparse.Namespace) -> dict:
    MMLogger.get_instance('mopro_demo', log_level='INFO')
    if osp.exists(args.data_root):  # any demo dataset (e.g. --limit)
        data = load_ground_truth(args.data_root)['summary']
    else:
        data = build_demo_dataset(args.data_root, seed=args.seed)
    print_log(f'{args.data_root}: {data["num_train"]} training images '
              f'({data["clean"]} clean, {data["flipped"]} flipped, '
              f'{data["ood"]} OOD), {data["num_val"]} clean test images',
              logger='current')
    cfg = demo_config(MOPRO_CONFIG, args, 'mopro')
    runner, top1, seconds = train_and_eval(cfg)
    results = dict(
        dataset={k: data[k] for k in ('num_train', 'num_val', 'clean',
                                      'flipped', 'ood')},
        epochs=cfg.train_cfg.max_epochs, seed=args.seed,
        mopro=dict(label='MoPro', config='configs/mopro_r18_demo.py',
                   top1=top1, train_seconds=round(seconds, 1)))
    results['noise_cleaning'] = cleaning_quality(runner, cfg,
                                                 args.data_root)
    write_results(results, args.work_dir)  # MoPro's part, if CE fails
    if not args.skip_ce:
        _, top1, seconds = train_and_eval(
            demo_config(CE_CONFIG, args, 'ce'))
        results['ce'] = dict(label='cross-entropy',
                             config='configs/ce_r18_demo.py', top1=top1,
                             train_seconds=round(seconds, 1))
    write_results(results, args.work_dir)
    print(markdown(results))
    print_log(f'results written to {args.work_dir}/demo_results.json and '
              'demo_results.md', logger='current')
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f'error: {err}')


if __name__ == '__main__':
    main()
