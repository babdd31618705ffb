"""The momentum encoder's shuffle across ranks (MoCo's shuffling BN) by one
all-to-all each way, against the gather version of the released code.

On 2 and 4 gloo processes (CPU, loopback): for the same permutation, every
rank encodes the same BatchNorm batch as with the gather version (MoCo's
``batch_shuffle_ddp`` and ``batch_unshuffle_ddp``, as mmpretrain ships
them) and gets the same keys back; the permutation is drawn from the seed
and the Runner's iteration; whole training steps make no host read; and
the bytes a rank sends and receives stay within its own batch while the
gather version's grow with the ranks. The exchange plan itself is checked
on the host for more world sizes.
"""
import datetime
import sys
from unittest import mock

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp

import mopro  # noqa: F401  (registers the components)
from mopro.analysis.collectives import CollectiveLog, by_role
from mopro.models.utils.shuffle import (_device_indices, shuffle_permutation,
                                        shuffle_plan, step_shuffle)
from helpers.commands import free_port
from helpers.host_reads import HostReads
from helpers.models import SIZE, D, K, build, random_prototypes

BATCH = 4  # per rank
SEED = 3  # of the host-only checks
WORLD_SIZES = (2, 4)


# ----------------------------------------------------------------------
# the exchange plan, on the host
def _exchange(world, batch, perm):
    """Carry out the plans of every rank on lists, as all_to_all_single
    moves rows: each rank's share of the shuffled batch (global image
    ids), then the ids sent back to the ranks they came from."""
    plans = [shuffle_plan(perm, world, rank) for rank in range(world)]
    ids = [np.arange(r * batch, (r + 1) * batch) for r in range(world)]

    def all_to_all(rows, order, send, receive):
        chunks = []
        for rank in range(world):
            sent = rows[rank][order[rank]]
            bounds = np.cumsum([0] + send[rank])
            chunks.append(
                [sent[bounds[k]:bounds[k + 1]] for k in range(world)])
        incoming = [
            np.concatenate([chunks[src][dst] for src in range(world)])
            for dst in range(world)
        ]
        for dst in range(world):
            assert [len(chunks[src][dst])
                    for src in range(world)] == receive[dst]
        return incoming

    incoming = all_to_all(ids, [p.send_order for p in plans],
                          [p.send_splits for p in plans],
                          [p.recv_splits for p in plans])
    shares = [incoming[r][plans[r].recv_order] for r in range(world)]
    returned = all_to_all(shares, [p.return_order for p in plans],
                          [p.recv_splits for p in plans],
                          [p.send_splits for p in plans])
    restored = [returned[r][plans[r].restore_order] for r in range(world)]
    return shares, restored, ids


@pytest.mark.parametrize('world,batch', [(1, 3), (2, 4), (3, 5), (5, 2),
                                         (8, 6)])
def test_plan_gives_each_rank_its_slice_of_the_permuted_batch(world, batch):
    for step in range(3):
        perm = shuffle_permutation(world * batch, SEED, step)
        shares, restored, ids = _exchange(world, batch, perm)
        for rank in range(world):
            # the gather version's share: gathered[perm[rank's slice]]
            assert np.array_equal(shares[rank],
                                  perm[rank * batch:(rank + 1) * batch])
            assert np.array_equal(restored[rank], ids[rank])


def test_permutation_depends_on_seed_and_step_only():
    first = shuffle_permutation(64, SEED, 5)
    assert np.array_equal(np.sort(first), np.arange(64))
    assert np.array_equal(first, shuffle_permutation(64, SEED, 5))
    assert not np.array_equal(first, shuffle_permutation(64, SEED, 6))
    assert not np.array_equal(first, shuffle_permutation(64, SEED + 1, 5))


@pytest.mark.gpu
def test_plan_reaches_the_gpu_without_a_host_sync():
    # the index tensors go through pinned memory, without blocking: CUDA's
    # sync debug mode raises on a synchronizing copy
    plan = shuffle_plan(shuffle_permutation(16, SEED, 0), 2, 1)
    rows = torch.arange(8, device='cuda').float()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        send_order, recv_order = _device_indices(
            [plan.send_order, plan.recv_order], torch.device('cuda'))
        sent = rows.index_select(0, send_order)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert sent.cpu().tolist() == plan.send_order.tolist()
    assert recv_order.cpu().tolist() == plan.recv_order.tolist()


