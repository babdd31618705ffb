"""The noise-quality metrics of the demo (mopro.evaluation.noise_quality)
on a hand-worked example."""
import pytest

from mopro.evaluation.noise_quality import noise_quality


def test_noise_quality_hand_example():
    # sample: kind, true, given, pseudo
    #  0 clean   1 1  1  kept                  -> not flagged
    #  1 clean   2 2  3  wrongly relabelled    -> flagged, wrong
    #  2 clean   0 0 -1  wrongly OOD           -> flagged
    #  3 flipped 4 5  4  fixed                 -> flagged, right
    #  4 flipped 6 2  3  relabelled, wrong     -> flagged, wrong
    #  5 flipped 7 1  1  missed                -> not flagged
    #  6 ood     8 3 -1  found                 -> flagged
    #  7 ood     9 0  0  missed                -> not flagged
    #  8 ood     9 6  2  relabelled (wrong)    -> flagged
    kinds = ['clean'] * 3 + ['flipped'] * 3 + ['ood'] * 3
    true = [1, 2, 0, 4, 6, 7, 8, 9, 9]
    given = [1, 2, 0, 5, 2, 1, 3, 0, 6]
    pseudo = [1, 3, -1, 4, 3, 1, -1, 0, 2]
    q = noise_quality(pseudo, given, true, kinds)
    assert q['num_relabelled'] == 4 and q['num_declared_ood'] == 2
    # flagged {1,2,3,4,6,8}; noisy {3..8}; both {3,4,6,8}
    assert q['noise_precision'] == pytest.approx(4 / 6)
    assert q['noise_recall'] == pytest.approx(4 / 6)
    assert q['ood_recall'] == pytest.approx(1 / 3)
    assert q['ood_precision'] == pytest.approx(1 / 2)
    assert q['flipped_relabelled'] == pytest.approx(2 / 3)
    assert q['flipped_correction_acc'] == pytest.approx(1 / 2)
    assert q['relabel_acc'] == pytest.approx(1 / 4)  # {1,3,4,8}: only 3
    assert q['flipped_fixed'] == pytest.approx(1 / 3)
    assert q['clean_kept'] == pytest.approx(1 / 3)
    # empty groups give None, not a division error
    q = noise_quality([0], [0], [0], ['clean'])
    assert q['noise_precision'] is None and q['ood_recall'] is None
    with pytest.raises(ValueError, match='unknown kinds'):
        noise_quality([0], [0], [0], ['dirty'])
