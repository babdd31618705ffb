"""The MoPro algorithm (paper Section 3, Algorithm 1) on a tiny CPU model.

Phases as in the released ``train.py``: warm-up (epoch 0: no L_pro,
pseudo-label = label), prototype loss on (epoch >= 1), noise correction
(epoch >= start_clean_epoch). Every iteration is also compared with
``_mopro_reference.ReleasedMoPro``, a naive single-process model of the
released ``model.py`` forward written for these tests.
"""
import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from conftest import ROOT, tiny_mopro_cfg
from mopro.models import MoPro, correct_labels, update_prototypes
from mopro.models.nonfinite import NonFiniteError
from mopro.utils.cli import ConfigError
from _host_reads import HostReads
from _log_records import log_messages
from _mopro_reference import (ReleasedMoPro, make_noisy,
                              reference_update_prototypes)

K, B, R, D, HIDDEN, SIZE = 4, 8, 16, 16, 32, 32
PHASES = {
    'warmup': dict(use_proto_loss=False, correct_noise=False),
    'proto': dict(use_proto_loss=True, correct_noise=False),
    'clean': dict(use_proto_loss=True, correct_noise=True),
}
LOSS_KEYS = ('loss_cls', 'loss_ins', 'loss_pro')


def model_cfg(**overrides) -> dict:
    sizes = dict(num_classes=K, embed_dim=D, proj_hidden_dim=HIDDEN,
                 queue_len=R)
    return tiny_mopro_cfg(**{**sizes, **overrides})


def build(seed: int = 0, phase: str = 'warmup', **overrides) -> MoPro:
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg(**overrides))
    model.train()
    set_phase(model, phase)
    return model


def set_phase(model, phase: str) -> None:
    for key, value in PHASES[phase].items():
        setattr(model, key, value)


def views(seed: int, batch: int = B):
    gen = torch.Generator().manual_seed(1000 + seed)
    return [torch.randn(batch, 3, SIZE, SIZE, generator=gen) for _ in '12']


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def record_head(monkeypatch, model) -> list:
    """Record the arguments of every ``model.head.loss`` call."""
    calls = []
    original = model.head.loss
    signature = inspect.signature(original)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        calls.append({
            k: (v.detach().clone() if torch.is_tensor(v) else v)
            for k, v in bound.arguments.items()
        })
        return original(*args, **kwargs)

    monkeypatch.setattr(model.head, 'loss', spy)
    return calls


def random_prototypes(seed: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(K, D, generator=gen), dim=1)


# ----------------------------------------------------------------------
# one iteration per phase
def test_warmup_step(monkeypatch):
    model = build(phase='warmup')
    calls = record_head(monkeypatch, model)
    weak, strong = views(0)
    labels = torch.arange(B) % K
    old_queue = model.queue.clone()
    assert torch.equal(model.prototypes, torch.zeros(K, D))

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    assert 'loss_pro' not in losses and call['proto_logits'] is None
    assert torch.equal(call['pseudo_labels'], labels)
    assert losses['frac_ood'].item() == 0
    assert losses['frac_relabelled'].item() == 0
    # the query is the normalised projection of the weak view
    with torch.no_grad():
        _, cls_logits, embed = copy.deepcopy(model).encode(weak)
    torch.testing.assert_close(call['query'], embed)
    torch.testing.assert_close(call['cls_logits'], cls_logits)
    torch.testing.assert_close(call['query'].norm(dim=1), torch.ones(B))
    # the key comes from the momentum encoder (already updated this step)
    with torch.no_grad():
        probe = copy.deepcopy(model)
        keys = F.normalize(
            probe.momentum_projector(
                probe.neck(probe.momentum_backbone(strong))[-1]), dim=1)
    torch.testing.assert_close(call['key'], keys)
    # negatives: the queue before this batch
    torch.testing.assert_close(call['queue'], old_queue)
    # queue: columns 0..B-1 replaced by the keys, pointer advanced
    torch.testing.assert_close(model.queue[:, :B], call['key'].t())
    assert torch.equal(model.queue[:, B:], old_queue[:, B:])
    assert model.queue_ptr.tolist() == [B]
    # prototypes: every sample with its original label
    torch.testing.assert_close(
        model.prototypes,
        reference_update_prototypes(torch.zeros(K, D), call['query'], labels,
                                    model.proto_momentum),
        rtol=0, atol=1e-5)
    torch.testing.assert_close(model.prototypes.norm(dim=1), torch.ones(K))