# ----------------------------------------------------------------------
# on gloo processes
def gather_keys(model, inputs, perm):
    """The released code's momentum forward (MoCo's gather version, as
    mmpretrain ships it), ``perm`` as its permutation; and the batch its
    momentum encoder saw."""
    with mock.patch.object(torch, 'randperm',
                           lambda n: torch.from_numpy(perm).clone()):
        shuffled, restore = batch_shuffle_ddp(inputs)
    feats = model.neck(model.momentum_backbone(shuffled))[-1]
    keys = F.normalize(model.momentum_projector(feats).float(), dim=1)
    return batch_unshuffle_ddp(keys, restore), shuffled


def all_to_all_keys(model, inputs):
    """MoPro's momentum forward, and the batch its momentum encoder saw."""
    seen = []
    handle = model.momentum_backbone.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].clone()))
    keys = model.momentum_encode(inputs)
    handle.remove()
    return keys, seen[0]


def _bn_stats(model):
    return [
        buf.clone() for name, buf in model.momentum_backbone.named_buffers()
        if 'running' in name
    ]


def _compare_keys(rank, world):
    """The first step's keys and BatchNorm batch, both versions."""
    model = build(seed=0, phase='clean')
    gen = torch.Generator().manual_seed(0)
    views = torch.randn(world * BATCH, 3, SIZE, SIZE, generator=gen)
    mine = views[rank * BATCH:(rank + 1) * BATCH]
    perm = shuffle_permutation(world * BATCH, torch.initial_seed(), 0)
    new, ref = build(seed=0, phase='clean'), build(seed=0, phase='clean')
    new.load_state_dict(model.state_dict())
    ref.load_state_dict(model.state_dict())
    keys, batch = all_to_all_keys(new, mine)
    ref_keys, ref_batch = gather_keys(ref, mine, perm)
    local = F.normalize(
        model.momentum_projector(
            model.neck(model.momentum_backbone(mine))[-1]), dim=1)
    plan = shuffle_plan(perm, world, rank)
    return dict(
        keys=keys, ref_keys=ref_keys, batch=batch, ref_batch=ref_batch,
        stats=_bn_stats(new), ref_stats=_bn_stats(ref), unshuffled_keys=local,
        own_images=mine,
        expected_batch=views[perm[rank * BATCH:(rank + 1) * BATCH]],
        received_from_others=sum(plan.recv_splits) - plan.recv_splits[rank])


def _runner_iteration_plan(rank, world):
    """The plan step_shuffle makes at the Runner's iteration 7, and the one
    of the permutation (seed, 7)."""
    hub = MessageHub.get_current_instance()
    hub.update_info('loop_stage', 'train')
    hub.update_info('iter', 7)
    try:
        plan = step_shuffle(torch.zeros(BATCH, 1), calls=0).plan
    finally:
        hub.update_info('loop_stage', None)
    expected = shuffle_plan(
        shuffle_permutation(world * BATCH, torch.initial_seed(), 7), world,
        rank)
    return plan, expected


def _host_reads_of_steps():
    """Operators that would make a GPU wait, in whole training steps with
    the shuffle (and the queue's, prototypes' and flag's collectives)."""
    model = build(seed=0, phase='clean', queue_len=32)
    model.prototypes.copy_(random_prototypes())
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    gen = torch.Generator().manual_seed(dist.get_rank())
    batches = [
        dict(
            inputs=[
                torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), generator=gen,
                              dtype=torch.uint8) for _ in range(2)
            ], data_samples=torch.arange(BATCH) % K) for _ in range(2)
    ]
    with CollectiveLog() as log, HostReads() as reads:
        for data in batches:
            model.train_step(data, optim_wrapper)
    return reads.seen, by_role(log.take(), len(batches))


def _shuffle_bytes(steps=3):
    """Sent and received bytes per step of the shuffle of BATCH images of
    3 x 64 x 64 and the return of their keys: this project's all-to-all
    and the gather version."""
    gen = torch.Generator().manual_seed(dist.get_rank())
    images = torch.randn(BATCH, 3, 64, 64, generator=gen)
    keys = torch.randn(BATCH, D, generator=gen)
    with CollectiveLog() as log:
        for step in range(steps):
            shuffle = step_shuffle(images, step)
            shuffle.shuffle(images)
            shuffle.unshuffle(keys)
        new = by_role(log.take(), steps)
        for _ in range(steps):
            _, restore = batch_shuffle_ddp(images)
            batch_unshuffle_ddp(keys, restore)
        gather = by_role(log.take(), steps)
    payload = (images.numel() + keys.numel()) * 4
    return dict(new=new, gather=gather, payload=payload)


