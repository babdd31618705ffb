"""What crosses from the dataloader workers per batch: through real
DataLoaders with worker processes, the GPU data path hands over one uint8
tensor of images (plus its index and the labels), the CPU path two stacked
views and the labels; the label tensor trains MoPro as the DataSamples
did."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

from mopro.datasets import PackedImages, packed_images_collate
from mopro.datasets.collate import JPEG, KIND, NBYTES, OFFSET, PIXELS
from mopro.datasets.transforms import read_image_bytes
from helpers import ROOT
from helpers.configs import tiny_mopro_cfg
from helpers.data import make_webvision
from helpers.gpu_views import GPU_DATA, dirty_files, packed_batch
from helpers.models import samples, views

CPU_DATA = osp.join(ROOT, 'configs', 'mopro_r50_webvision_v1.py')


def _tensors(obj) -> list:
    """Every tensor in a batch (dicts, lists, tuples, DataSamples)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    if hasattr(obj, 'all_values'):  # mmengine's BaseDataElement
        return [t for v in obj.all_values() for t in _tensors(v)]
    return []


def _loader(config: str, root: str) -> DataLoader:
    """The config's training dataset, pipeline and collate function in a
    DataLoader with two worker processes, in order, 8 images a batch."""
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(config).train_dataloader
    cfg.dataset.update(data_root=root, num_classes=4)
    if cfg.dataset.pipeline[1].type == 'MultiView':
        for view in cfg.dataset.pipeline[1].transforms:
            view[0].scale = 32
    cfg.update(batch_size=8, num_workers=2, persistent_workers=False,
               pin_memory=False, sampler=dict(type='DefaultSampler',
                                              shuffle=False))
    return Runner.build_dataloader(cfg)


def _infos(loader) -> list:
    dataset = loader.dataset
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_gpu_path_hands_over_one_tensor_of_images(tmp_path):
    """Through worker processes: per batch one uint8 tensor (the files'
    bytes back to back), its index and the labels, in shared memory (they
    crossed from a worker); the bytes and labels are the files'."""
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    loader = _loader(GPU_DATA, root)
    paths, labels = [], []
    for batch in loader:
        packed = batch['inputs']
        assert isinstance(packed, PackedImages)
        tensors = _tensors(batch)
        assert [t.dtype
                for t in tensors] == [torch.uint8, torch.int64, torch.int64]
        assert all(t.is_shared() for t in tensors)
        assert packed.index.shape == (8, 5)
        for row, path in zip(packed.index.tolist(), packed.paths):
            assert row[KIND] == JPEG  # make_webvision writes baseline JPEGs
            data = packed.data[row[OFFSET]:row[OFFSET] + row[NBYTES]]
            assert bytes(data.numpy()) == bytes(read_image_bytes(path))
        paths += packed.paths
        labels += batch['data_samples'].tolist()
    infos = _infos(loader)
    assert paths == [info['img_path'] for info in infos]
    assert labels == [info['gt_label'] for info in infos]


def test_cpu_path_hands_over_two_views_and_the_labels(tmp_path):
    root = make_webvision(str(tmp_path / 'wv'), size=40)
    loader = _loader(CPU_DATA, root)
    labels = []
    for batch in loader:
        tensors = _tensors(batch)
        assert [tuple(t.shape) for t in tensors] == [(8, 3, 32, 32)] * 2 + \
            [(8, )]
        assert all(t.is_shared() for t in tensors)
        labels += batch['data_samples'].tolist()
    assert labels == [info['gt_label'] for info in _infos(loader)]
    # mmengine's default_collate hands over a tensor per DataSample too
    one = [loader.dataset[i] for i in range(8)]
    assert len(_tensors(default_collate(one))) == 2 + 8


def test_packed_collate_needs_the_image_shape(tmp_path):
    files = dirty_files()
    batch = packed_batch([files['baseline'], files['png']], str(tmp_path))
    assert batch['inputs'].index[:, KIND].tolist() == [JPEG, PIXELS]
    sample = dict(
        inputs=torch.zeros(3, dtype=torch.uint8),
        data_samples=DataSample().set_gt_label(1))
    with pytest.raises(KeyError, match='img_shape'):
        packed_images_collate([sample])


def test_label_tensor_trains_as_the_data_samples():
    """MoPro's loss from the label tensor (the collate functions') equals
    its loss from the DataSamples (mmengine's collate)."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_mopro_cfg())
    labels = torch.tensor([0, 1, 2, 1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    from_samples = model.loss(views(0, 4), samples(labels.tolist()))
    model.load_state_dict(state)
    from_tensor = model.loss(views(0, 4), labels)
    for key, value in from_samples.items():
        torch.testing.assert_close(from_tensor[key], value, rtol=0, atol=0)