def test_proto_phase_adds_prototype_loss(monkeypatch):
    model = build(phase='proto')
    old_protos = random_prototypes()
    model.prototypes.copy_(old_protos)
    calls = record_head(monkeypatch, model)
    weak, strong = views(1)
    labels = torch.tensor([0, 0, 1, 3, 3, 3, 2, 0])

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    assert torch.equal(call['pseudo_labels'], labels)
    expected_logits = call['query'] @ old_protos.t() / 0.1
    torch.testing.assert_close(call['proto_logits'], expected_logits)
    torch.testing.assert_close(losses['loss_pro'],
                               F.cross_entropy(expected_logits, labels))
    torch.testing.assert_close(losses['loss_cls'],
                               F.cross_entropy(call['cls_logits'], labels))
    torch.testing.assert_close(
        model.prototypes,
        update_prototypes(old_protos, call['query'], labels, 0.999),
        rtol=0, atol=1e-6)


def test_noise_correction_phase(monkeypatch):
    model = build(phase='clean')
    weak, strong = views(2)
    labels = make_noisy(model, weak)
    old_protos = model.prototypes.clone()
    calls = record_head(monkeypatch, model)

    losses = model.loss([weak, strong], samples(labels))

    (call, ) = calls
    pseudo = call['pseudo_labels']
    expected = correct_labels(call['cls_logits'], call['proto_logits'],
                              labels)
    assert torch.equal(pseudo, expected)
    assert (pseudo == -1).any() and ((pseudo != labels) & (pseudo >= 0)).any()
    torch.testing.assert_close(losses['frac_ood'],
                               (pseudo == -1).float().mean())
    torch.testing.assert_close(
        losses['frac_relabelled'],
        ((pseudo != labels) & (pseudo >= 0)).float().mean())
    keep = pseudo >= 0
    torch.testing.assert_close(
        losses['loss_cls'],
        F.cross_entropy(call['cls_logits'][keep], pseudo[keep]))
    torch.testing.assert_close(
        losses['loss_pro'],
        F.cross_entropy(call['proto_logits'][keep], pseudo[keep]))
    # prototypes: pseudo-labels, OOD left out
    torch.testing.assert_close(
        model.prototypes,
        reference_update_prototypes(old_protos, call['query'], pseudo,
                                    model.proto_momentum),
        rtol=0, atol=1e-5)
    with_labels = update_prototypes(old_protos, call['query'], labels,
                                    model.proto_momentum)
    assert not torch.allclose(model.prototypes, with_labels, atol=1e-6)


# ----------------------------------------------------------------------
# against the independent model of the released code
NAME_MAP = (('backbone.', 'encoder_q.trunk.'),
            ('classifier.', 'encoder_q.classifier.'),
            ('projector.0.', 'encoder_q.fc1.'), ('projector.2.',
                                                 'encoder_q.fc2.'),
            ('momentum_backbone.', 'encoder_k.trunk.'),
            ('momentum_projector.0.', 'encoder_k.fc1.'),
            ('momentum_projector.2.', 'encoder_k.fc2.'))


def reference_name(name: str) -> str:
    for ours, theirs in NAME_MAP:
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return name  # queue, queue_ptr, prototypes


def assert_same_state(model, ref, atol=1e-5):
    theirs = ref.state_dict()
    for name, value in model.state_dict().items():
        other = theirs[reference_name(name)]
        if value.is_floating_point():
            torch.testing.assert_close(value, other, rtol=1e-4, atol=atol,
                                       msg=name)
        else:
            assert torch.equal(value, other), name