def _worker(rank, world, port, out_path):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        # build() seeds torch alike on every rank, as the Runner does
        results = dict(
            keys=_compare_keys(rank, world),
            iteration=_runner_iteration_plan(rank, world),
            host_reads=_host_reads_of_steps(), bytes=_shuffle_bytes())
        torch.save(results, out_path.format(rank))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    """Every rank's results, per world size."""
    tmp = tmp_path_factory.mktemp('shuffle')
    results = {}
    for world in WORLD_SIZES:
        out_path = str(tmp / f'w{world}_rank{{}}.pth')
        mp.spawn(_worker, args=(world, free_port(), out_path), nprocs=world,
                 join=True)
        results[world] = [
            torch.load(out_path.format(r), weights_only=False)
            for r in range(world)
        ]
    return results


pytestmark = pytest.mark.skipif(sys.platform != 'linux',
                                reason='gloo processes, /proc counters')


@pytest.mark.slow
@pytest.mark.parametrize('world', WORLD_SIZES)
def test_all_to_all_gives_the_gather_versions_batches_and_keys(ranks, world):
    for rank in ranks[world]:
        keys = rank['keys']
        # the same BatchNorm batch, image for image: the permuted slice
        assert torch.equal(keys['batch'], keys['ref_batch'])
        assert torch.equal(keys['batch'], keys['expected_batch'])
        assert torch.equal(keys['keys'], keys['ref_keys'])
        for new, ref in zip(keys['stats'], keys['ref_stats']):
            assert torch.equal(new, ref)
        # not a trivial pass: images came from other ranks, and BatchNorm
        # over the shuffled batch gives other keys than over the own one
        assert keys['received_from_others'] > 0
        assert not torch.equal(keys['batch'], keys['own_images'])
        assert not torch.allclose(keys['keys'], keys['unshuffled_keys'],
                                  atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize('world', WORLD_SIZES)
def test_permutation_follows_the_runners_iteration(ranks, world):
    for rank in ranks[world]:
        plan, expected = rank['iteration']
        assert plan.send_splits == expected.send_splits
        assert plan.recv_splits == expected.recv_splits
        for key in ('send_order', 'recv_order', 'return_order',
                    'restore_order'):
            assert np.array_equal(getattr(plan, key), getattr(expected, key))


@pytest.mark.slow
@pytest.mark.parametrize('world', WORLD_SIZES)
def test_shuffled_training_steps_make_no_host_reads(ranks, world):
    for rank in ranks[world]:
        seen, collectives = rank['host_reads']
        assert seen == []
        # the steps did shuffle, and gather, and reduce the finite flag
        assert collectives['shuffle_images']['ops'] == ['all_to_all_single']
        assert collectives['shuffle_images']['calls'] == 1
        assert set(collectives) == {
            'shuffle_images', 'shuffle_keys', 'queue_keys', 'prototype_update',
            'nonfinite_flag'
        }


def _sent_and_received(entries):
    return sum(e['sent_bytes'] + e['received_bytes'] for e in entries)


@pytest.mark.slow
def test_shuffle_bytes_stay_within_a_batch_while_the_gathers_grow(ranks):
    """Per rank and step: the all-to-all sends and receives at most the
    rank's own images and keys (plus gloo's headers), at 2 and at 4
    processes alike; the gather version receives the other ranks' images
    and keys, (W - 1) times a rank's batch."""
    for world in WORLD_SIZES:
        for rank in ranks[world]:
            new, gather = rank['bytes']['new'], rank['bytes']['gather']
            payload = rank['bytes']['payload']
            assert set(new) == {'shuffle_images', 'shuffle_keys'}
            assert sum(e['sent_bytes'] for e in new.values()) <= \
                payload * 1.01
            assert sum(e['received_bytes'] for e in new.values()) <= \
                payload * 1.01
            received = sum(e['received_bytes'] for e in gather.values())
            assert received >= (world - 1) * payload
    gather = {
        world:
        np.mean([
            _sent_and_received(rank['bytes']['gather'].values())
            for rank in ranks[world]
        ])
        for world in WORLD_SIZES
    }
    assert gather[4] > 2.5 * gather[2]
