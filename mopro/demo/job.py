"""The demo job: MoPro vs cross-entropy on the embedded noisy digits (CPU).

1. builds the noisy "web" dataset from scikit-learn's digits if absent
   (:mod:`mopro.datasets.demo`);
2. stage 1/3: trains MoPro on the noisy labels with an mmengine Runner,
   validating on the clean held-out digits every :data:`VAL_INTERVAL`
   epochs;
3. stage 2/3: runs the final MoPro model once over the training set and
   applies the training-time noise correction (paper eq. 4-5), scored
   against the known noise (:mod:`mopro.evaluation.noise_quality`) and
   pictured (:func:`mopro.visualization.save_report`);
4. stage 3/3: trains the cross-entropy baseline on the same noisy labels;
5. writes the report to the output folder: ``demo_results.json``,
   ``demo_results.md``, ``accuracy_curves.png`` (both models' logged
   validation accuracy over epochs), ``relabelled_samples.png``,
   ``ood_samples.png``, ``class_changes.png``.

The console shows a one-line plan, one progress line and the results
(:mod:`mopro.demo.progress`); each run's log file
(``work_dir/{mopro,ce}/<timestamp>/<timestamp>.log``) holds the rest.
"""
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, TextIO

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from ..config import read_config
from ..datasets.demo import (DIGIT_NAMES, build_demo_dataset, class_names,
                             load_ground_truth)
from ..engine.launch import adapt_to_device
from ..engine.run_checks import check_built_run, check_run_config
from ..evaluation.noise_cleaning import summarize
from ..evaluation.noise_quality import mopro_pseudo_labels, noise_quality
from ..utils.errors import DataError
from ..utils.outputs import check_output_dir
from ..visualization import read_val_curve, save_report
from .epoch_loss import EpochLossHook
from .progress import (CE_TRAIN_COST, FORWARD_COST, MOPRO_TRAIN_COST,
                       JobProgress, ProgressHook, QuietConsoleRunner, Stage)
from .report import markdown, save_accuracy_picture, write_results

# validation on the clean test digits (320 images, about a second on CPU)
# every 2 epochs: the points of the accuracy curves
VAL_INTERVAL = 2
NUM_SHOW = 16  # images per sample grid


def demo_config(path: str, data_root: str, work_dir: str, seed: int,
                epochs: Optional[int] = None,
                cfg_options: Optional[dict] = None) -> Config:
    """A demo config pointed at the data root and ``work_dir``, its
    datasets carrying the digits' class names; ``epochs`` rescales the run
    (schedule and MoPro's phases) to that length."""
    cfg = read_config(path)
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = cfg[loader].dataset
        dataset.data_root = data_root
        dataset.metainfo = dict(classes=class_names(dataset.num_classes))
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.train_cfg.val_interval = VAL_INTERVAL
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        cfg.train_cfg.val_interval = min(VAL_INTERVAL, epochs)
        for scheduler in cfg.param_scheduler:
            if scheduler.get('type') == 'CosineAnnealingLR':
                scheduler.T_max = epochs
        cfg.default_hooks.checkpoint.interval = epochs
        for hook in cfg.get('custom_hooks', []):
            if hook.get('type') == 'MoProHook':
                hook.start_clean_epoch = min(hook.start_clean_epoch,
                                             max(epochs - 1, 0))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_run_config(cfg)
    return adapt_to_device(cfg)


def _train_work(cfg: Config, num_train: int, num_val: int,
                cost: float) -> float:
    """Forward passes of a training run (:mod:`mopro.demo.progress`)."""
    epochs, interval = cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval
    num_vals = len(set(range(interval, epochs + 1, interval)) | {epochs})
    return epochs * num_train * cost + num_vals * num_val * FORWARD_COST


