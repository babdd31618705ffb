"""Convert a MoPro encoder into a Detectron2 ResNet backbone checkpoint.

Object detection transfer (paper Section 5.1, Appendix C) fine-tunes the
pretrained ResNet-50 encoder as the bottom-up backbone of a Mask R-CNN
R50-FPN in Detectron2. Detectron2 reads ``.pkl`` files holding
``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics":
True}``; with matching heuristics its checkpointer maps ``res2.0.conv1.weight``
onto ``backbone.bottom_up.res2.0.conv1.weight``.

Only the encoder is kept. The momentum encoder, projector, classifier,
queue, queue pointer and prototypes are dropped, as in the released code's
``detection/convert-pretrain-to-detectron2.py``, which writes the same names
and values. One deliberate difference: BN ``num_batches_tracked`` counters
are dropped too (the released script keeps them); they only matter for BN
with ``momentum=None``, which Detectron2 never uses.

Name mapping (torchvision / mmpretrain ResNet -> Detectron2 ResNet)::

    conv1.weight                 -> stem.conv1.weight
    bn1.{w,b,mean,var}           -> stem.conv1.norm.*
    layer{i}.{b}.conv{j}.weight  -> res{i+1}.{b}.conv{j}.weight
    layer{i}.{b}.bn{j}.*         -> res{i+1}.{b}.conv{j}.norm.*
    layer{i}.{b}.downsample.0.*  -> res{i+1}.{b}.shortcut.*
    layer{i}.{b}.downsample.1.*  -> res{i+1}.{b}.shortcut.norm.*
"""
import os.path as osp
import pickle
import re
import shlex
from collections import Counter, OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import torch

from mopro.checkpoint import (RESNET_DEPTHS, CheckpointError, describe_resnet,
                              encoder_state_dict, load_checkpoint,
                              mopro_state_dict, require_finite, resnet_layout)
from mopro.utils.errors import UserError
from mopro.utils.fileio import atomic_path
from mopro.utils.outputs import check_output_file

AUTHOR = 'MoPro'
BN_COUNTER = 'num_batches_tracked'
_NORM_PARAMS = ('weight', 'bias', 'running_mean', 'running_var')
# this project's top-level modules/buffers that are not the encoder
_DROPPED_KINDS = {
    'momentum_backbone': 'momentum encoder',
    'momentum_projector': 'momentum projector',
    'projector': 'projector',
    'classifier': 'classifier',
    'queue': 'queue and queue pointer',
    'queue_ptr': 'queue and queue pointer',
    'prototypes': 'class prototypes',
}

_STEM = re.compile(r'^(conv1\.weight|bn1\.(?P<norm>\w+))$')
_BLOCK = re.compile(r'^layer(?P<stage>[1-4])\.(?P<block>\d+)\.'
                    r'(?:conv(?P<conv>\d)\.weight|bn(?P<bn>\d)\.(?P<bnp>\w+)|'
                    r'downsample\.(?P<ds>[01])\.(?P<dsp>\w+))$')


class Summary(NamedTuple):
    """What a conversion kept and dropped, counted by kind, and the ResNet
    layout of the converted weights (bottleneck blocks, blocks per stage),
    None if no ``res{2..5}`` blocks were found."""
    converted: Counter
    dropped: Counter
    layout: Optional[Tuple[bool, Tuple[int, ...]]] = None


def _norm(prefix: str, param: str) -> str:
    if param not in _NORM_PARAMS:
        raise KeyError(param)
    return f'{prefix}.norm.{param}'


def detectron2_name(name: str) -> str:
    """Detectron2 name of one encoder tensor (see the module docstring).

    Raises:
        KeyError: ``name`` is not a ResNet backbone tensor.
    """
    stem = _STEM.match(name)
    if stem:
        if stem.group('norm') is None:
            return 'stem.conv1.weight'
        return _norm('stem.conv1', stem.group('norm'))
    block = _BLOCK.match(name)
    if block is None:
        raise KeyError(name)
    prefix = f'res{int(block.group("stage")) + 1}.{block.group("block")}'
    if block.group('conv'):
        return f'{prefix}.conv{block.group("conv")}.weight'
    if block.group('bn'):
        return _norm(f'{prefix}.conv{block.group("bn")}', block.group('bnp'))
    if block.group('ds') == '0':
        if block.group('dsp') != 'weight':
            raise KeyError(name)
        return f'{prefix}.shortcut.weight'
    return _norm(f'{prefix}.shortcut', block.group('dsp'))


def _tensor_kind(name: str) -> str:
    if name.endswith('running_mean') or name.endswith('running_var'):
        return 'BN running statistics'
    if '.norm.' in name:
        return 'BN affine parameters'
    return 'conv weights'


def convert_encoder(
        encoder: Mapping[str, torch.Tensor],
        path: str = '') -> Tuple['OrderedDict[str, np.ndarray]', List[str]]:
    """Rename encoder tensors to Detectron2 names as numpy arrays.

    Returns the converted dict and the dropped ``num_batches_tracked`` names.

    Raises:
        CheckpointError: a tensor that is not part of a ResNet backbone.
    """
    converted = OrderedDict()
    dropped = []
    for name, value in encoder.items():
        if name.endswith(BN_COUNTER):
            dropped.append(name)
            continue
        try:
            new_name = detectron2_name(name)
        except KeyError:
            raise CheckpointError(
                f'{path}: backbone tensor {name!r} is not part of a '
                'torchvision-style ResNet; cannot name it for Detectron2'
            ) from None
        converted[new_name] = value.detach().cpu().numpy()
    if not converted:
        raise CheckpointError(f'{path}: no encoder weights to convert')
    return converted, dropped


