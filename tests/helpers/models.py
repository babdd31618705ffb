"""A tiny MoPro model (ResNet-18 encoder, K classes, a queue of R keys)
on the CPU, its training phases and batches for it."""
import inspect

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mopro.models import MoPro
from .configs import tiny_mopro_cfg

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


def train_data(seed: int = 7) -> dict:
    """A batch as the dataloader gives it: uint8 views, DataSamples."""
    gen = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(0, 256, (B, 3, SIZE, SIZE), generator=gen,
                          dtype=torch.uint8) for _ in range(2)
        ], data_samples=samples(torch.arange(B) % K))


def cuda_train_data(seed: int) -> dict:
    """:func:`train_data` in pinned memory."""
    data = train_data(seed)
    data['inputs'] = [v.pin_memory() for v in data['inputs']]
    return data