@pytest.mark.parametrize('phase', list(PHASES))
def test_matches_released_reference(monkeypatch, phase):
    model = build(seed=3, phase=phase, momentum=0.9, proto_momentum=0.8)
    weak, strong = views(3)
    if phase == 'clean':
        labels = make_noisy(model, weak)
    else:
        labels = torch.tensor([1, 0, 2, 1, 3, 1, 0, 2])
        if phase == 'proto':
            model.prototypes.copy_(random_prototypes())
    ref = ReleasedMoPro.from_mopro(model)
    ref.train()
    assert_same_state(model, ref, atol=0)
    is_proto, is_clean = phase != 'warmup', phase == 'clean'
    calls = record_head(monkeypatch, model)
    lr, momentum = 0.01, 0.9
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=lr,
        momentum=momentum)
    ref_opt = torch.optim.SGD(
        [p for p in ref.parameters() if p.requires_grad], lr=lr,
        momentum=momentum)
    # what the gradient tolerance below admits in SGD's momentum buffers
    buffer_tol = {}

    for step in range(2):
        weak, strong = views(3 + step)
        losses = model.loss([weak, strong], samples(labels))
        out = ref(weak, labels, strong, is_proto=is_proto, is_clean=is_clean)
        assert torch.equal(calls[-1]['pseudo_labels'], out['pseudo'])
        assert set(k for k in losses if k.startswith('loss')) == \
            set(out['losses'])
        for key, value in out['losses'].items():
            torch.testing.assert_close(losses[key], value, rtol=1e-4,
                                       atol=1e-5)
        assert_same_state(model, ref)
        # one SGD step on both: the gradients must agree too
        opt.zero_grad()
        ref_opt.zero_grad()
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        sum(out['losses'].values()).backward()
        ref_params = dict(ref.named_parameters())
        for name, param in model.named_parameters():
            if param.requires_grad:
                ref_grad = ref_params[reference_name(name)].grad
                torch.testing.assert_close(param.grad, ref_grad, rtol=1e-3,
                                           atol=1e-4, msg=name)
                buffer_tol[name] = momentum * buffer_tol.get(name, 0) + \
                    1e-4 + 1e-3 * ref_grad.abs()
        opt.step()
        ref_opt.step()
        ref_params = dict(ref.named_parameters())
        for name, param in model.named_parameters():
            other = ref_params[reference_name(name)]
            # rounding (1e-6), plus for trained weights lr x the difference
            # of the momentum buffers that the gradient check admitted
            bound = 1e-6 + lr * buffer_tol.get(name, 0)
            excess = (param - other).abs() - bound
            assert excess.max() <= 0, (name, excess.max().item())
            # The tiny net is ill-conditioned (1x1 maps in layer4, batch-8
            # BatchNorm): 1-ulp weight differences grow to ~1% gradient
            # differences in the next step, so the weights (only) are
            # re-synchronised; queue, prototypes and BN statistics carry on.
            with torch.no_grad():
                other.copy_(param)
    if is_clean:
        assert (out['pseudo'] == -1).any()
    assert model.queue_ptr.item() == 0  # 2 x B == R


def train_data(seed: int = 7) -> dict:
    """A batch as the dataloader gives it: uint8 views, DataSamples."""
    gen = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(0, 256, (B, 3, SIZE, SIZE), generator=gen,
                          dtype=torch.uint8) for _ in range(2)
        ],
        data_samples=samples(torch.arange(B) % K))


def test_train_step_with_optim_wrapper():
    model = build(phase='proto', momentum=0.9)
    model.prototypes.copy_(random_prototypes())
    data = train_data()
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    before = copy.deepcopy(model.state_dict())

    log_vars = model.train_step(data, optim_wrapper)

    assert {'loss', 'loss_cls', 'loss_ins', 'loss_pro'} <= set(log_vars)
    total = log_vars['loss_cls'] + log_vars['loss_ins'] + log_vars['loss_pro']
    torch.testing.assert_close(torch.as_tensor(log_vars['loss']),
                               torch.as_tensor(total))
    after = model.state_dict()
    for name in ('backbone.conv1.weight', 'classifier.weight',
                 'projector.2.weight'):
        assert not torch.equal(after[name], before[name]), name
    # momentum encoder: moved by the momentum rule only (no gradient step)
    for name, param in model.named_parameters():
        if name.startswith('momentum_'):
            assert param.grad is None
            online = before[name[len('momentum_'):]]
            torch.testing.assert_close(
                param.detach(), 0.9 * before[name] + 0.1 * online)
    assert model.queue_ptr.item() == B
    assert not torch.equal(after['prototypes'], before['prototypes'])


