"""ImageNetSubset: the low-resource fine-tuning subsets, from a list of
file names or a seeded fraction; a missing file named with its line."""
import pytest
from mmpretrain.registry import DATASETS

from helpers.data import make_imagenet


def test_imagenet_subset(tmp_path):
    root = str(tmp_path / 'imagenet')
    names = make_imagenet(root, ['n02', 'n01', 'n03'], per_class=10)
    subset = str(tmp_path / '1percent.txt')
    with open(subset, 'w') as f:
        f.write('n03_4.JPEG\nn01_0.JPEG\n')
    ds = DATASETS.build(
        dict(type='ImageNetSubset', data_root=root, subset_file=subset))
    assert [ds.get_data_info(i)['img_path'][len(root) + 1:] for i in range(2)
            ] == ['train/n03/n03_4.JPEG', 'train/n01/n01_0.JPEG']
    assert ds.get_gt_labels().tolist() == [2, 0]  # sorted wnid order
    frac = DATASETS.build(
        dict(type='ImageNetSubset', data_root=root, subset_file=None,
             fraction=0.2, seed=1))
    again = DATASETS.build(
        dict(type='ImageNetSubset', data_root=root, subset_file=None,
             fraction=0.2, seed=1))
    assert len(frac) == 6 == len(again)
    paths = [frac.get_data_info(i)['img_path'] for i in range(6)]
    assert paths == [again.get_data_info(i)['img_path'] for i in range(6)]
    assert len(names) == 30
    with open(subset, 'a') as f:
        f.write('n09_1.JPEG\n')
    with pytest.raises(FileNotFoundError, match=r'1percent.txt:3: n09_1'):
        DATASETS.build(
            dict(type='ImageNetSubset', data_root=root,
                 subset_file=subset)).full_init()