def train(cfg: Config, progress: JobProgress, cost: float) -> tuple:
    """Train with a Runner (console: the progress line).

    Returns:
        (runner, result): ``top1`` (clean test top-1 of the final model, in
        percent), ``train_seconds``, ``threads`` (torch's intra-op threads
        of the run), ``curve`` (``epochs`` and ``top1`` of every
        validation, read back from the run's logged scalars) and
        ``first_loss`` and ``train_loss`` (:class:`EpochLossHook`'s).
    """
    runner = QuietConsoleRunner.from_cfg(cfg)
    check_built_run(runner)
    runner.register_hook(ProgressHook(progress, cost))
    epoch_loss = EpochLossHook()
    runner.register_hook(epoch_loss)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    epochs, top1 = read_val_curve(runner.log_dir)
    if not epochs or epochs[-1] != cfg.train_cfg.max_epochs:
        raise DataError(f'{runner.log_dir}: no validation of the last '
                        f'epoch ({cfg.train_cfg.max_epochs}) was logged')
    curve = dict(epochs=epochs, top1=top1)
    return runner, dict(top1=top1[-1], train_seconds=round(seconds, 1),
                        threads=torch.get_num_threads(), curve=curve,
                        first_loss=epoch_loss.first,
                        train_loss=epoch_loss.losses)


class _ReportingLoader:
    """Iterates a dataloader, counting each batch on the progress line."""

    def __init__(self, loader, progress: JobProgress) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.progress = progress

    def __iter__(self):
        per_batch = len(self.dataset) / len(self.loader)
        for i, batch in enumerate(self.loader):
            yield batch
            seen = min(round((i + 1) * per_batch), len(self.dataset))
            self.progress.step(FORWARD_COST * per_batch,
                               f'{seen}/{len(self.dataset)} images')


def clean(runner: Runner, cfg: Config, data_root: str, out_dir: str,
          progress: JobProgress, seed: int) -> tuple:
    """Noise correction of the final MoPro model over the training set
    (test-style transform), scored against the ground truth and pictured.

    Returns:
        (quality, pictures): :func:`noise_quality`'s dict, and the PNG file
        names written to ``out_dir``.
    """
    loader_cfg = cfg.val_dataloader.copy()
    loader_cfg.dataset = dict(cfg.train_dataloader.dataset, test_mode=True,
                              pipeline=cfg.val_dataloader.dataset.pipeline)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    indices, _, pseudo_in_order = mopro_pseudo_labels(
        runner.model, _ReportingLoader(loader, progress), show_progress=False)
    dataset = loader.dataset
    if not np.array_equal(np.sort(indices), np.arange(len(dataset))):
        raise RuntimeError('the cleaning pass did not see every training '
                           'image exactly once')
    truth = {r['path']: r for r in load_ground_truth(data_root)['train']}
    records = [truth[dataset.images.path(i)] for i in range(len(dataset))]
    original = dataset.get_gt_labels()
    for record, label in zip(records, original):
        if record['label'] != int(label):
            raise DataError(f'{data_root}: {record["path"]}: file list '
                            f'label {label} differs from the ground truth')
    pseudo = np.empty(len(dataset), dtype=np.int64)
    pseudo[indices] = pseudo_in_order
    quality = noise_quality(pseudo, original,
                            [r['true_digit'] for r in records],
                            [r['kind'] for r in records])
    summary = summarize(original, pseudo, len(dataset.metainfo['classes']))
    paths = save_report(dataset, original, pseudo, summary, out_dir,
                        num_show=NUM_SHOW, seed=seed,
                        truth=[DIGIT_NAMES[r['true_digit']] for r in records])
    return quality, {key: osp.basename(path) for key, path in paths.items()}


def _dataset(data_root: str, seed: int, stream: TextIO) -> dict:
    """The demo dataset's summary, building it first if absent."""
    if osp.exists(data_root):  # any demo dataset (e.g. --limit)
        return load_ground_truth(data_root)['summary']
    stream.write(f'{data_root}: building the noisy digits dataset (once)\n')
    stream.flush()
    return build_demo_dataset(data_root, seed=seed)


def _stages(configs: Dict[str, Config], data: dict) -> List[Stage]:
    """Train MoPro, noise cleaning, train cross-entropy (if configured),
    with their work in forward passes."""

    def training(name: str, cost: float) -> Stage:
        cfg = configs[name]
        epochs = cfg.train_cfg.max_epochs
        return Stage(
            f'train {name}',
            _train_work(cfg, data['num_train'], data['num_val'], cost),
            f'{epochs} epoch{"s" if epochs != 1 else ""}')

    stages = [
        training('MoPro', MOPRO_TRAIN_COST),
        Stage('noise cleaning', data['num_train'] * FORWARD_COST,
              f'{data["num_train"]} images')
    ]
    if 'cross-entropy' in configs:
        stages.append(training('cross-entropy', CE_TRAIN_COST))
    return stages


