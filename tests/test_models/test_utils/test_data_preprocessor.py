"""MoProDataPreprocessor: what mmpretrain's SelfSupDataPreprocessor makes
of the views, copied to the device without blocking."""
import pytest
import torch
from mmpretrain.registry import MODELS

from helpers.models import model_cfg, train_data


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
