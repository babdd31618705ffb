"""Every MoPro iteration, in each phase, compared with
``helpers.mopro_reference.ReleasedMoPro``, a naive single-process model of
the released ``model.py`` forward written for these tests."""
import pytest
import torch

from helpers.models import (PHASES, build, random_prototypes, record_head,
                            samples, views)
from helpers.mopro_reference import ReleasedMoPro, make_noisy

# ----------------------------------------------------------------------
# against the independent model of the released code
NAME_MAP = (('backbone.', 'encoder_q.trunk.'), ('classifier.',
                                                'encoder_q.classifier.'),
            ('projector.0.', 'encoder_q.fc1.'), ('projector.2.',
                                                 'encoder_q.fc2.'),
            ('momentum_backbone.',
             'encoder_k.trunk.'), ('momentum_projector.0.', 'encoder_k.fc1.'),
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
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=lr, momentum=momentum)
    ref_opt = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad],
                              lr=lr, momentum=momentum)
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
