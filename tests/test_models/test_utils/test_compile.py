"""``model.compile`` (mopro/models/utils/compile.py) on CPU: the compiled
MoPro and CE models are the eager ones.

The compiled runs use ``backend='aot_eager'``: dynamo's graph capture and
AOT autograd's joint forward/backward graphs, executed with ATen's eager
kernels; inductor's code generation takes over a minute for ResNet-18 on two
CPU cores and is tested on the GPU (test_compile_gpu.py). Tolerance:
``rtol=1e-5, atol=1e-6`` on every float (losses, gradients, weights, BN
statistics, queue, prototypes): on torch 2.14 the two runs are bitwise
equal, and the tolerance only leaves room for decompositions that reorder a
reduction in other torch versions; pseudo-labels and the queue pointer are
compared exactly. Which graphs dynamo builds, and which of their sizes are
symbolic, is read by backends that record what dynamo hands them.
"""
import copy
import os
import os.path as osp
import shutil
import warnings

import pytest
import torch
from functorch.compile import make_boxed_func
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters

import mopro.models.algorithms.mopro as mopro_module
from mopro.checkpoint import load_checkpoint
from mopro.engine.launch import adapt_to_device
from mopro.models.utils.compile import (compile_options, compile_submodules,
                                        is_compiled)
from helpers.configs import tiny_mopro_cfg
from helpers.models import SIZE, B, build, samples, train_data, views
from helpers.mopro_reference import make_noisy
from helpers.training import train_v1

AOT = dict(backend='aot_eager')
TOL = dict(rtol=1e-5, atol=1e-6)


def assert_close_dicts(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, theirs[key], **TOL, msg=key)
        else:
            assert torch.equal(value, theirs[key]), key


def run_steps(model, labels, monkeypatch, steps: int = 3) -> list:
    """``steps`` SGD steps; per step the losses, the gradients, the
    pseudo-labels and the state (weights, BN statistics, queue, pointer,
    prototypes) after the update."""
    pseudo = []

    def spy(*args, **kwargs):
        pseudo.append(correct_labels(*args, **kwargs))
        return pseudo[-1]

    correct_labels = mopro_module.correct_labels
    monkeypatch.setattr(mopro_module, 'correct_labels', spy)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                          lr=0.05, momentum=0.9, weight_decay=1e-4)
    record = []
    for step in range(steps):
        losses = model.loss(views(3 + step), samples(labels))
        opt.zero_grad()
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        grads = {
            n: p.grad.clone()
            for n, p in model.named_parameters() if p.grad is not None
        }
        opt.step()
        record.append(({
            k: v.detach().clone()
            for k, v in losses.items()
        }, grads, {
            k: v.clone()
            for k, v in model.state_dict().items()
        }))
    monkeypatch.undo()
    return record, pseudo


@pytest.mark.slow
@pytest.mark.parametrize('phase', ['warmup', 'proto', 'clean'])
def test_compiled_step_matches_eager(phase, monkeypatch):
    results = []
    for compile in (False, AOT):
        model = build(seed=3, phase=phase, momentum=0.9, proto_momentum=0.8,
                      compile=compile)
        assert is_compiled(model.backbone) == bool(compile)
        assert is_compiled(model.momentum_backbone) == bool(compile)
        labels = make_noisy(model, views(3)[0])
        results.append(run_steps(model, labels, monkeypatch))
    (eager, eager_pseudo), (compiled, compiled_pseudo) = results
    for (losses, grads, state), (c_losses, c_grads,
                                 c_state) in zip(eager, compiled):
        assert_close_dicts(c_losses, losses)
        assert_close_dicts(c_grads, grads)
        assert_close_dicts(c_state, state)  # queue_ptr exactly
    assert len(compiled_pseudo) == (3 if phase == 'clean' else 0)
    for ours, theirs in zip(compiled_pseudo, eager_pseudo):
        assert torch.equal(ours, theirs)
    if phase == 'clean':  # noise correction did relabel and reject
        assert (eager_pseudo[0] == -1).any()


