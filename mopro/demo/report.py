"""The demo's report: ``demo_results.json``, ``demo_results.md`` and the
accuracy-curve picture, from the results :func:`mopro.demo.run_demo`
collects."""
import os.path as osp
from typing import Optional

from ..utils.fileio import write_json, write_text
from ..visualization import save_accuracy_curves

RESULTS_JSON = 'demo_results.json'
RESULTS_MD = 'demo_results.md'
ACCURACY_PNG = 'accuracy_curves.png'
MODELS = ('mopro', 'ce')  # the table's and the chart's order


def _pct(value: Optional[float]) -> str:
    return '-' if value is None else f'{100 * value:.1f}%'


def _machine(results: dict) -> str:
    machine, threads = results['machine'], results['mopro']['threads']
    return (f'{machine["cores"]} cores ({machine["cpu_capability"]}), '
            f'{threads} intra-op thread{"s" if threads != 1 else ""}, '
            f'torch {machine["torch"]}')


def _models_table(results: dict) -> list:
    lines = [
        '| model | clean test top-1 | best top-1 (epoch) | training '
        'time |', '|---|---|---|---|'
    ]
    for name in MODELS:
        if name in results:
            r = results[name]
            best = max(zip(r['curve']['top1'], r['curve']['epochs']))
            lines.append(f'| {r["label"]} | {r["top1"]:.2f}% | '
                         f'{best[0]:.2f}% ({best[1]}) | '
                         f'{r["train_seconds"] / 60:.1f} min |')
    return lines


def _cleaning_table(q: dict) -> list:
    return [
        '| metric | value |',
        '|---|---|',
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


def markdown(results: dict) -> str:
    """The report as markdown; pictures linked by their file names (they
    lie beside ``demo_results.md``)."""
    data, q = results['dataset'], results['noise_cleaning']
    pictures = results.get('pictures', {})
    lines = [
        '# MoPro demo: noisy digits (CPU)',
        '',
        f'Training set: {data["num_train"]} images ({data["clean"]} clean, '
        f'{data["flipped"]} flipped labels, {data["ood"]} OOD digits 8/9); '
        f'clean test set: {data["num_val"]} images of digits 0-7; '
        f'{results["epochs"]} epochs, ResNet-18, 32 px.',
        '',
        *_models_table(results),
        '',
        f'The whole job took {results["job_seconds"] / 60:.1f} min on '
        f'{_machine(results)}.',
        '',
    ]
    if 'accuracy_curves' in pictures:
        lines += [
            f'![clean test accuracy over epochs]'
            f'({pictures["accuracy_curves"]})', ''
        ]
    lines += [
        'Noise correction of the final MoPro model over the training set '
        '(paper eq. 4-5): '
        f'{q["num_relabelled"]} images relabelled, {q["num_declared_ood"]} '
        'declared out-of-distribution.', '', *_cleaning_table(q)
    ]
    captions = (('relabelled_samples', 'relabelled samples, original '
                 '\u2192 corrected label (green: the true digit)'),
                ('ood_samples', 'samples declared out-of-distribution, '
                 'with their web label (green: truly an 8 or 9)'),
                ('class_changes', 'per class: images relabelled away, '
                 'declared OOD, relabelled into'))
    for key, caption in captions:
        if key in pictures:
            lines += ['', f'![{caption}]({pictures[key]})']
    return '\n'.join(lines) + '\n'


def save_accuracy_picture(results: dict, out_dir: str) -> str:
    """The models' clean test accuracy over epochs (their logged
    validation results) as ``accuracy_curves.png``; return its path."""
    curves = {
        results[name]['label']:
        (results[name]['curve']['epochs'], results[name]['curve']['top1'])
        for name in MODELS if name in results
    }
    return save_accuracy_curves(curves, osp.join(out_dir, ACCURACY_PNG),
                                'clean test accuracy, noisy training labels')


def write_results(results: dict, out_dir: str) -> None:
    """``demo_results.json`` and ``demo_results.md`` (atomic writes)."""
    write_json(osp.join(out_dir, RESULTS_JSON), results)
    write_text(osp.join(out_dir, RESULTS_MD), markdown(results))
