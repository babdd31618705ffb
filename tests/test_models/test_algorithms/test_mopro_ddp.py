"""Two-process (gloo, CPU, loopback) parity of MoPro's shared state.

Two ranks that each get one contiguous half of a global batch must end with
the same queue, queue pointer, prototypes and pseudo-labels as one process
fed the whole batch: keys, embeddings and pseudo-labels are all-gathered in
rank order before the queue and prototype updates (released ``model.py``).
BatchNorm would make per-rank batches differ from the global one, so the
backbone uses GroupNorm and ``shuffle_bn=False``. With GroupNorm the
cross-rank key shuffle must not change anything either, so the run is
repeated with ``shuffle_bn=True`` to check the shuffle/unshuffle order.
"""
import datetime
import inspect

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import mopro  # noqa: F401  (registers the components)
from helpers.commands import free_port
from helpers.configs import tiny_mopro_cfg
from helpers.mopro_reference import make_noisy

WORLD, K, B, R, D, SIZE, STEPS = 2, 4, 8, 24, 16, 32, 2


def build(shuffle_bn=False):
    torch.manual_seed(0)
    model = MODELS.build(
        tiny_mopro_cfg(
            backbone=dict(
                type='ResNet', depth=18, norm_cfg=dict(type='GN', num_groups=8,
                                                       requires_grad=True)),
            num_classes=K, embed_dim=D, proj_hidden_dim=32, queue_len=R,
            momentum=0.9, proto_momentum=0.8, shuffle_bn=shuffle_bn))
    model.train()
    model.use_proto_loss = model.correct_noise = True
    return model


def batches():
    gen = torch.Generator().manual_seed(123)
    return [[torch.randn(B, 3, SIZE, SIZE, generator=gen) for _ in '12']
            for _ in range(STEPS)]


def run_steps(model, inputs, labels, rank=0, world=1):
    """Run the iterations on this rank's slice; return the state."""
    pseudo = []
    original = model.head.loss
    signature = inspect.signature(original)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        pseudo.append(bound.arguments['pseudo_labels'].clone())
        return original(*args, **kwargs)

    model.head.loss = spy
    part = slice(rank * B // world, (rank + 1) * B // world)
    inst = []
    for weak, strong in inputs:
        losses = model.loss(
            [weak[part], strong[part]],
            [DataSample().set_gt_label(int(y)) for y in labels[part]])
        inst.append(losses['loss_ins'].detach())
    return dict(queue=model.queue.clone(), queue_ptr=model.queue_ptr.clone(),
                prototypes=model.prototypes.clone(),
                pseudo=torch.stack(pseudo), loss_ins=torch.stack(inst))


def _worker(rank, port, setup_path, out_path):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        setup = torch.load(setup_path)
        results = {}
        for shuffle_bn in (False, True):
            model = build(shuffle_bn)  # seeded: same weights on all ranks,
            model.load_state_dict(setup['state'])  # and the same state
            results[shuffle_bn] = run_steps(model, setup['inputs'],
                                            setup['labels'], rank, WORLD)
        torch.save(results, out_path.format(rank))
    finally:
        dist.destroy_process_group()


def check_parity(single, ranks, labels):
    for r in ranks:  # every rank holds the same shared state
        torch.testing.assert_close(r['queue'], single['queue'], rtol=0,
                                   atol=1e-5)
        assert torch.equal(r['queue_ptr'], single['queue_ptr'])
        torch.testing.assert_close(r['prototypes'], single['prototypes'],
                                   rtol=0, atol=1e-5)
    assert single['queue_ptr'].item() == (STEPS * B) % R
    pseudo = torch.cat([r['pseudo'] for r in ranks], dim=1)
    assert torch.equal(pseudo, single['pseudo'])
    # the batch exercises the OOD and relabel branches
    assert (single['pseudo'][0] == -1).any()
    assert ((single['pseudo'][0] != labels) & (single['pseudo'][0] >= 0)).any()
    # L_ins keeps every sample: the mean of the two halves is the global mean
    torch.testing.assert_close(
        torch.stack([r['loss_ins'] for r in ranks]).mean(0),
        single['loss_ins'], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_two_ranks_match_one_process(tmp_path):
    model = build()
    inputs = batches()
    labels = make_noisy(model, inputs[0][0])  # non-zero prototypes
    setup_path = tmp_path / 'setup.pth'
    torch.save(
        dict(state=model.state_dict(), inputs=inputs, labels=labels),
        setup_path)
    out_path = str(tmp_path / 'rank{}.pth')

    mp.spawn(_worker, args=(free_port(), str(setup_path), out_path),
             nprocs=WORLD, join=True)

    single = run_steps(model, inputs, labels)
    outputs = [torch.load(out_path.format(r)) for r in range(WORLD)]
    for shuffle_bn in (False, True):
        check_parity(single, [out[shuffle_bn] for out in outputs], labels)