def _plan(stages: List[Stage], data: dict, work_dir: str, out_dir: str) -> str:
    """The one-line plan of the job."""
    steps = ', '.join(f'{i}/{len(stages)} {stage.name} ({stage.size})'
                      for i, stage in enumerate(stages, start=1))
    return (f'MoPro demo: {steps} | data: {data["num_train"]} noisy '
            f'digits ({data["flipped"]} flipped, {data["ood"]} OOD) | runs '
            f'and logs: {work_dir}/ | report: {out_dir}/')


def _write_report(results: dict, out_dir: str) -> None:
    """The accuracy curves of the models trained so far, then the results
    and the markdown report."""
    results['pictures']['accuracy_curves'] = osp.basename(
        save_accuracy_picture(results, out_dir))
    write_results(results, out_dir)


def machine() -> dict:
    """What the job's times and its results' last bits depend on: the
    cores, the instruction set of torch's CPU kernels and torch's
    version."""
    return dict(cores=os.cpu_count(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                torch=torch.__version__)


def run_demo(mopro_config: str, ce_config: str,
             work_dir: str = 'work_dirs/demo', out_dir: str = 'results/demo',
             data_root: str = 'data/demo_webvision', seed: int = 0,
             epochs: Optional[int] = None, skip_ce: bool = False,
             cfg_options: Optional[dict] = None,
             stream: TextIO = sys.stdout) -> dict:
    """Run the demo (see the module docstring); return its results (the
    content of ``demo_results.json``)."""
    start = time.perf_counter()
    for folder, what in ((work_dir, 'work dir'), (out_dir, 'output folder'),
                         (osp.dirname(osp.abspath(data_root)), 'data folder')):
        check_output_dir(folder, what=what)
    # the demo's own log messages: none on the console (Runners log to
    # their files)
    MMLogger.get_instance('mopro_demo', log_level='WARNING')
    configs = {
        'MoPro':
        demo_config(mopro_config, data_root, osp.join(work_dir, 'mopro'), seed,
                    epochs, cfg_options)
    }
    if not skip_ce:
        configs['cross-entropy'] = demo_config(ce_config, data_root,
                                               osp.join(work_dir, 'ce'), seed,
                                               epochs, cfg_options)
    data = _dataset(data_root, seed, stream)
    progress = JobProgress(_stages(configs, data), stream)
    progress.message(_plan(progress.stages, data, work_dir, out_dir))
    results = dict(
        dataset={
            k: data[k]
            for k in ('num_train', 'num_val', 'clean', 'flipped', 'ood')
        }, epochs=configs['MoPro'].train_cfg.max_epochs, seed=seed,
        machine=machine())

    progress.start_stage('building the Runner')
    runner, results['mopro'] = train(configs['MoPro'], progress,
                                     MOPRO_TRAIN_COST)
    results['mopro'].update(label='MoPro', config=osp.basename(mopro_config))
    progress.end_stage()
    progress.start_stage(f'0/{data["num_train"]} images')
    results['noise_cleaning'], pictures = clean(runner, configs['MoPro'],
                                                data_root, out_dir, progress,
                                                seed)
    progress.end_stage()
    results['pictures'] = pictures
    results['job_seconds'] = round(time.perf_counter() - start, 1)
    _write_report(results, out_dir)  # MoPro's part, should CE fail
    if not skip_ce:
        progress.start_stage('building the Runner')
        _, results['ce'] = train(configs['cross-entropy'], progress,
                                 CE_TRAIN_COST)
        results['ce'].update(label='cross-entropy',
                             config=osp.basename(ce_config))
        progress.end_stage()
        results['job_seconds'] = round(time.perf_counter() - start, 1)
        _write_report(results, out_dir)
    progress.message('\n' + markdown(results))
    progress.message(f'report: {osp.join(out_dir, "demo_results.md")} and '
                     f'{", ".join(sorted(pictures.values()))}; run logs: '
                     f'{work_dir}/*/<timestamp>/<timestamp>.log')
    return results