def test_state_dict_keys_are_eager_keys():
    eager, compiled = build(), build(compile=AOT)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert not any('_orig_mod' in k for k in compiled.state_dict())
    # a deep copy (e.g. an EMA model) is eager, and loads the same state
    copied = copy.deepcopy(compiled)
    assert not is_compiled(copied.backbone)
    copied.load_state_dict(eager.state_dict())


def _steps(model, optim_wrapper, seeds) -> None:
    for seed in seeds:
        model.train_step(train_data(seed), optim_wrapper)


def _model_and_optim(compile, state=None):
    model = build(seed=1, phase='clean', momentum=0.9, compile=compile)
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9,
                        weight_decay=1e-4))
    if state is not None:
        model.load_state_dict(state['state_dict'])
        optim_wrapper.load_state_dict(state['optimizer'])
    return model, optim_wrapper


@pytest.mark.slow
def test_resume_compiled_eager_compiled(tmp_path):
    """6 eager steps == 2 compiled, save, 2 eager, save, 2 compiled."""
    straight, optim_wrapper = _model_and_optim(False)
    _steps(straight, optim_wrapper, range(6))
    state = None
    for part, compile in enumerate((AOT, False, AOT)):
        model, optim_wrapper = _model_and_optim(compile, state)
        _steps(model, optim_wrapper, range(2 * part, 2 * part + 2))
        path = str(tmp_path / f'part{part}.pth')
        torch.save(
            {
                'state_dict': model.state_dict(),
                'optimizer': optim_wrapper.state_dict()
            }, path)
        state = torch.load(path, weights_only=True)
        os.remove(path)
    assert_close_dicts(model.state_dict(), straight.state_dict())
    assert int(model.queue_ptr) == (6 * B) % model.queue_len


@pytest.mark.slow
def test_runner_resume_compiled_eager_compiled(webvision_root, tmp_path):
    """Through mmengine's Runner and its checkpoints: 3 eager epochs ==
    1 compiled, --resume eager, --resume compiled (warm-up, then noise
    correction from epoch 1)."""
    straight = train_v1(webvision_root, str(tmp_path / 'a'), 'straight', 3)
    shutil.rmtree(tmp_path / 'a')  # compared from the Runner, in memory
    work = str(tmp_path / 'b')
    train_v1(webvision_root, work, 'part1', 1, compile=AOT)
    train_v1(webvision_root, work, 'part2', 2,
             resume=osp.join(work, 'epoch_1.pth'))
    resumed = train_v1(webvision_root, work, 'part3', 3,
                       resume=osp.join(work, 'epoch_2.pth'), compile=AOT)
    assert is_compiled(resumed.model.backbone)
    saved = load_checkpoint(osp.join(work, 'epoch_1.pth'))['state_dict']
    assert list(saved) == list(straight.model.state_dict())
    assert_close_dicts(resumed.model.state_dict(), straight.model.state_dict())


class _InputShapes:
    """A torch.compile backend that records, for each graph dynamo hands
    it, the shape of the compiled module's input (the entry's first
    argument), a symbolic size as ``'dynamic'``, and runs the graph as it
    is."""

    def __init__(self) -> None:
        self.shapes = []

    def __call__(self, gm, example_inputs):
        node, = [
            n for n in gm.graph.find_nodes(op='placeholder')
            if n.name == 'l_args_0_'
        ]
        self.shapes.append(
            tuple(
                size if isinstance(size, int) else 'dynamic'
                for size in node.meta['example_value'].shape))
        return gm.forward


def _sgd(model) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))


def _predict(model, batches) -> None:
    model.eval()
    for batch in batches:
        with torch.no_grad():
            model.predict(views(0, batch)[0])
    model.train()


TRAINING_SHAPE = (B, 3, SIZE, SIZE)
EVAL_SHAPE = ('dynamic', 3, SIZE, SIZE)


def test_eval_adds_one_graph_with_a_dynamic_batch():
    """Validation, noise cleaning and feature extraction after training:
    the training step builds the encoder's and the momentum encoder's
    graphs at the batch size; eval mode adds one graph whose batch
    dimension is dynamic (dynamo marks a size that changed), none for the
    next batch sizes; back in training the static training graph runs
    again."""
    shapes = _InputShapes()
    model = build(compile=dict(backend=shapes))
    _steps(model, _sgd(model), [0])
    _predict(model, (6, 5, 3, 7))
    _steps(model, _sgd(model), [1])
    assert shapes.shapes == [TRAINING_SHAPE, TRAINING_SHAPE, EVAL_SHAPE]


