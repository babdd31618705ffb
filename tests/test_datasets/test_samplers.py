"""SqrtBalancedSampler (cRT's square-root sampler): class frequencies,
uniform draws within a class, seeding per epoch, shards across ranks."""
import numpy as np
import pytest

from mopro.datasets.samplers import SqrtBalancedSampler
from mopro.utils.errors import DataError


class LabelledDataset:

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def get_gt_labels(self):
        return self.labels


def test_sqrt_sampler_frequencies():
    # class counts 400, 100, 25, 1 -> class mass sqrt: 20 : 10 : 5 : 1
    labels = np.repeat(np.arange(4), [400, 100, 25, 1])
    np.random.default_rng(0).shuffle(labels)
    ds = LabelledDataset(labels)
    sampler = SqrtBalancedSampler(ds, seed=3, num_samples=36000)
    assert len(sampler) == 36000
    drawn = np.array(list(sampler))
    freq = np.bincount(labels[drawn], minlength=4) / len(drawn)
    expected = np.array([20, 10, 5, 1]) / 36
    sigma = np.sqrt(expected * (1 - expected) / len(drawn))
    assert np.all(np.abs(freq - expected) < 4 * sigma), (freq, expected)
    # within a class, images are drawn uniformly: class 1's 100 images
    in_class = drawn[labels[drawn] == 1]
    counts = np.bincount(in_class, minlength=len(labels))[labels == 1]
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()
    # seeded per epoch: same epoch same draw, new epoch a new draw
    again = SqrtBalancedSampler(ds, seed=3, num_samples=36000)
    assert np.array_equal(np.array(list(again)), drawn)
    again.set_epoch(1)
    assert not np.array_equal(np.array(list(again)), drawn)


def test_sqrt_sampler_shards_across_ranks():
    # 75 samples, 2 ranks: 38 each; rank r takes draws r, r + 2, ...
    ds = LabelledDataset(np.repeat(np.arange(3), [50, 20, 5]))
    shards = []
    for rank in range(2):
        sampler = SqrtBalancedSampler(ds, seed=0)
        sampler.rank, sampler.world_size = rank, 2
        sampler.num_samples = -(-sampler.total // 2)
        sampler.set_epoch(4)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 38
    whole = sampler.draw(4)  # one seeded draw of the epoch, all ranks
    assert len(whole) == 76
    assert shards[0] == whole[0::2].tolist()
    assert shards[1] == whole[1::2].tolist()


def test_sqrt_sampler_of_an_empty_dataset_is_a_data_error():
    with pytest.raises(DataError,
                       match='^SqrtBalancedSampler: the dataset is empty$'):
        SqrtBalancedSampler(LabelledDataset([]), seed=0)
