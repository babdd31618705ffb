"""After pretraining over shards: noise cleaning writes its pseudo-labels
by record key, and the cleaned-label config trains on them over the same
shards (docs/shards.md)."""
import glob
import json
import multiprocessing
import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader

import mopro.apis.noise_cleaning as cleaning_api
from mopro.datasets.shards import read_records
from helpers import ROOT
from helpers.configs import (tiny_mopro_options, tool_config,
                             untrained_checkpoint)
from helpers.data import make_webvision
from helpers.shards import clean_as_rank, make_shards

CONFIG = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')
CRT = osp.join(ROOT, 'configs', 'crt_r50_webvision_v1.py')
K = 4
# an untrained classifier, scaled up: confident, image-dependent
# predictions, so that some images keep their label, some are relabelled
# and some are declared OOD
CLEANING = {'model.alpha': 1.0, 'model.threshold': 0.5}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('clean_shards')
    root = make_webvision(str(tmp / 'webvision'), num_classes=K, per_class=10)
    # 40 records in shards of 6: the last one short
    shards = make_shards(root, str(tmp / 'shards'), num_classes=K,
                         shard_records=6)
    options = tiny_mopro_options(root, str(tmp / 'unused'), K)
    torch.manual_seed(0)
    ckpt = untrained_checkpoint(CONFIG, options, str(tmp / 'mopro.pth'))
    state = torch.load(ckpt)
    state['state_dict']['classifier.weight'] *= 50
    torch.save(state, ckpt)
    return root, shards, ckpt, tmp


def record_paths(shards: str) -> dict:
    """``{relative path: (shard, record key)}`` from the records' json."""
    where = {}
    for tar in sorted(glob.glob(osp.join(shards, '*.tar'))):
        with open(tar, 'rb') as f:
            for record in read_records(f, tar):
                where[record.meta['path']] = (osp.basename(tar), record.key)
    return where


@pytest.fixture(scope='module')
def cleaned(data, tmp_path_factory):
    """The cleaning of the lists and of the shards, with one checkpoint:
    (summary, --out, work dir) of each."""
    root, shards, ckpt, _ = data
    tmp = tmp_path_factory.mktemp('outputs')
    results = {}
    for fmt, extra, workers in (('lists', {}, 0),
                                ('shards',
                                 dict(data_format='shards',
                                      shard_root=shards), 2)):
        work = str(tmp / f'{fmt}_work')
        options = tiny_mopro_options(root, work, K)
        options.update(CLEANING, **extra)
        out = str(tmp / f'{fmt}.json')
        # batches of 3 across 2 workers: a worker's block ends inside a
        # shard and the last batch is short
        summary = cleaning_api.clean_noisy_dataset(
            tool_config(CONFIG, options, work_dir=work), ckpt, out,
            batch_size=3, num_workers=workers, device='cpu')
        with open(out) as f:
            results[fmt] = summary, json.load(f), work
    return results


def test_cleaning_over_shards_equals_cleaning_over_lists(data, cleaned):
    root, shards, _, _ = data
    list_summary, by_path, _ = cleaned['lists']
    shard_summary, by_shard, _ = cleaned['shards']
    total = list_summary['total']
    # the pass is not trivial: images kept, relabelled and declared OOD
    assert total['kept'] and total['relabelled'] and total['ood'], total
    assert shard_summary == list_summary
    where = record_paths(shards)
    assert len(where) == total['images'] == 40
    # the same pseudo-label for every kept image, by record key, in the
    # shard that holds the record
    expected = {}
    for path, label in by_path.items():
        shard, key = where[path]
        expected.setdefault(shard, {})[key] = label
    assert by_shard == dict(shards=expected)


def test_report_shows_shard_images(cleaned):
    # the sample grids draw the records' images from the shards
    summary, _, work = cleaned['shards']
    assert summary['total']['ood'] and summary['total']['relabelled']
    for name in ('ood_samples', 'relabelled_samples', 'class_changes'):
        assert osp.getsize(osp.join(work, f'{name}.png')) > 1000