def test_another_models_eval_leaves_the_training_graphs_static():
    """A second model compiled in the same process (the Runner's model
    after the step benchmark's, a model built after another's validation)
    builds its training graphs at their static batch size: what the first
    model's encoder saw in eval mode is its own (it made the second
    model's encoder graph dynamic when every compiled entry of one module
    name shared one automatic-dynamic state)."""
    shapes = _InputShapes()
    first = build(compile=dict(backend=shapes))
    _steps(first, _sgd(first), [0])
    _predict(first, (6, ))
    second = build(compile=dict(backend=shapes))
    _steps(second, _sgd(second), [1])
    assert shapes.shapes == [TRAINING_SHAPE] * 2 + [EVAL_SHAPE] + \
        [TRAINING_SHAPE] * 2


@pytest.mark.slow
def test_graphs_mutate_only_parameters_and_buffers():
    """What inductor's CUDA graphs (``mode='reduce-overhead'``) need of a
    graph: every input it mutates is a static input (a parameter or
    buffer, whose address the recorded CUDA graph keeps; a graph that
    mutates another input runs without CUDA graphs). The training step's
    graphs (the encoder with gradients, the momentum encoder without)
    mutate BatchNorm's statistics, all static inputs, as are the
    parameters that the optimizer and the momentum update change in place
    between steps; the image is their one other input; the eval graph
    mutates nothing. Read from AOT autograd's metadata of each forward
    graph, as inductor reads it."""
    graphs = []

    def forward(gm, example_inputs):
        meta = torch._guards.TracingContext.try_get().fw_metadata
        graphs.append(
            dict(
                inputs=len(meta.input_info), mutated={
                    i
                    for i, info in enumerate(meta.input_info)
                    if info.mutates_data or info.mutates_metadata
                }, static=set(meta.static_input_indices)))
        return make_boxed_func(gm.forward)

    backend = aot_autograd(
        fw_compiler=forward,
        bw_compiler=lambda gm, _: make_boxed_func(gm.forward),
        inference_compiler=forward)
    model = build(phase='clean', momentum=0.9, compile=dict(backend=backend))
    optim_wrapper = _sgd(model)
    _steps(model, optim_wrapper, [0, 1])
    _predict(model, (6, ))
    batch_norms = sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    parameters = len(list(model.backbone.parameters()))
    assert len(graphs) == 3
    for graph in graphs[:2]:  # encoder, momentum encoder
        assert len(graph['mutated']) == 3 * batch_norms  # mean, var, count
        assert graph['mutated'] <= graph['static']
        assert graph['inputs'] == parameters + 3 * batch_norms + 1
        assert len(graph['static']) == graph['inputs'] - 1  # all but images
    assert graphs[2]['mutated'] == set()


def _broken_backend(gm, example_inputs):
    raise RuntimeError('no C++ compiler found')


def test_failed_build_warns_once_and_runs_eagerly():
    # dynamo caches graphs per code object, across backends: without a
    # reset, a graph an earlier test built for ResNet.forward could serve
    # this call and the broken backend would never run
    torch._dynamo.reset()
    eager = build(seed=2)
    model = build(seed=2, compile=dict(backend=_broken_backend))
    model.eval()
    eager.eval()
    inputs = views(0)[0]
    with pytest.warns(RuntimeWarning) as caught:
        feats = model.extract_feat(inputs)
    messages = [
        str(w.message) for w in caught if 'torch.compile' in str(w.message)
    ]
    assert len(messages) == 1
    assert messages[0].startswith('torch.compile of MoPro.backbone failed')
    assert 'no C++ compiler found' in messages[0]
    assert not is_compiled(model.backbone)
    torch.testing.assert_close(feats, eager.extract_feat(inputs), rtol=0,
                               atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        model.extract_feat(inputs)  # eager now: no second warning


def test_module_error_surfaces():
    model = build(compile=AOT)
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)  # no fallback warning
        with pytest.raises(RuntimeError, match='channels'):
            model.extract_feat(torch.randn(2, 2, 32, 32))


