"""``model.compile`` and the Runner loop on a CUDA device, as the GPU
configs run them: inductor, bf16 autocast (AmpOptimWrapper without loss
scaler), channels-last (``pytest -m gpu``; skipped without CUDA).

Tolerances: bf16 keeps 8 bits of mantissa (relative error ~4e-3 per
rounding) and inductor fuses and rounds at other places than eager, so one
step's losses agree to ``rtol=0.05, atol=0.02`` and the float32 queue and
prototypes (written from bf16 embeddings) to ``atol=0.05``; the models are
re-synchronised after every step (the tiny net amplifies weight differences,
see test_mopro_released_parity.test_matches_released_reference). The
queue pointer is compared exactly; pseudo-labels, which flip where bf16
moves a score across a threshold, agree on at least 3 of 4 samples (both
models train on the eager model's, so that the losses compare).
"""
import copy
import warnings

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader

import mopro.models.algorithms.mopro as mopro_module
from mopro.models.utils.compile import is_compiled
from helpers.models import B, build, model_cfg, random_prototypes, train_data
from helpers.mopro_reference import make_noisy

pytestmark = pytest.mark.gpu

DEVICE = 'cuda'
COMPILE = True  # inductor, torch's defaults, as the configs
REDUCE_OVERHEAD = dict(mode='reduce-overhead')  # the same, CUDA graphs
SIZE = 64  # 2 x 2 maps in layer4
AMP = dict(
    type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False),
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))


def _views(seed: int) -> list:
    gen = torch.Generator().manual_seed(1000 + seed)
    return [
        torch.randn(B, 3, SIZE, SIZE, generator=gen).to(DEVICE) for _ in '12'
    ]


def _model(compile, **overrides):
    return build(seed=3, phase='clean', momentum=0.9, proto_momentum=0.8,
                 channels_last=True, compile=compile, **overrides).to(DEVICE)


@pytest.mark.parametrize('compile', [COMPILE, REDUCE_OVERHEAD],
                         ids=['default', 'reduce-overhead'])
def test_compiled_bf16_step_matches_eager(compile, monkeypatch):
    """Also with inductor's CUDA graphs: the step's graphs mutate only
    parameters and buffers (BatchNorm statistics; the optimizer and the
    momentum update change parameters in place), so inductor records them
    as CUDA graphs (the first step warms up, the second records, the third
    replays) and skips none."""
    skips = counters['inductor']['cudagraph_skips']
    recorded = counters['inductor']['cudagraph_recorded_non_static_inputs']
    eager, compiled = _model(False), _model(compile)
    labels = make_noisy(eager, _views(0)[0])
    compiled.load_state_dict(eager.state_dict())
    wrappers = [
        build_optim_wrapper(m, copy.deepcopy(AMP)) for m in (eager, compiled)
    ]
    pseudo = []
    correct_labels = mopro_module.correct_labels

    def spy(*args, **kwargs):
        # the compiled model (second of each step) records its own
        # pseudo-labels but trains on the eager model's, so that a label
        # flipped by bf16 does not move the losses compared below
        pseudo.append(correct_labels(*args, **kwargs))
        return pseudo[-1 - (len(pseudo) + 1) % 2]

    monkeypatch.setattr(mopro_module, 'correct_labels', spy)
    for step in range(3):
        inputs = _views(step + 1)
        results = []
        for model, optim_wrapper in zip((eager, compiled), wrappers):
            with optim_wrapper.optim_context(model):
                losses = model.loss(inputs, labels)  # one label tensor
            loss, log_vars = model.parse_losses(losses)
            optim_wrapper.update_params(loss)
            results.append(log_vars)
        # the losses; accuracies and fractions count flipped samples
        losses = [k for k in results[0] if k.startswith('loss')]
        assert len(losses) == 4  # total, cls, pro, ins
        for key in losses:
            torch.testing.assert_close(results[1][key], results[0][key],
                                       rtol=0.05, atol=0.02, msg=key)
        for name in ('queue', 'prototypes'):
            torch.testing.assert_close(
                getattr(compiled, name), getattr(eager, name), rtol=0,
                atol=0.05, msg=name)
        assert torch.equal(compiled.queue_ptr, eager.queue_ptr)
        agree = (pseudo[-1] == pseudo[-2]).float().mean().item()
        assert agree >= 0.75, (step, pseudo[-2], pseudo[-1])
        compiled.load_state_dict(eager.state_dict())
        wrappers[1].load_state_dict(wrappers[0].state_dict())
    assert is_compiled(compiled.backbone)  # no fallback to eager
    assert is_compiled(compiled.momentum_backbone)
    assert counters['inductor']['cudagraph_skips'] == skips
    # each recorded graph counts its inputs copied in at a replay (images)
    graphed = counters['inductor'][
        'cudagraph_recorded_non_static_inputs'] > recorded
    assert graphed == (compile == REDUCE_OVERHEAD)