@pytest.mark.slow
def test_three_processes_gather_the_same_cleaning(data, cleaned, tmp_path):
    # 40 records on 3 processes: shares of 14, 13 and 13 records, the last
    # two repeating their last record once; rank 0 writes what one
    # process writes
    root, shards, ckpt, _ = data
    options = tiny_mopro_options(root, str(tmp_path / 'work'), K)
    options.update(CLEANING, data_format='shards', shard_root=shards)
    out = str(tmp_path / 'pseudo_label.json')
    ctx = multiprocessing.get_context('spawn')
    procs = [
        ctx.Process(
            target=clean_as_rank,
            args=(rank, 3, str(tmp_path / 'init'), CONFIG, options, ckpt, out))
        for rank in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    summary, by_shard, _ = cleaned['shards']
    with open(out) as f:
        assert json.load(f) == by_shard
    with open(osp.join(options['work_dir'],
                       'noise_cleaning_summary.json')) as f:
        written = json.load(f)
    assert written['total'] == summary['total']
    assert written['per_class'] == summary['per_class']


def crt_train_set(root, shards, labels, **dataset):
    """The train set of the cRT config over shards, as train.py builds it
    (``--cfg-options data_format=shards ...pseudo_label_file=``)."""
    options = {
        'data_root': root,
        'num_classes': K,
        'data_format': 'shards',
        'shard_root': shards,
        'train_dataloader.dataset.pseudo_label_file': labels,
        'train_dataloader.dataset.pipeline.1.scale': 32,
        'train_dataloader.batch_size': dataset.pop('batch_size'),
        'test_dataloader': None,
        'test_evaluator': None,
        'test_cfg': None,
        'val_evaluator.topk': (1, ),
        'work_dir': '/tmp/unused',
    }
    options.update({
        f'train_dataloader.dataset.{k}': v
        for k, v in dataset.items()
    })
    cfg = tool_config(CRT, options)
    init_default_scope('mmpretrain')
    return cfg.train_dataloader, DATASETS.build(cfg.train_dataloader.dataset)


def keys_and_labels(batch: list) -> list:
    """(record key, label) of each packed sample (a collate function)."""
    return [(s['data_samples'].img_path.split(':', 1)[1],
             int(s['data_samples'].gt_label)) for s in batch]


def read_epoch(dataset, batch_size, workers, epoch=0):
    dataset.set_epoch(epoch, seed=7)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=keys_and_labels,
                        multiprocessing_context='fork' if workers else None)
    return [pair for batch in loader for pair in batch]


def test_training_reads_exactly_the_kept_records(data, cleaned,
                                                 tmp_path_factory):
    root, shards, _, _ = data
    _, by_shard, _ = cleaned['shards']
    kept = {
        k: v
        for labels in by_shard['shards'].values()
        for k, v in labels.items()
    }
    labels = str(tmp_path_factory.mktemp('crt') / 'pseudo_label.json')
    with open(labels, 'w') as f:
        json.dump(by_shard, f)
    # one stream, batches of 1: an epoch is every kept record once
    loader, dataset = crt_train_set(root, shards, labels, batch_size=1,
                                    streams=1, shuffle_buffer=4)
    assert loader.sampler is None and dataset.pseudo_label_file == labels
    assert len(dataset) == len(kept) < 40
    read = read_epoch(dataset, 1, 1)
    assert len(read) == len(kept)
    assert dict(read) == kept
    # two streams of batches of 2 over 2 workers: each stream the same
    # whole number of batches of kept records, with their cleaned labels
    _, dataset = crt_train_set(root, shards, labels, batch_size=2, streams=2)
    quota = len(kept) // 2 - len(kept) // 2 % 2
    read = read_epoch(dataset, 2, 2, epoch=1)
    assert len(read) == len(dataset) == 2 * quota
    assert len(set(read)) == len(read)
    assert all(kept[key] == label for key, label in read)


def test_cleaned_labels_of_other_shards_are_an_error(data, tmp_path):
    root, shards, _, _ = data
    labels = str(tmp_path / 'pseudo_label.json')
    with open(labels, 'w') as f:
        json.dump(
            dict(shards={'other-000000.tar': {
                'google-000000000': 1
            }}), f)
    with pytest.raises(Exception, match='other-000000.tar.* is not in '):
        crt_train_set(root, shards, labels, batch_size=1)
