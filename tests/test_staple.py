"""medfuse.fusion.staple: follows good raters, equals SimpleITK called directly, undecided voxels, bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from medfuse.errors import ValidationError
from medfuse.fusion.staple import staple, staple_binary

sitk = pytest.importorskip("SimpleITK")


def truth_and_raters(rng: np.random.Generator, shape=(16, 40, 40)):
    """A 3-label phantom, two good raters (2% noise) and one bad one (40% noise, over-segments label 1)."""
    z, y, x = np.indices(shape)
    truth = np.zeros(shape, np.uint8)
    truth[((z - 8) / 6) ** 2 + ((y - 20) / 14) ** 2 + ((x - 20) / 14) ** 2 < 1] = 1
    truth[((z - 8) / 4) ** 2 + ((y - 18) / 6) ** 2 + ((x - 24) / 5) ** 2 < 1] = 2
    raters = []
    for noise in (0.02, 0.02, 0.4):
        m = truth.copy()
        flip = rng.random(shape) < noise
        m[flip] = rng.integers(0, 3, size=int(flip.sum()))
        raters.append(m)
    raters[2][((z - 8) / 7) ** 2 + ((y - 20) / 17) ** 2 + ((x - 20) / 17) ** 2 < 1] = 1
    return truth, raters


def direct(maps, undecided, prior=None):
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(undecided)
    if prior is not None:
        f.SetPriorProbabilities(list(prior))
    return sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m) for m in maps]))


def test_staple_follows_the_good_raters(rng):
    truth, raters = truth_and_raters(rng)
    fused = staple(raters)
    assert fused.dtype == np.uint8 and fused.shape == truth.shape
    accuracy = [(r == truth).mean() for r in raters]
    assert (fused == truth).mean() > 0.97
    assert (fused == truth).mean() > accuracy[2] + 0.2
    agree = raters[0] == raters[1]
    assert (fused[agree] == raters[0][agree]).mean() > 0.99
    # the bad rater's over-segmentation of label 1 is rejected
    over = (raters[2] == 1) & (truth == 0) & agree
    assert (fused[over] == 0).mean() > 0.95


def test_staple_equals_simpleitk(rng):
    _, raters = truth_and_raters(rng)
    np.testing.assert_array_equal(staple(raters, undecided_label=3), direct(raters, 3))
    prior = [0.7, 0.2, 0.1]
    np.testing.assert_array_equal(staple(raters, undecided_label=3, prior_probabilities=prior),
                                  direct(raters, 3, prior))
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(3)
    f.SetMaximumNumberOfIterations(2)
    expected = sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m) for m in raters]))
    np.testing.assert_array_equal(staple(raters, undecided_label=3, max_iterations=2), expected)


def test_staple_input_forms_and_dtypes(rng):
    _, raters = truth_and_raters(rng, shape=(6, 20, 22))
    expected = staple(raters)
    np.testing.assert_array_equal(staple(np.stack(raters)), expected)
    np.testing.assert_array_equal(staple([r.astype(np.int64) for r in raters]), expected)
    np.testing.assert_array_equal(staple([r.astype(">i2") for r in raters]), expected)
    np.testing.assert_array_equal(staple([np.asfortranarray(r) for r in raters]), expected)
    np.testing.assert_array_equal(staple([r[3] for r in raters]), direct([r[3] for r in raters], 3))  # 2-D
    masks = [r == 1 for r in raters]
    np.testing.assert_array_equal(staple(masks), direct([m.astype(np.uint8) for m in masks], 2))
    wide = [r.astype(np.uint16) * 150 for r in raters]  # labels 0, 150, 300
    out = staple(wide)
    assert out.dtype == np.uint16 and set(np.unique(out)) <= {0, 150, 300}
    assert staple([np.zeros((0, 3, 3), np.uint8)] * 2).shape == (0, 3, 3)


def test_staple_undecided_voxels():
    zeros = np.zeros((3, 4, 5), np.uint8)
    ones = np.ones((3, 4, 5), np.uint8)
    # two raters that disagree everywhere: STAPLE cannot decide anywhere
    assert (direct([zeros, ones], 2) == 2).all()
    fused = staple([zeros, ones])
    assert fused.dtype == np.uint8 and (fused == 0).all()  # majority vote, tie -> lowest label
    assert (staple([ones, zeros]) == 0).all()
    assert (staple([zeros, ones], undecided_label=7) == 7).all()
    assert staple([zeros, ones], undecided_label=999).dtype == np.uint16


def test_staple_bad_input(rng):
    m = np.zeros((4, 5, 6), np.uint8)
    cases = [
        (([],), {}, r"`label_maps` must hold at least one"),
        (([m, m[:, :, :5]],), {}, r"`label_maps\[1\]` has \(4, 5, 5\)"),
        (([m, m.astype(np.float32)],), {}, r"`label_maps\[1\]` must be an integer or boolean"),
        (([m, m.astype(np.int8) - 1],), {}, r"`label_maps\[1\]` holds the negative label -1"),
        (([m, m + 5],), {"num_classes": 3}, r"hold label 5.*num_classes=6"),
        (([m, m],), {"prior_probabilities": [0.5, 0.5]}, r"`prior_probabilities` must hold 1"),
        (([m, m + 1],), {"prior_probabilities": [-1, 2]}, r"`prior_probabilities`"),
        (([m, m],), {"max_iterations": 0}, r"`max_iterations` must be >= 1"),
        (([m, m],), {"termination_threshold": 0.0}, r"`termination_threshold` must be positive"),
        (([m, m],), {"undecided_label": -2}, r"`undecided_label` must be >= 0"),
        (([m[0, 0], m[0, 0]],), {}, r"must be a 2-D or 3-D map"),
        ((np.zeros((2, 1, 3, 4, 5), np.uint8),), {}, r"\(M, Z, Y, X\)"),
        (("abc",), {}, r"`label_maps` must be a sequence"),
    ]
    for args, kwargs, pattern in cases:
        with pytest.raises(ValidationError, match=pattern):
            staple(*args, **kwargs)


def test_staple_binary_equals_simpleitk_and_follows_good_raters(rng):
    truth, raters = truth_and_raters(rng)
    masks = [r == 1 for r in raters]
    f = sitk.STAPLEImageFilter()
    expected = sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks]))
    probabilities = staple_binary(masks)
    assert probabilities.dtype == np.float32
    np.testing.assert_array_equal(probabilities, expected.astype(np.float32))
    np.testing.assert_array_equal(staple_binary(raters, foreground_value=1), probabilities)
    np.testing.assert_array_equal(staple_binary(np.stack([r.astype(np.int32) for r in raters]), foreground_value=1),
                                  probabilities)
    assert ((probabilities > 0.5) == (truth == 1)).mean() > 0.97
    g = sitk.STAPLEImageFilter()
    g.SetMaximumIterations(3)
    g.SetConfidenceWeight(0.5)
    capped = sitk.GetArrayFromImage(g.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks]))
    np.testing.assert_array_equal(staple_binary(masks, max_iterations=3, confidence_weight=0.5),
                                  capped.astype(np.float32))
    with pytest.raises(ValidationError, match=r"`confidence_weight`"):
        staple_binary(masks, confidence_weight=0)
    with pytest.raises(ValidationError, match=r"`masks\[0\]` must be an integer or boolean"):
        staple_binary([truth.astype(float)])


def test_staple_needs_no_simpleitk(monkeypatch, rng):
    _, raters = truth_and_raters(rng, shape=(4, 10, 12))
    expected, expected_binary = staple(raters), staple_binary(raters)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # makes `import SimpleITK` fail
    np.testing.assert_array_equal(staple(raters), expected)
    np.testing.assert_array_equal(staple_binary(raters), expected_binary)


def test_staple_equals_simpleitk_on_raters_from_the_real_label_map(real_data):
    """3 good raters (1-voxel shifts, an erosion), 2 poor (8-voxel shift; 3 organs missing): every voxel."""
    import nibabel as nib

    from _reference.twin_staple import real_raters

    labels = np.asarray(nib.load(str(real_data / "case_labels.nii.gz")).dataobj).transpose(2, 1, 0)
    raters = real_raters(np.ascontiguousarray(labels[::2, ::6, ::6]).astype(np.uint8))
    assert len({int(r.max()) for r in raters}) == 1 and int(raters[0].max()) == 11
    fused = staple(raters, undecided_label=12)
    expected = direct(raters, 12)
    assert (fused == expected).mean() >= 0.995
    np.testing.assert_array_equal(fused, expected)  # in fact on every voxel (float64 vs float32 never flips one)
    masks = [(r == 1).astype(np.uint8) for r in raters]
    probabilities = staple_binary(masks)
    g = sitk.STAPLEImageFilter()
    want = sitk.GetArrayFromImage(g.Execute([sitk.GetImageFromArray(m) for m in masks]))
    np.testing.assert_allclose(probabilities, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(probabilities > 0.5, want > 0.5)