def _batch(pin: bool = False) -> dict:
    data = train_data(0)
    views = [
        torch.nn.functional.interpolate(v.float(), size=SIZE).byte()
        for v in data['inputs']
    ]
    data['inputs'] = [v.pin_memory() if pin else v.to(DEVICE) for v in views]
    return data


def test_compiled_step_makes_no_host_syncs():
    model = _model(COMPILE)
    model.prototypes.copy_(random_prototypes().to(DEVICE))
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(AMP))
    data = _batch()
    for _ in range(3):  # compile, cuDNN autotuning
        model.train_step(data, optim_wrapper)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for _ in range(3):
            model.train_step(data, optim_wrapper)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    model.finite_guard.check()
    assert is_compiled(model.backbone)


class _SyncsPerIter(Hook):
    """Synchronizing CUDA calls (torch's sync debug mode warnings) of each
    iteration of the loop, recorded last of all hooks."""

    priority = 'LOWEST'

    def __init__(self, caught: list) -> None:
        self.caught, self.per_iter, self.seen = caught, [], 0

    def _count(self) -> int:
        return sum('synchroniz' in str(w.message) for w in self.caught)

    def before_train(self, runner) -> None:
        self.seen = self._count()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        count = self._count()
        self.per_iter.append(count - self.seen)
        self.seen = count


def test_runner_loop_makes_no_synchronizing_call_after_warmup(tmp_path):
    """The logger reads the logged values from pinned copies once their
    events have completed (DeferredRuntimeInfoHook): after the first
    iterations (compile, cuDNN autotuning) no iteration makes a
    synchronizing CUDA call, also those the logger reads."""
    iters, interval, warm = 12, 4, 4
    batch = _batch(pin=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        probe = _SyncsPerIter(caught)
        runner = Runner(
            model=model_cfg(channels_last=True,
                            compile=COMPILE), work_dir=str(tmp_path),
            experiment_name=f'gpu_syncs_{tmp_path.name}',
            train_dataloader=DataLoader([batch] * iters, batch_size=None),
            train_cfg=dict(by_epoch=False, max_iters=iters),
            optim_wrapper=copy.deepcopy(AMP), default_hooks=dict(
                runtime_info=dict(type='DeferredRuntimeInfoHook'),
                logger=dict(type='LoggerHook', interval=interval),
                checkpoint=None, sampler_seed=None), custom_hooks=[
                    dict(type='MoProHook', start_proto_epoch=0,
                         start_clean_epoch=0), probe
                ], log_processor=dict(by_epoch=False),
            env_cfg=dict(cudnn_benchmark=True), log_level='WARNING',
            default_scope='mmpretrain', randomness=dict(seed=0))
        torch.cuda.set_sync_debug_mode('warn')
        try:
            runner.train()
            # the probe sees a synchronizing call when there is one
            before = probe._count()
            torch.ones(1, device='cuda').item()
            assert probe._count() > before
        finally:
            torch.cuda.set_sync_debug_mode('default')
    assert is_compiled(runner.model.backbone)
    assert len(probe.per_iter) == iters
    synced = [i for i in range(warm, iters) if probe.per_iter[i] > 0]
    assert synced == [], probe.per_iter
