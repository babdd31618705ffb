"""The ResNet a set of weights is, read from their names (stages, blocks
per stage, bottleneck or basic blocks): a checkpoint of another depth than
the config's is named as such in the messages of
:mod:`mopro.checkpoint.weights` and the Detectron2 tools."""
from typing import Iterable, Optional, Tuple

# (bottleneck blocks, blocks per stage) -> depth of the standard ResNets
RESNET_DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}
# the features of a standard ResNet: 512 channels, x4 with bottlenecks
RESNET_WIDTH = {False: 512, True: 2048}


def resnet_layout(keys: Iterable[str], stage: str = 'backbone.layer',
                  first: int = 1) -> Optional[Tuple[bool, Tuple[int, ...]]]:
    """(bottleneck blocks, blocks per stage) of the ResNet whose weights
    are named ``{stage}{i}.{block}.conv1.weight``, stages ``first`` to
    ``first + 3`` (torchvision/mmpretrain: ``backbone.layer1..4``;
    Detectron2: ``res2..5``); None without such weights."""
    keys = set(keys)
    blocks = []
    for i in range(first, first + 4):
        count = 0
        while f'{stage}{i}.{count}.conv1.weight' in keys:
            count += 1
        blocks.append(count)
    if not any(blocks):
        return None
    return f'{stage}{first}.0.conv3.weight' in keys, tuple(blocks)


def describe_resnet(layout: Tuple[bool, Tuple[int, ...]]) -> str:
    """``'ResNet-50'``, or the layout of a non-standard one."""
    depth = RESNET_DEPTHS.get(layout)
    if depth:
        return f'ResNet-{depth}'
    kind = 'bottleneck' if layout[0] else 'basic'
    return f'ResNet of {kind} blocks {"-".join(map(str, layout[1]))}'