# ----------------------------------------------------------------------
# queue, momentum encoder, state
def test_queue_wraps_around(monkeypatch):
    model = build(queue_len=12)
    calls = record_head(monkeypatch, model)
    model.queue_ptr.fill_(8)
    old = model.queue.clone()
    weak, strong = views(4)
    model.loss([weak, strong], samples(torch.arange(B) % K))
    key = calls[-1]['key']
    idx = [8, 9, 10, 11, 0, 1, 2, 3]
    torch.testing.assert_close(model.queue[:, idx], key.t())
    assert torch.equal(model.queue[:, 4:8], old[:, 4:8])
    assert model.queue_ptr.tolist() == [4]
    model.loss([weak, strong], samples(torch.arange(B) % K))
    torch.testing.assert_close(model.queue[:, 4:12], calls[-1]['key'].t())
    torch.testing.assert_close(model.queue[:, :4], key[4:].t())
    assert model.queue_ptr.tolist() == [0]


def test_enqueue_ring_buffer_and_oversized_batch():
    model = build(queue_len=12)
    model.queue_ptr.fill_(10)
    old = model.queue.clone()
    keys = F.normalize(torch.randn(5, D), dim=1)
    model.enqueue(keys)
    torch.testing.assert_close(model.queue[:, [10, 11, 0, 1, 2]], keys.t())
    assert torch.equal(model.queue[:, 3:10], old[:, 3:10])
    assert model.queue_ptr.tolist() == [3]
    with pytest.raises(ValueError, match='queue'):
        model.enqueue(torch.randn(13, D))


