"""Per-sample augmentation seeds: the training views are a function of the
seed, the epoch and the sample's position, not of the dataloader workers."""
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from helpers import ROOT
from helpers.configs import tiny_mopro_options

V1 = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _train_loader_cfg(webvision_root, tmp_path, **loader):
    cfg = Config.fromfile(V1)
    cfg.merge_from_dict(tiny_mopro_options(webvision_root, str(tmp_path)))
    cfg.train_dataloader.update(loader)
    # DataSamples (not multiview_collate's label tensor): the sample index
    # keys the views below
    cfg.train_dataloader.collate_fn = dict(type='default_collate')
    return cfg.train_dataloader


def _views_of_two_epochs(loader_cfg) -> dict:
    """{(epoch, sample index): (weak view, strong view)} of epochs 0 and 1,
    the epoch set as mmengine's DistSamplerSeedHook sets it."""
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    views = {}
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            weak, strong = batch['inputs']
            for i, sample in enumerate(batch['data_samples']):
                views[epoch, sample.sample_idx] = (weak[i], strong[i])
    return views


def _rng_states():
    return (random.getstate(), np.random.get_state()[1].copy(),
            torch.get_rng_state())


def _assert_same_rng_states(before, after) -> None:
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])


def test_views_do_not_depend_on_the_workers(webvision_root, tmp_path):
    """The v1 config's training loader (random crops, flips, jitter), epochs
    0 and 1: loading in the process, with 2 persistent workers and with 3
    non-persistent ones gives the same views, to the bit; an epoch's views
    differ from the other epoch's; loading in the process leaves python's
    and numpy's global RNGs as they were (torch's DataLoader draws a base
    seed from torch's)."""
    before = _rng_states()
    in_process = _views_of_two_epochs(
        _train_loader_cfg(webvision_root, tmp_path, num_workers=0,
                          persistent_workers=False))
    after = _rng_states()
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])

    persistent = _views_of_two_epochs(
        _train_loader_cfg(webvision_root, tmp_path, num_workers=2,
                          persistent_workers=True))
    three = _views_of_two_epochs(
        _train_loader_cfg(webvision_root, tmp_path, num_workers=3,
                          persistent_workers=False))
    assert len(in_process) == 2 * 32
    for other in (persistent, three):
        assert other.keys() == in_process.keys()
        for key, (weak, strong) in in_process.items():
            assert torch.equal(other[key][0], weak), key
            assert torch.equal(other[key][1], strong), key
    for idx in range(32):
        assert not torch.equal(in_process[0, idx][0], in_process[1, idx][0])
        assert not torch.equal(in_process[0, idx][1], in_process[1, idx][1])


def test_refetch_of_a_bad_image_is_deterministic(webvision_root, tmp_path):
    """An undecodable image is replaced by a sample drawn from the seeded
    RNGs: the same replacement and views whatever the caller's RNG state."""
    from mopro.datasets.seeding import SeededIndex
    open(osp.join(webvision_root, 'google/q0000/001.jpg'), 'wb').close()
    loader_cfg = _train_loader_cfg(webvision_root, tmp_path)
    dataset = Runner.build_dataloader(loader_cfg, seed=0).dataset
    bad = next(
        i for i in range(len(dataset)) if dataset.get_data_info(i)
        ['img_path'].endswith('google/q0000/001.jpg'))
    results = []
    for caller_seed in (1, 2):
        random.seed(caller_seed)
        np.random.seed(caller_seed)
        torch.manual_seed(caller_seed)
        results.append(dataset[SeededIndex(bad, (0, 3, 5))])
    first, second = results
    assert first['data_samples'].sample_idx != bad  # replaced
    assert first['data_samples'].img_path == second['data_samples'].img_path
    for view_a, view_b in zip(first['inputs'], second['inputs']):
        assert torch.equal(view_a, view_b)
    assert dataset.num_bad == 2


def test_resumable_sampler_keys_are_positions_over_ranks(monkeypatch):
    """mmengine's DefaultSampler order; each index carries (seed, epoch,
    position in the epoch's order over all ranks)."""
    import mmengine.dataset.sampler as mmengine_sampler
    from mmengine.dataset import DefaultSampler

    from mopro.datasets.samplers import ResumableSampler
    dataset = list(range(11))
    keys, indices = {}, {}
    for rank in (0, 1):
        monkeypatch.setattr(mmengine_sampler, 'get_dist_info',
                            lambda rank=rank: (rank, 2))
        sampler = ResumableSampler(dataset, shuffle=True, seed=7)
        default = DefaultSampler(dataset, shuffle=True, seed=7)
        sampler.set_epoch(3)
        default.set_epoch(3)
        drawn = list(sampler)
        assert drawn == list(default)
        keys[rank] = [index.rng_key for index in drawn]
        indices[rank] = drawn
    positions = sorted(k[2] for rank in (0, 1) for k in keys[rank])
    assert positions == list(range(12))  # 11 padded to 2 x 6
    assert all(k[:2] == (7, 3) for rank in (0, 1) for k in keys[rank])
    assert [k[2] for k in keys[1]] == [1, 3, 5, 7, 9, 11]


def test_sqrt_sampler_gives_each_draw_its_own_key():
    from mopro.datasets.samplers import SqrtBalancedSampler

    class Labelled:

        def __len__(self):
            return 6

        def get_gt_labels(self):
            return np.array([0, 0, 0, 0, 1, 1])

    sampler = SqrtBalancedSampler(Labelled(), seed=1, num_samples=40)
    sampler.set_epoch(2)
    drawn = list(sampler)
    assert [int(i) for i in drawn] == sampler.draw(2).tolist()
    assert [i.rng_key for i in drawn] == [(1, 2, p) for p in range(40)]


@pytest.mark.parametrize('in_worker', [False, True])
def test_seeded_rngs_seed_the_pipeline_rngs(in_worker, monkeypatch):
    """python's random, numpy's global RNG and torch's default generator
    draw the same under the same key, differently under another; in the
    main process their states are restored afterwards, in a worker they
    are left seeded."""
    import mopro.datasets.seeding as seeding
    if in_worker:
        monkeypatch.setattr(seeding, 'get_worker_info', lambda: object())
    before = _rng_states()

    def draw(key):
        with seeding.seeded_rngs(key):
            return (random.random(), np.random.randint(1 << 30),
                    torch.rand(1).item())

    first = draw((0, 1, 2))
    assert draw((0, 1, 2)) == first
    for other in ((0, 1, 3), (0, 2, 2), (1, 1, 2)):
        assert all(a != b for a, b in zip(draw(other), first)), other
    if not in_worker:
        _assert_same_rng_states(before, _rng_states())
    with seeding.seeded_rngs((0, 1, 2)):
        pass
    assert (random.random() == first[0]) == in_worker