def _dropped_kind(name: str) -> str:
    """Kind of a non-encoder tensor of this project's state dict."""
    module = name.split('.', 1)[0]
    return _DROPPED_KINDS.get(module, module)


def convert_checkpoint(
        path: str, trust: bool = False) -> Tuple[Dict[str, object], Summary]:
    """Read a MoPro checkpoint (this project's or the released code's) and
    return the Detectron2 checkpoint dict and a summary.

    Raises:
        FileNotFoundError, CheckpointError: unreadable or unsupported file,
            or non-finite weights (naming the first such tensor).
    """
    ckpt = load_checkpoint(path, trust=trust)
    state = mopro_state_dict(ckpt, path)
    require_finite(state, path)
    weights, counters = convert_encoder(encoder_state_dict(ckpt, path), path)
    converted = Counter(_tensor_kind(name) for name in weights)
    dropped = Counter(
        _dropped_kind(name) for name in state
        if not name.startswith('backbone.'))
    if counters:
        dropped[f'BN {BN_COUNTER}'] = len(counters)
    model = {
        'model': weights,
        '__author__': AUTHOR,
        'matching_heuristics': True
    }
    layout = resnet_layout(weights, stage='res', first=2)
    return model, Summary(converted, dropped, layout)


def depth_options(depth: int) -> List[str]:
    """Detectron2 config overrides that build a ResNet of ``depth``: the
    depth, and for the basic-block ResNet-18/34 the 64 output channels of
    ``res2`` (Detectron2's default, 256, is the bottleneck ResNets')."""
    options = ['MODEL.RESNETS.DEPTH', str(depth)]
    if depth in (18, 34):
        options += ['MODEL.RESNETS.RES2_OUT_CHANNELS', '64']
    return options


def weights_options(out_path: str,
                    layout: Optional[Tuple[bool, Tuple[int, ...]]]) -> str:
    """The ``KEY VALUE`` overrides of ``tools/train_d2.py`` that load the
    converted ``out_path`` into a model of its depth, as one copyable
    line."""
    options = ['MODEL.WEIGHTS', out_path]
    depth = RESNET_DEPTHS.get(layout) if layout else None
    if depth:
        options += depth_options(depth)
    return ' '.join(shlex.quote(option) for option in options)


def check_output_name(out_path: str) -> None:
    """Detectron2's checkpointer reads this format only from ``.pkl``
    files."""
    if not out_path.endswith('.pkl'):
        raise UserError(f'{out_path}: output must end with .pkl (Detectron2 '
                        'reads its pickle format only from .pkl files)')


def save_detectron2(model: Dict[str, object], out_path: str) -> None:
    """Pickle ``model`` to ``out_path`` (a ``.pkl``) atomically."""
    check_output_name(out_path)
    with atomic_path(out_path) as tmp:
        with open(tmp, 'wb') as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)


def convert_to_detectron2(checkpoint: str, out_path: str,
                          trust: bool = False) -> Summary:
    """Write the encoder of ``checkpoint`` (this project's or the released
    code's) to ``out_path`` as a Detectron2 backbone ``.pkl``, atomically,
    and return the summary of the conversion (``tools/convert_to_d2.py``).

    The output is checked (a ``.pkl``, writable, not the input, room for
    the weights) before anything is written, and all but the room for the
    weights before the checkpoint is read.
    """
    check_output_name(out_path)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'{checkpoint}: no such checkpoint file')
    check_output_file(out_path, inputs=[checkpoint])
    model, summary = convert_checkpoint(checkpoint, trust=trust)
    check_output_file(
        out_path,
        need_bytes=sum(value.nbytes for value in model['model'].values()))
    save_detectron2(model, out_path)
    return summary


def format_summary(summary: Summary, out_path: str) -> str:
    """Multi-line human-readable summary of a conversion to ``out_path``,
    ending with the Detectron2 overrides that load it."""

    def lines(counter: Counter) -> List[str]:
        return [
            f'    {count:4d}  {kind}'
            for kind, count in sorted(counter.items())
        ]

    return '\n'.join([
        f'converted {sum(summary.converted.values())} encoder tensors:',
        *lines(summary.converted),
        f'dropped {sum(summary.dropped.values())} tensors by design '
        '(not part of the backbone):',
        *lines(summary.dropped),
        f'wrote {out_path}, {_describe_layout(summary.layout)}; '
        'Detectron2 overrides for tools/train_d2.py:',
        weights_options(out_path, summary.layout),
    ])


def _describe_layout(layout: Optional[Tuple[bool, Tuple[int, ...]]]) -> str:
    if layout is None:
        return 'no ResNet stages found'
    text = describe_resnet(layout)
    if layout not in RESNET_DEPTHS:
        text += ', a depth Detectron2 does not build'
    return text
