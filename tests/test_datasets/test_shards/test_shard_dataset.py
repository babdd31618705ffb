"""ShardDataset: an epoch over shards is the list's samples; ranks and
workers read disjoint records, as many batches each; cut shards, bad
images and commands in an index."""
import json
import multiprocessing
import os
import os.path as osp
import tarfile
from collections import Counter

import pytest
import torch

from mopro.datasets import CustomImageList, WebVision
from mopro.datasets.shards import ShardDataset, read_index
from mopro.utils.errors import ConfigError, DataError
from helpers.data import write_image
from helpers.log_records import log_messages
from helpers.shards import (evaluate_as_rank, make_shards, read_as_rank,
                            record_keys)

PIPELINE = [
    dict(type='LoadWebImage'),
    dict(type='PackInputs', meta_keys=['img_path'])
]


def own_data(root: str) -> str:
    lines = []
    for label, name in enumerate(['bird', 'cat', 'dog']):
        for i in range(5):
            write_image(
                osp.join(root, name, f'{i}.jpg'), 50 + 7 * label + i, 24)
            lines.append(f'{name}/{i}.jpg {label}')
    with open(osp.join(root, 'train.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(root, 'classes.txt'), 'w') as f:
        f.write('bird\ncat\ndog\n')
    return root


def views(samples):
    return Counter(
        (int(s['data_samples'].gt_label), s['inputs'].numpy().tobytes())
        for s in samples)


@pytest.mark.parametrize('kind', ['webvision', 'folder'])
def test_an_epoch_is_the_lists_samples(kind, tmp_path, webvision_root):
    if kind == 'webvision':
        root, classes = webvision_root, 4
        listed = WebVision(root, num_classes=4, pipeline=PIPELINE)
    else:
        root, classes = own_data(str(tmp_path / 'own')), 3
        listed = CustomImageList(root, num_classes=3, pipeline=PIPELINE)
    shards = make_shards(root, str(tmp_path / 'shards'), kind, classes)
    dataset = ShardDataset(shards, batch_size=1, streams=1,
                           num_classes=classes, pipeline=PIPELINE)
    dataset.set_epoch(0)
    samples = list(dataset)
    assert len(samples) == len(dataset) == len(listed)
    assert views(samples) == views(listed[i] for i in range(len(listed)))
    keys = [s['data_samples'].img_path.split(':')[1] for s in samples]
    assert len(set(keys)) == len(keys)
    if kind == 'folder':
        assert dataset.metainfo['classes'] == ['bird', 'cat', 'dog']


def test_epochs_differ_and_repeat_whatever_the_workers(tmp_path,
                                                       webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    dataset = ShardDataset(shards, batch_size=2, streams=2)
    with pytest.raises(ConfigError, match='ShardEpochHook'):
        next(iter(dataset))

    def epoch(n, workers):
        dataset.set_epoch(n, seed=1)
        loader = torch.utils.data.DataLoader(dataset, batch_size=2,
                                             num_workers=workers,
                                             collate_fn=record_keys)
        return [key for batch in loader for key in batch]

    first = epoch(0, 0)
    # 32 records in 2 streams of 16, a multiple of the batch: all read
    assert len(first) == len(set(first)) == len(dataset) == 32
    assert epoch(0, 2) == first
    second = epoch(1, 0)
    assert second != first and sorted(second) == sorted(first)
    # persistent workers see the epoch set in the main process
    persistent = torch.utils.data.DataLoader(dataset, batch_size=2,
                                             num_workers=2,
                                             persistent_workers=True,
                                             collate_fn=record_keys)
    for n, expected in enumerate([first, second]):
        dataset.set_epoch(n, seed=1)
        assert [key for batch in persistent for key in batch] == expected


def test_gpu_data_path_gets_the_records_bytes(tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    dataset = ShardDataset(shards, batch_size=1, streams=1,
                           pipeline=[dict(type='LoadWebImageBytes')])
    dataset.set_epoch(0)
    index = read_index(osp.join(shards, 'train-index.json'))
    with tarfile.open(osp.join(shards, index.shards[0].name)) as tar:
        files = {
            m.name.split('.')[0]: tar.extractfile(m).read()
            for m in tar if m.name.endswith('.jpg')
        }
    seen = 0
    for sample in dataset:
        key = sample['record_key']
        if key in files:
            assert sample['img'].ndim == 1
            assert sample['img'].numpy().tobytes() == files[key]
            seen += 1
    assert seen == len(files) == 5


def test_two_processes_read_disjoint_records_as_many_batches(
        tmp_path, webvision_root):
    """31 records in 7 shards of 5 or fewer: 2 processes x 2
    streams x 2 workers; each process runs the same number of batches,
    with an all-reduce per batch, and the records they read are
    disjoint."""
    os.remove(osp.join(webvision_root, 'google/q0002/001.jpg'))
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    index = read_index(osp.join(shards, 'train-index.json'))
    # the undecodable image's shard holds 4
    assert [s.records for s in index.shards] == [5] * 5 + [4, 2]
    _run_ranks(read_as_rank, tmp_path, shards)
    ranks = [
        json.load(open(tmp_path / f'rank{rank}.json')) for rank in range(2)
    ]
    # 31 records in 4 ranges of 7 or 8: 6 each (a multiple of the batch)
    assert [r['steps'] for r in ranks] == [r['length'] for r in ranks] == \
        [6, 6]
    keys = [set(r['keys']) for r in ranks]
    assert len(keys[0]) == len(keys[1]) == 12
    assert not keys[0] & keys[1]


def _run_ranks(target, tmp_path, shards):
    ctx = multiprocessing.get_context('spawn')
    init = str(tmp_path / 'init')
    procs = [
        ctx.Process(target=target, args=(rank, 2, init, shards, str(tmp_path)))
        for rank in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
        assert proc.exitcode == 0


def test_two_processes_test_every_record_once(tmp_path, webvision_root):
    """Test mode on 2 processes x 2 workers, 31 records: gathered as
    mmengine's evaluators gather results, every record once."""
    os.remove(osp.join(webvision_root, 'google/q0002/001.jpg'))
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    _run_ranks(evaluate_as_rank, tmp_path, shards)
    result = json.load(open(tmp_path / 'collected.json'))
    everything = ShardDataset(shards, batch_size=2, test_mode=True)
    keys = [sample['record_key'] for sample in everything]
    assert len(keys) == 31 and len(result['rank0']) == 16
    assert sorted(result['collected']) == sorted(keys)


def _cut(path, size):
    with open(path, 'r+b') as f:
        f.truncate(size)


def test_a_cut_shard_is_an_error_naming_it(tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    index = read_index(osp.join(shards, 'train-index.json'))
    name = index.shards[2].name
    path = osp.join(shards, name)
    dataset = ShardDataset(shards, batch_size=1, streams=1, pipeline=PIPELINE)
    dataset.set_epoch(0)
    _cut(path, 3000)  # in the middle of the first image
    with pytest.raises(DataError, match=f'{name}: cut or corrupt tar'):
        list(dataset)
    # cut after two whole records (3 members of 512-byte blocks each)
    with tarfile.open(osp.join(tmp_path / 'shards', index.shards[3].name)) \
            as tar:
        members = tar.getmembers()
    _cut(path, 0)
    with open(osp.join(shards, index.shards[3].name), 'rb') as f:
        whole = f.read()
    end = members[5].offset_data + -(-members[5].size // 512) * 512
    with open(path, 'wb') as f:
        f.write(whole[:end])
    with pytest.raises(
            DataError, match=f'{name}: ends after 2 records, the index says '
            '5'):
        list(dataset)


def test_undecodable_records_are_skipped_and_counted(tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    index = read_index(osp.join(shards, 'train-index.json'))
    path = osp.join(shards, index.shards[0].name)
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    bad_key = members[0][0].name.split('.')[0]
    with tarfile.open(path, 'w', format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name == f'{bad_key}.jpg':
                data = data[:10]  # a JPEG header and nothing else
                member.size = len(data)
            tar.addfile(member, __import__('io').BytesIO(data))
    dataset = ShardDataset(shards, batch_size=1, streams=1, pipeline=PIPELINE)
    dataset.set_epoch(0)
    with log_messages() as messages:
        samples = list(dataset)
    # the quota is kept: a record read again takes the bad one's place
    assert len(samples) == 32 and dataset.num_bad == 1
    assert any(f'{index.shards[0].name}:{bad_key}' in m for m in messages)
    assert bad_key not in {s['data_samples'].img_path for s in samples}
    strict = ShardDataset(shards, batch_size=1, streams=1, test_mode=True,
                          pipeline=PIPELINE)
    with pytest.raises(OSError, match=bad_key):
        list(strict)


def test_an_index_naming_a_command_is_refused(tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    index_path = osp.join(shards, 'train-index.json')
    with open(index_path) as f:
        index = json.load(f)
    marker = tmp_path / 'ran'
    index['shards'][1]['name'] = f'pipe:touch {marker}'
    with open(index_path, 'w') as f:
        json.dump(index, f)
    with pytest.raises(DataError, match=r'shards\[1\]: shard name '
                       "'pipe:touch"):
        ShardDataset(shards, batch_size=1, streams=1)
    assert not marker.exists()


def test_a_pipe_url_from_the_config_reads_the_shards(tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    local = ShardDataset(shards, batch_size=2, streams=2)
    piped = ShardDataset(shards, batch_size=2, streams=2,
                         shard_url=f'pipe:cat {shards}/{{shard}}')
    for dataset in (local, piped):
        dataset.set_epoch(2)
    assert [s['record_key'] for s in piped] == \
        [s['record_key'] for s in local]
    failing = ShardDataset(shards, batch_size=2, streams=2,
                           shard_url='pipe:cat /nonexistent/{shard}')
    failing.set_epoch(0)
    with pytest.raises(DataError, match='cat /nonexistent/train-0000'):
        list(failing)


@pytest.mark.slow
def test_resume_over_shards_is_exact(tmp_path, webvision_root):
    """2 epochs straight with 2 persistent workers == 1 epoch, stop,
    --resume, 1 more, loading in the process: the v1 recipe (random views)
    reading shards through mmengine's Runner."""
    from mopro.checkpoint import load_checkpoint
    from helpers.training import train_v1
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    straight = train_v1(webvision_root, str(tmp_path / 'a'), 'straight', 2,
                        shard_root=shards, workers=2)
    train_v1(webvision_root, str(tmp_path / 'b'), 'first_half', 1,
             shard_root=shards)
    half = str(tmp_path / 'b' / 'epoch_1.pth')
    assert load_checkpoint(half)['meta']['epoch'] == 1
    resumed = train_v1(webvision_root, str(tmp_path / 'b'), 'second_half', 2,
                       resume=half, shard_root=shards)
    assert type(resumed.train_dataloader.dataset).__name__ == 'ShardDataset'
    assert resumed.epoch == straight.epoch == 2
    # 32 records, 8 streams of 4 a batch of 4: 8 iterations an epoch
    assert resumed.iter == straight.iter == 16
    state_a = straight.model.state_dict()
    state_b = resumed.model.state_dict()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0,
                                   msg=key)


def test_epoch_hook_sets_the_epoch_and_checks_the_batch(
        tmp_path, webvision_root):
    from types import SimpleNamespace

    from mopro.engine.hooks import ShardEpochHook
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    dataset = ShardDataset(shards, batch_size=2, streams=2)

    def runner(batch_size):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
        return SimpleNamespace(
            train_loop=SimpleNamespace(dataloader=loader), epoch=4, seed=9)

    with pytest.raises(
            ConfigError, match='batch_size=2 but '
            'train_dataloader.batch_size=4'):
        ShardEpochHook().before_train_epoch(runner(4))
    ShardEpochHook().before_train_epoch(runner(2))
    assert dataset._state[:2].tolist() == [4, 9]


@pytest.mark.slow
def test_gpu_data_path_over_shards_in_an_iteration_based_loop(
        tmp_path, webvision_root, monkeypatch):
    """configs/mopro_r50_webvision_v1_gpu_data.py (record bytes to the
    preprocessor, here on the CPU) over shards, 2 passes of an
    iteration-based loop: each pass reads every record once, the second
    in another order."""
    from mopro.config.data_format import use_shards
    from helpers.gpu_views import gpu_data_cfg, train_recording
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    cfg = gpu_data_cfg(webvision_root, str(tmp_path / 'work'), max_iters=16)
    # one checkpoint, at the end (one per iteration would be 2 GB)
    cfg.default_hooks.checkpoint.interval = 16
    use_shards(cfg, shards)
    seen, _ = train_recording(cfg, monkeypatch)
    # 32 records, 8 streams of 4, a batch of 4: 8 iterations a pass
    paths = [path for batch_paths, _, _ in seen for path in batch_paths]
    first, second = paths[:32], paths[32:]
    assert len(seen) == 16 and all(p.startswith('train-') for p in paths)
    assert len(set(first)) == 32 and sorted(first) == sorted(second)
    assert first != second


@pytest.mark.slow
def test_iteration_based_resume_over_shards_repeats_the_views(
        tmp_path, webvision_root, monkeypatch):
    """docs/shards.md: in an iteration-based loop mmengine resumes by
    replaying the iterations before the checkpoint. Resumed from iteration
    9 (the second pass over the shards), iteration 10 reads the records
    and makes the views of the uninterrupted run."""
    from mopro.config.data_format import use_shards
    from helpers.gpu_views import gpu_data_cfg, train_recording
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))

    def cfg_of(name):
        cfg = gpu_data_cfg(webvision_root, str(tmp_path / name), max_iters=10)
        cfg.default_hooks.checkpoint.interval = 9  # iter_9 and the last
        cfg.randomness = dict(seed=0, deterministic=True)
        use_shards(cfg, shards)
        return cfg

    full, _ = train_recording(cfg_of('full'), monkeypatch)
    cfg = cfg_of('resumed')
    cfg.resume, cfg.load_from = True, str(tmp_path / 'full' / 'iter_9.pth')
    resumed, _ = train_recording(cfg, monkeypatch)
    # 32 records, 8 streams of 4, a batch of 4: 8 iterations a pass
    assert len(full) == 10 and len(resumed) == 1
    assert resumed[0][0] == full[9][0]
    # the second pass's order: not what the first had at that position
    assert full[9][0] != full[1][0]
    for ours, theirs in zip(resumed[0][2], full[9][2]):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_test_mode_reads_every_record_once_whatever_the_workers(
        tmp_path, webvision_root):
    shards = make_shards(webvision_root, str(tmp_path / 'shards'))
    dataset = ShardDataset(shards, batch_size=3, test_mode=True)
    keys = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=3,
                                             num_workers=workers,
                                             collate_fn=record_keys)
        keys[workers] = [key for batch in loader for key in batch]
        assert len(loader) == 11
    assert len(dataset) == len(set(keys[0])) == len(keys[0]) == 32
    assert sorted(keys[2]) == sorted(keys[0])