def test_momentum_update_formula():
    model = build(momentum=0.9)
    with torch.no_grad():
        for p in [*model.backbone.parameters(), *model.projector.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    online = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {
        n: b.clone()
        for n, b in model.momentum_backbone.named_buffers()
    }
    model.momentum_update()
    for name, param in model.named_parameters():
        if name.startswith('momentum_'):
            expected = 0.9 * online[name] + 0.1 * online[
                name[len('momentum_'):]]
            torch.testing.assert_close(param.detach(), expected, rtol=0,
                                       atol=1e-6, msg=name)
        else:
            assert torch.equal(param, online[name]), name
    for name, buf in model.momentum_backbone.named_buffers():
        assert torch.equal(buf, buffers[name]), name


def test_momentum_encoder_keeps_its_own_bn_statistics():
    model = build(momentum=0.9)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    # expected: m * k + (1 - m) * q, then a train-mode forward on the
    # strong view only
    expected = copy.deepcopy(model.momentum_backbone)
    with torch.no_grad():
        for pk, pq in zip(expected.parameters(), model.backbone.parameters()):
            pk.copy_(0.9 * pk + 0.1 * pq)
    weak, strong = views(5)
    expected.train()
    with torch.no_grad():
        expected(strong)
    model.loss([weak, strong], samples(torch.arange(B) % K))
    ours = dict(model.momentum_backbone.named_buffers())
    online = dict(model.backbone.named_buffers())
    for name, buf in expected.named_buffers():
        torch.testing.assert_close(ours[name], buf, msg=name)
    assert not torch.allclose(ours['bn1.running_mean'],
                              online['bn1.running_mean'])


def test_init_weights_copies_encoder_into_momentum_encoder():
    model = build()
    with torch.no_grad():
        for p in [*model.momentum_backbone.parameters(),
                  *model.momentum_projector.parameters()]:
            p.add_(1.0)
        model.momentum_backbone.bn1.running_mean.add_(3.0)
    model.init_weights()
    for online, momentum in ((model.backbone, model.momentum_backbone),
                             (model.projector, model.momentum_projector)):
        theirs = momentum.state_dict()
        for name, value in online.state_dict().items():
            assert torch.equal(theirs[name], value), name
    assert all(not p.requires_grad
               for p in model.momentum_backbone.parameters())
    assert all(not p.requires_grad
               for p in model.momentum_projector.parameters())


def test_state_dict_holds_queue_pointer_prototypes_and_momentum_encoder():
    model = build(phase='proto')
    model.prototypes.copy_(random_prototypes())
    weak, strong = views(6)
    labels = samples(torch.arange(B) % K)
    model.loss([weak, strong], labels)
    state = model.state_dict()
    assert state['queue'].shape == (D, R)
    assert state['queue_ptr'].tolist() == [B]
    assert state['prototypes'].shape == (K, D)
    for name in ('momentum_backbone.conv1.weight',
                 'momentum_backbone.bn1.running_mean',
                 'momentum_projector.0.weight', 'momentum_projector.2.bias',
                 'classifier.weight', 'projector.0.weight'):
        assert name in state, name
    # a fresh model loaded from the state continues identically
    other = build(seed=9, phase='proto')
    other.load_state_dict(copy.deepcopy(state))
    weak, strong = views(7)
    a = model.loss([weak, strong], labels)
    b = other.loss([weak, strong], labels)
    for key in LOSS_KEYS:
        torch.testing.assert_close(a[key], b[key])
    for name in ('queue', 'queue_ptr', 'prototypes'):
        assert torch.equal(getattr(model, name), getattr(other, name)), name


# ----------------------------------------------------------------------
# non-finite losses
def _state(model):
    return {
        n: getattr(model, n).clone()
        for n in ('queue', 'queue_ptr', 'prototypes')
    }


@pytest.mark.parametrize('bad_view', [0, 1])
def test_nonfinite_raise_leaves_queue_and_prototypes(bad_view):
    # the step itself only records the (device) flag; the next step raises
    model = build(phase='proto', nonfinite='raise')
    model.prototypes.copy_(random_prototypes())
    inputs = views(8)
    inputs[bad_view][0, 0, 0, 0] = float('nan')
    before = _state(model)
    model.loss(inputs, samples(torch.arange(B) % K))
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name
    with pytest.raises(FloatingPointError, match='recent iteration'):
        model.loss(views(9), samples(torch.arange(B) % K))
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name


def test_nonfinite_raise_check_finite_reports_once():
    model = build(phase='proto', nonfinite='raise')
    model.finite_guard.check()  # nothing recorded yet
    inputs = views(8)
    inputs[0][0, 0, 0, 0] = float('nan')
    model.loss(inputs, samples(torch.arange(B) % K))
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        model.finite_guard.check()
    model.finite_guard.check()  # already reported
    model.loss(views(9), samples(torch.arange(B) % K))
    model.finite_guard.check()  # a finite step passes


class CopyInFlight:
    """Stands for the CUDA event of a flag copy that has not landed yet."""

    def __init__(self):
        self.landed = False

    def query(self):
        return self.landed

    def synchronize(self):
        self.landed = True


def test_nonfinite_raise_waits_only_when_asked():
    # a step never waits for a flag still being copied; a checkpoint does
    model = build(phase='proto', nonfinite='raise')
    guard = model.finite_guard
    event = CopyInFlight()
    guard._unchecked.append((torch.tensor(False), event,
                             dict(loss_cls=torch.tensor(float('nan')))))
    model.loss(views(9), samples(torch.arange(B) % K))  # does not wait
    assert not event.landed and len(guard._unchecked) == 2
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        guard.check(wait=True)
    assert event.landed and guard._unchecked == []


def test_nonfinite_skip_returns_zero_losses():
    model = build(phase='proto', nonfinite='skip')
    model.prototypes.copy_(random_prototypes())
    inputs = views(8)
    inputs[0][0, 0, 0, 0] = float('nan')
    before = _state(model)
    losses = model.loss(inputs, samples(torch.arange(B) % K))
    loss_names = [k for k in losses if k.startswith('loss')]
    assert set(LOSS_KEYS) <= set(loss_names)
    for key in loss_names:
        assert losses[key].item() == 0.0, key
    sum(losses[k] for k in loss_names).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize('bad_view', [0, 1])
def test_nonfinite_skip_restores_batchnorm_statistics(bad_view):
    # a NaN input batch goes through both encoders' train-mode BatchNorm
    # before the loss is known; skip puts the statistics back
    model = build(phase='proto', nonfinite='skip')
    model.loss(views(7), samples(torch.arange(B) % K))  # non-trivial stats
    before = {name: buf.clone() for name, buf in model.named_buffers()}
    inputs = views(8)
    inputs[bad_view][0, 0, 0, 0] = float('nan')
    model.loss(inputs, samples(torch.arange(B) % K))
    for name, buf in model.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_nonfinite_skip_counts_and_stops_after_a_run_of_skips():
    # a diverged model makes every step non-finite: 'skip' logs each skipped
    # step with its count and stops at model.max_consecutive_skips
    model = build(phase='proto', nonfinite='skip', max_consecutive_skips=3)
    with torch.no_grad():
        model.classifier.weight.fill_(float('inf'))
    with log_messages() as logged:
        for step in (1, 2):
            model.loss(views(step), samples(torch.arange(B) % K))
            assert model.finite_guard.num_skipped == step
    assert len(logged) == 2
    assert logged[1].startswith('MoPro: skipped an iteration with a '
                                'non-finite loss (loss_cls=nan')
    assert logged[1].endswith('2 skipped so far, 2 in a row (the run stops '
                              'at 3)')
    with pytest.raises(NonFiniteError, match='3 iterations in a row had a '
                       'non-finite loss'):
        model.loss(views(3), samples(torch.arange(B) % K))


def test_nonfinite_skip_run_is_reset_by_a_finite_step():
    model = build(phase='proto', nonfinite='skip', max_consecutive_skips=2)
    bad = views(8)
    bad[0][0, 0, 0, 0] = float('nan')
    for inputs in (bad, views(9), bad, views(10), bad):
        model.loss(inputs, samples(torch.arange(B) % K))
    guard = model.finite_guard
    assert (guard.num_skipped, guard.consecutive_skips) == (3, 1)


@pytest.mark.parametrize('key, value, message', [
    ('threshold', 'high', "model.threshold must be a number in [0, 1], "
     "got 'high'"),
    ('threshold', 5, 'model.threshold must be in [0, 1], got 5'),
    ('alpha', -3, 'model.alpha must be in [0, 1], got -3'),
    ('momentum', 1.0, 'model.momentum must be in [0, 1), got 1.0'),
    ('proto_momentum', float('nan'), 'model.proto_momentum must be a number'),
    ('queue_len', 0, 'model.queue_len must be >= 1, got 0'),
    ('num_classes', 8.5, 'model.num_classes must be an integer >= 2'),
    ('embed_dim', True, 'model.embed_dim must be an integer >= 1'),
    ('shuffle_bn', 'yes', "model.shuffle_bn must be True or False"),
    ('nonfinite', 'ignore', "model.nonfinite must be one of ('raise', "
     "'skip'), got 'ignore'"),
    ('max_consecutive_skips', 0, 'model.max_consecutive_skips must be >= 1'),
    ('compile', 'yes', 'model.compile must be a bool or a dict'),
    ('head', dict(type='MoProHead', temperature=0),
     'model.head.temperature must be > 0, got 0'),
    ('head', dict(type='MoProHead', inst_weight=-1),
     'model.head.inst_weight must be >= 0, got -1'),
])
def test_bad_arguments_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as err:
        build(**{key: value})
    assert message in str(err.value)


# ----------------------------------------------------------------------
# mixed precision and memory format
def test_bf16_autocast_keeps_queue_and_prototypes_float32(monkeypatch):
    model = build(phase='clean')
    weak, strong = views(9)
    labels = make_noisy(model, weak)
    calls = record_head(monkeypatch, model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss([weak, strong], samples(labels))
    for key in LOSS_KEYS:
        assert losses[key].dtype == torch.float32
        assert torch.isfinite(losses[key]), key
    sum(losses[k] for k in LOSS_KEYS).backward()
    assert model.queue.dtype == torch.float32
    assert model.prototypes.dtype == torch.float32
    torch.testing.assert_close(model.queue[:, :B],
                               calls[-1]['key'].float().t())
    touched = torch.unique(calls[-1]['pseudo_labels'])
    touched = touched[touched >= 0]
    torch.testing.assert_close(model.prototypes[touched].norm(dim=1),
                               torch.ones(len(touched)))


def test_bf16_autocast_prototype_logits_are_float32(monkeypatch):
    # Like the head's logits, the prototype logits (used for noise
    # correction and L_pro) must be computed in float32 under autocast:
    # in bf16, logits near 1/tau = 10 are rounded to multiples of 1/16.
    model = build(phase='clean')
    weak, strong = views(9)
    labels = make_noisy(model, weak)
    protos = model.prototypes.clone()
    calls = record_head(monkeypatch, model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model.loss([weak, strong], samples(labels))
    call = calls[-1]
    assert call['proto_logits'].dtype == torch.float32
    torch.testing.assert_close(call['proto_logits'],
                               call['query'].float() @ protos.t() / 0.1,
                               rtol=0, atol=1e-5)


def test_channels_last_model_matches_default_layout():
    plain = build(seed=4, phase='proto')
    plain.prototypes.copy_(random_prototypes())
    fast = build(seed=11, phase='proto', channels_last=True)
    fast.load_state_dict(plain.state_dict())
    assert fast.backbone.conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    weak, strong = views(10)
    labels = samples(torch.arange(B) % K)
    a = plain.loss([weak, strong], labels)
    b = fast.loss([weak, strong], labels)
    for key in LOSS_KEYS:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(plain.prototypes, fast.prototypes, rtol=1e-4,
                               atol=1e-4)


# ----------------------------------------------------------------------
# inference
def test_predict_and_tensor_mode():
    model = build()
    model.eval()
    weak, _ = views(11, batch=3)
    results = model(weak, mode='predict')
    assert len(results) == 3
    with torch.no_grad():
        _, cls_logits, _ = model.encode(weak)
    for ds, logits in zip(results, cls_logits):
        torch.testing.assert_close(ds.pred_score, logits.softmax(0))
        assert ds.pred_label.item() == int(logits.argmax())
    (feats, ) = model(weak, mode='tensor')
    assert feats.shape == (3, 512)


# ----------------------------------------------------------------------
# no host-device syncs in the training step
@pytest.mark.parametrize('views_as_list', [True, False])
def test_data_preprocessor_matches_mmpretrain(views_as_list):
    cfg = model_cfg()['data_preprocessor']
    ours = MODELS.build(cfg)
    theirs = MODELS.build(dict(cfg, type='SelfSupDataPreprocessor'))
    data = train_data()
    if not views_as_list:
        data['inputs'] = data['inputs'][0]
    got, want = ours(data, True), theirs(data, True)
    if views_as_list:
        assert len(got['inputs']) == len(want['inputs']) == 2
        for a, b in zip(got['inputs'], want['inputs']):
            assert torch.equal(a, b)
    else:
        assert torch.equal(got['inputs'], want['inputs'])
    assert [int(ds.gt_label) for ds in got['data_samples']] == \
        [int(ds.gt_label) for ds in data['data_samples']]
    assert ours._non_blocking and not theirs._non_blocking


@pytest.mark.parametrize('phase', list(PHASES))
def test_train_step_makes_no_host_reads(phase):
    model = build(phase=phase)
    model.prototypes.copy_(random_prototypes())
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                        weight_decay=1e-4))
    batches = [train_data(seed) for seed in range(3)]
    with HostReads() as reads:
        for data in batches:
            model.train_step(data, optim_wrapper)
    assert reads.seen == []
    assert model.queue_ptr.item() == (3 * B) % R  # the steps did run


def test_host_read_detector_sees_syncs():
    # the detector is not blind: the old prototype update selected the
    # valid samples with a boolean mask and counted them with bincount,
    # and nonfinite='skip' reads the finite flag on the host
    labels = torch.tensor([0, -1, 2, 2])
    feats = torch.randn(4, D)
    with HostReads() as reads:
        valid = labels >= 0
        feats[valid], torch.bincount(labels[valid]), torch.tensor(0.5)
    assert reads.seen == ['aten.index.Tensor', 'aten.index.Tensor',
                          'aten.bincount.default', 'aten.lift_fresh.default']
    model = build(phase='proto', nonfinite='skip')
    data = train_data()
    with HostReads() as reads:
        model.loss(model.data_preprocessor(data, True)['inputs'],
                   data['data_samples'])
    assert reads.seen == ['aten._local_scalar_dense.default']


def test_bf16_optim_wrapper_has_no_loss_scaler(monkeypatch):
    # the configs' AmpOptimWrapper (configs/_base_/runtime_gpu.py)
    # runs bf16 without a loss scaler (torch's GradScaler reads its found-inf
    # flag on the host in every step); the step under it, bf16 autocast
    # included, reads nothing on the host and resumes from its state dict.
    # (mmengine only builds AmpOptimWrapper where CUDA is available: allowed
    # here so that the autocast step runs on the CPU.)
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    amp_cfg = Config.fromfile(
        f'{ROOT}/configs/_base_/runtime_gpu.py').optim_wrapper
    model = build(phase='clean')
    optim_wrapper = build_optim_wrapper(
        model, dict(amp_cfg, optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    assert optim_wrapper.cast_dtype == torch.bfloat16
    assert not optim_wrapper.loss_scaler.is_enabled()
    batches = [train_data(seed) for seed in range(2)]
    with HostReads() as reads:
        for data in batches:
            log_vars = model.train_step(data, optim_wrapper)
    assert reads.seen == []
    assert torch.isfinite(log_vars['loss'])
    state = optim_wrapper.state_dict()
    assert state['loss_scaler'] == {}
    optim_wrapper.load_state_dict(state)


# ----------------------------------------------------------------------
# the same paths on a CUDA device (make test-gpu)
def _cuda_train_data(seed: int) -> dict:
    data = train_data(seed)
    data['inputs'] = [v.pin_memory() for v in data['inputs']]
    return data


@pytest.mark.gpu
def test_nonfinite_raise_on_cuda_pinned_flag_and_event():
    # the finite flag of each step goes to pinned host memory with a CUDA
    # event; a non-finite step leaves queue and prototypes as they were and
    # finite_guard.check() (before a checkpoint) waits for the copy and raises
    model = build(phase='proto', nonfinite='raise').cuda()
    model.prototypes.copy_(random_prototypes())
    labels = [ds.to('cuda') for ds in samples(torch.arange(B) % K)]
    model.loss([v.cuda() for v in views(7)], labels)
    (host, ready, _), = model.finite_guard._unchecked
    assert host.is_pinned() and isinstance(ready, torch.cuda.Event)
    model.finite_guard.check()
    assert model.finite_guard._unchecked == []
    inputs = [v.cuda() for v in views(8)]
    inputs[0][0, 0, 0, 0] = float('nan')
    before = _state(model)
    model.loss(inputs, labels)
    with pytest.raises(FloatingPointError, match='loss_cls=nan'):
        model.finite_guard.check()
    for name, value in _state(model).items():
        assert torch.equal(value, before[name]), name


@pytest.mark.gpu
def test_bf16_amp_step_on_cuda_makes_no_host_sync():
    # the configs' AmpOptimWrapper (bf16, no loss scaler) around whole
    # train_steps, data preprocessing from pinned memory included: torch's
    # sync debug mode raises on any synchronizing CUDA call
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    amp_cfg = Config.fromfile(
        f'{ROOT}/configs/_base_/runtime_gpu.py').optim_wrapper
    model = build(phase='clean').cuda()
    model.prototypes.copy_(random_prototypes().cuda())
    optim_wrapper = build_optim_wrapper(
        model, dict(amp_cfg, optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    batches = [_cuda_train_data(seed) for seed in range(4)]
    model.train_step(batches[0], optim_wrapper)  # lazy CUDA initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for data in batches[1:]:
            log_vars = model.train_step(data, optim_wrapper)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert torch.isfinite(log_vars['loss'])
    assert model.queue.dtype == model.prototypes.dtype == torch.float32
    assert model.queue_ptr.item() == (4 * B) % R
    model.finite_guard.check()