def test_compile_options():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == {}
    assert compile_options(
        dict(mode='max-autotune')) == dict(mode='max-autotune')
    with pytest.raises(ValueError, match="unknown keys \\['mod'\\]"):
        compile_options(dict(mod='default'))
    with pytest.raises(TypeError, match='bool or a dict'):
        compile_options('default')


def test_adapt_to_device_compiles_only_on_cuda():
    cfg = Config(
        dict(
            model=dict(type='MoPro', compile=True),
            optim_wrapper=dict(type='AmpOptimWrapper', dtype='bfloat16')))
    on_gpu = adapt_to_device(copy.deepcopy(cfg), device='cuda')
    assert on_gpu.model.compile is True
    assert on_gpu.optim_wrapper.type == 'AmpOptimWrapper'
    on_cpu = adapt_to_device(copy.deepcopy(cfg), device='cpu')
    assert on_cpu.model.compile is False
    assert on_cpu.optim_wrapper.type == 'OptimWrapper'


def test_cross_entropy_classifier_compiles_like_mopro():
    cfg = dict(type='CompilableImageClassifier',
               backbone=dict(type='ResNet',
                             depth=18), neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=3, in_channels=512),
               data_preprocessor=tiny_mopro_cfg()['data_preprocessor'])
    cfg['data_preprocessor']['type'] = 'ClsDataPreprocessor'
    logs = []
    for compile in (False, AOT):
        torch.manual_seed(0)
        model = MODELS.build(dict(cfg, compile=compile))
        optim_wrapper = OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        data = dict(
            inputs=train_data(0)['inputs'][0],
            data_samples=[DataSample().set_gt_label(i % 3) for i in range(B)])
        logs.append(
            [model.train_step(data, optim_wrapper)['loss'] for _ in range(2)])
        logs.append(model.state_dict())
    eager_loss, eager_state, compiled_loss, compiled_state = logs
    torch.testing.assert_close(compiled_loss, eager_loss, **TOL)
    assert_close_dicts(compiled_state, eager_state)


def _out_of_memory_backend(gm, example_inputs):
    raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate')


def test_out_of_memory_is_raised_and_the_module_stays_compiled():
    """An out-of-memory error, in the build (dynamo wraps it) or in the
    module's own run, is raised as it is, with no eager re-run, and the
    module stays compiled: the run may retry with less memory in use."""
    torch._dynamo.reset()
    model = build(seed=2, compile=dict(backend=_out_of_memory_backend))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)  # no fallback
        with pytest.raises(torch.OutOfMemoryError):
            model.extract_feat(views(0)[0])
    assert is_compiled(model.backbone)

    class Hungry(torch.nn.Module):
        calls = 0

        def forward(self, x):
            Hungry.calls += 1
            raise torch.OutOfMemoryError('CUDA out of memory')

    holder = torch.nn.Module()
    holder.hungry = Hungry()
    compile_submodules(holder, ['hungry'], AOT)
    with pytest.raises(torch.OutOfMemoryError):
        holder.hungry(torch.ones(2))
    assert is_compiled(holder.hungry)


def test_each_compiled_module_has_its_own_recompile_budget():
    """The encoder's and the momentum encoder's ResNets share their
    forward's code; each still gets dynamo's whole recompile limit: when
    one has used it up, the other still compiles."""
    torch._dynamo.reset()

    class Net(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x).relu()

    holder = torch.nn.Module()
    holder.first, holder.second = Net(), Net()
    compile_submodules(holder, ['first', 'second'],
                       dict(backend='eager', dynamic=False))
    with torch._dynamo.config.patch(recompile_limit=2):
        graphs = counters['stats']['unique_graphs']
        for rows in range(1, 5):  # 4 shapes: 2 compiled, then eager
            holder.first(torch.randn(rows, 4))
        assert counters['stats']['unique_graphs'] - graphs == 2
        for rows in range(1, 3):
            holder.second(torch.randn(rows, 4))
        assert counters['stats']['unique_graphs'] - graphs == 4
