"""The batched views of the GPU data path
(mopro.gpu_data.views), on the CPU: the released
torchvision transforms' parameter distributions, views equal to
torchvision's for fixed parameters and to PIL's within a stated
tolerance."""
import numpy as np
import pytest
import torch
from scipy import stats
from torchvision import transforms as T

from mopro.gpu_data.views import (ViewParams, apply_view, pack_images,
                                  resized_crops, sample_view_params)
from helpers.gpu_views import (crops_of, mixed_photos, photos, reference_view,
                               sizes_of, strong_params, to_float)


# ---------------------------------------------------------------- sampling
def test_crop_boxes_follow_torchvision_distribution():
    """Area fraction, log aspect ratio and offsets against
    ``RandomResizedCrop.get_params`` (two-sample KS, p > 1e-3), for a
    common and an extreme image shape (where the centre-crop fallback
    happens as often as in torchvision)."""
    n = 4000
    torch.manual_seed(0)
    for height, width in ((43, 64), (12, 200)):
        ours = sample_view_params(
            torch.tensor([[height, width]] * n),
            torch.Generator().manual_seed(1)).boxes
        theirs = torch.tensor([
            T.RandomResizedCrop.get_params(
                torch.empty(1, height, width), (0.2, 1.0), (3 / 4, 4 / 3))
            for _ in range(n)
        ])
        for stat in (lambda b: b[:, 2] * b[:, 3],
                     lambda b: torch.log(b[:, 3] / b[:, 2]), lambda b: b[:, 0],
                     lambda b: b[:, 1]):
            p = stats.ks_2samp(
                stat(ours.double()).numpy(),
                stat(theirs.double()).numpy()).pvalue
            assert p > 1e-3, (height, width, p)
        assert (ours[:, 0] + ours[:, 2] <= height).all()
        assert (ours[:, 1] + ours[:, 3] <= width).all()
        assert (ours[:, 2:] > 0).all()
    # 12 x 200: no draw fits, as in torchvision: the fallback is the
    # centre crop clamped to ratio 4/3 (12 x 16)
    fallback = (ours == torch.tensor([0, 92, 12, 16])).all(1).float().mean()
    theirs_fb = (theirs == torch.tensor([0, 92, 12, 16])).all(1).float()
    assert abs(fallback - theirs_fb.mean()) < 0.03


def test_flip_grayscale_and_jitter_parameters():
    """Rates within 4 standard errors of 0.5 and 0.2; factors uniform in
    [0.6, 1.4] (hue [-0.4, 0.4]) by KS; the order a uniformly random
    permutation per image (all 24 seen, each within 25% of 1/24)."""
    n = 20000
    params = strong_params(torch.tensor([[43, 64]] * n))
    for rate, p in ((params.flip.float().mean(), 0.5),
                    (params.gray.float().mean(), 0.2)):
        assert abs(rate - p) < 4 * (p * (1 - p) / n)**0.5
    for column, (low, high) in enumerate([(0.6, 1.4)] * 3 + [(-0.4, 0.4)]):
        values = params.factors[:, column].double().numpy()
        assert low <= values.min() and values.max() <= high
        assert stats.kstest(values, 'uniform', (low, high - low)).pvalue \
            > 1e-3
    assert (params.order.sort(dim=1).values == torch.arange(4)).all()
    _, counts = torch.unique(params.order, dim=0, return_counts=True)
    assert len(counts) == 24
    assert (counts.float() / n - 1 / 24).abs().max() < 0.25 / 24


def test_weak_view_has_no_colour_parameters():
    params = sample_view_params(
        torch.tensor([[43, 64]] * 4),
        torch.Generator().manual_seed(0))
    assert params.gray is None and params.order is None


# ------------------------------------------------------ fixed parameters
def test_views_equal_torchvision_tensor_transforms():
    """With the same parameters, the batched views of images of several
    sizes (crops up- and downsampled) equal torchvision's functionals
    applied image by image on float tensors (to 1e-5)."""
    images = mixed_photos(24)
    params = strong_params(sizes_of(images))
    floats = [to_float(im) for im in images]
    views = apply_view(crops_of(floats, params.boxes, 32), params)
    for i, image in enumerate(floats):
        torch.testing.assert_close(views[i],
                                   reference_view(image, params, i, 32),
                                   atol=1e-5, rtol=0)


def test_jitter_order_is_per_sample():
    """One image, same factors, two orders: each output follows its own
    order (and they differ)."""
    image = to_float(photos(1)[0])
    params = ViewParams(
        boxes=torch.tensor([[0, 0, 43, 64]] * 2),
        flip=torch.tensor([False, False]), gray=torch.tensor([False, False]),
        order=torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]),
        factors=torch.tensor([[1.4, 0.6, 1.4, 0.3]] * 2))
    views = apply_view(crops_of([image, image], params.boxes, 32), params)
    assert (views[0] - views[1]).abs().max() > 0.05
    for i in range(2):
        torch.testing.assert_close(views[i],
                                   reference_view(image, params, i, 32),
                                   atol=1e-5, rtol=0)


def test_views_match_pil_transforms_within_tolerance():
    """Against the released transforms on PIL images (8-bit), from the
    uint8 pixels as the preprocessor resamples them: the weak view (crop,
    resize, flip) within 1.5 grey levels everywhere (torchvision's
    antialiased bilinear vs PIL's); the strong view within 2 levels on
    average and 12 at the 99th percentile, PIL rounding to 8 bits after
    each adjustment and shifting hue in 8-bit HSV (up to ~10 levels on
    saturated colours)."""
    images = mixed_photos(32)
    sizes = sizes_of(images)
    pixels = [
        torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()
        for im in images
    ]
    weak = sample_view_params(sizes, torch.Generator().manual_seed(3))
    strong = strong_params(sizes, seed=4)
    diffs = {}
    for name, params in (('weak', weak), ('strong', strong)):
        views = apply_view(crops_of(pixels, params.boxes, 32, 1 / 255), params)
        ours = (views * 255).permute(0, 2, 3, 1).numpy()
        ref = np.stack([
            np.asarray(reference_view(im, params, i, 32), dtype=np.float32)
            for i, im in enumerate(images)
        ])
        diffs[name] = np.abs(ours - ref)
    assert diffs['weak'].max() <= 1.5
    assert diffs['strong'].mean() <= 2.0
    assert np.percentile(diffs['strong'], 99) <= 12


def test_resized_crops_check_boxes_and_packing_on_the_host():
    """A box outside its image, or packed images that end before a crop
    row the matrix products read, is a ValueError raised from the host's
    geometry (the pixels on the meta device, where reading one raises)."""
    images = [torch.zeros(3, 20, 30), torch.zeros(3, 25, 18)]
    flat, offsets, sizes = pack_images(images)
    meta = flat.to('meta')
    boxes = torch.tensor([[0, 0, 20, 30], [5, 1, 20, 17]])
    assert resized_crops(meta, offsets, sizes, boxes, 8).shape == (2, 3, 8, 8)
    for outside in ([0, 0, 21, 30], [-1, 0, 5, 5], [0, 13, 5,
                                                    18], [0, 0, 0, 5]):
        with pytest.raises(ValueError, match='not inside its image'):
            resized_crops(meta, offsets, sizes,
                          torch.tensor([outside, [0, 0, 5, 5]]), 8)
    # without the padding the row windows reach past the last image
    with pytest.raises(ValueError, match='end before the last crop row'):
        resized_crops(meta[:-18], offsets, sizes, boxes, 8)
