"""Plans reading (the real competition plans) and nnU-Net v1 preprocessing: crop, transpose, resample,
normalise; label resizing and the separate-z rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medfuse.errors import FormatError, ValidationError
from medfuse.inference.plans import Plans, load_plans
from medfuse.inference.preprocess import nonzero_bbox, normalize, preprocess, target_shape
from medfuse.inference.resample import resample_volume, resize_labels, separate_z_axis
from medfuse.synthetic import phantom
from paddle_models import make_plans, make_plans_2d

# ------------------------------------------------------------------------------------------------------
# the real plans


@pytest.fixture(scope="module")
def real_plans(real_data):
    return load_plans(real_data / "nnUNetPlansv2.1_plans_3D.pkl")


def test_real_plans_are_read(real_plans):
    p = real_plans
    assert p.modalities == ("CT",) and p.normalization_schemes == ("CT",) and p.use_mask_for_norm == (False,)
    assert p.num_classes == 11 and p.num_output_channels == 12
    assert p.transpose_forward == (0, 1, 2) and p.transpose_backward == (0, 1, 2)
    assert [s.patch_size for s in p.stages] == [(80, 160, 160), (64, 160, 160)]
    np.testing.assert_allclose(p.stage(0).spacing, (3.35537784, 1.67850664, 1.67850664), rtol=1e-7)
    np.testing.assert_allclose(p.stage(1).spacing, (2.0, 0.78014851, 0.78014851), rtol=1e-7)
    ip = p.intensity_properties[0]
    assert ip is not None
    assert (ip.percentile_00_5, ip.percentile_99_5) == (-994.0, 396.0)
    assert ip.mean == pytest.approx(50.139824) and ip.sd == pytest.approx(150.66647)
    assert all(s.dimension == 3 for s in p.stages)


def test_real_plans_preprocess_a_ct_like_case(real_plans):
    # a case like the real one: 5 mm slices, 0.58 mm pixels, zero padding around the scanned region
    ph = phantom((12, 96, 96), num_labels=3, spacing=(5.0, 0.5833, 0.5833), seed=3,
                 crop_margin=((2, 1), (9, 4), (3, 11)))
    pre = preprocess(ph.image[None], ph.spacing, plans=real_plans, stage=1)
    assert pre.crop_bbox == ph.crop_bbox
    crop = ph.image[tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)]
    assert pre.shape_after_cropping == crop.shape
    target = real_plans.stage(1).spacing
    want_shape = tuple(round(s * sp / t) for s, sp, t in zip(crop.shape, ph.spacing, target, strict=True))
    assert pre.data.shape == (1, *want_shape) and pre.data.dtype == np.float32
    assert pre.target_spacing == target
    # reference: anisotropic (5 / 0.58 > 3) -> cubic in-plane slice by slice, nearest neighbour along z,
    # pixel centres aligned at the edges; then CT normalisation with the dataset's statistics
    ref = _reference_resample(crop.astype(np.float64), want_shape, order=3, separate_axis=0)
    ref = (np.clip(ref, -994.0, 396.0) - 50.139824) / 150.66647
    np.testing.assert_allclose(pre.data[0], ref, atol=2e-4)
    assert pre.data.min() > -7 and pre.data.max() < 3


def _reference_resample(vol, shape, *, order, separate_axis=None):
    """map_coordinates at (i + 0.5) * old / new - 0.5, edge values repeated (scikit-image's resize)."""
    def coords(old, new):
        return (np.arange(new) + 0.5) * old / new - 0.5

    if separate_axis is None:
        grid = np.meshgrid(*(coords(o, n) for o, n in zip(vol.shape, shape, strict=True)), indexing="ij")
        return ndimage.map_coordinates(vol, grid, order=order, mode="nearest")
    assert separate_axis == 0
    inplane = np.stack([
        ndimage.map_coordinates(s, np.meshgrid(coords(vol.shape[1], shape[1]), coords(vol.shape[2], shape[2]),
                                               indexing="ij"), order=order, mode="nearest")
        for s in vol
    ])
    z = np.clip(np.round(coords(vol.shape[0], shape[0])), 0, vol.shape[0] - 1).astype(int)
    return inplane[z]


def test_isotropic_resampling_is_one_3d_spline():
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.standard_normal((9, 11, 13)), 1.5)
    got = resample_volume(vol, (14, 7, 20), order=3)
    np.testing.assert_allclose(got, _reference_resample(vol, (14, 7, 20), order=3), atol=1e-5)
    got = resample_volume(vol, (5, 16, 9), order=1)
    np.testing.assert_allclose(got, _reference_resample(vol, (5, 16, 9), order=1), atol=1e-5)


def test_same_shape_is_copied():
    vol = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    out = resample_volume(vol, (2, 3, 4), order=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, vol)


@pytest.mark.parametrize("spacing,target,axis", [
    ((5.0, 0.58, 0.58), (2.0, 0.78, 0.78), 0),   # thick slices: z apart
    ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), None),
    ((1.0, 1.0, 1.0), (1.0, 3.5, 1.0), 1),       # the target is anisotropic
    ((4.0, 4.0, 1.0), (1.0, 1.0, 1.0), None),    # two axes tie for the largest spacing
    ((3.0, 1.0, 1.0), (1.0, 1.0, 1.0), None),    # exactly 3 is not above the threshold
])
def test_separate_z_rule(spacing, target, axis):
    assert separate_z_axis(spacing, target) == axis


# ------------------------------------------------------------------------------------------------------
# the pieces


def test_nonzero_bbox():
    img = np.zeros((2, 5, 6, 7), np.float32)
    img[0, 1, 2, 3] = 5
    img[1, 3, 4, 6] = -1
    assert nonzero_bbox(img) == ((1, 4), (2, 5), (3, 7))
    assert nonzero_bbox(np.zeros((1, 3, 4, 5))) == ((0, 3), (0, 4), (0, 5))


def test_target_shape_rounds_like_nnunet():
    assert target_shape((89, 351, 501), (5.0, 0.5833333, 0.5833333), (3.35537784, 1.67850664, 1.67850664)) == (
        133, 122, 174)  # the real case's size_after_resampling


def test_no_resampling_needed_gives_exact_ct_normalisation():
    plans = Plans.from_dict(make_plans())
    rng = np.random.default_rng(0)
    img = np.zeros((1, 10, 12, 14), np.int16)
    img[0, 2:9, 1:12, 3:13] = rng.integers(-1500, 1500, (7, 11, 10))
    pre = preprocess(img, plans.stage(1).spacing, plans=plans, stage=1)
    assert pre.crop_bbox == ((2, 9), (1, 12), (3, 13))
    want = (np.clip(img[0, 2:9, 1:12, 3:13].astype(np.float64), -990, 300) - 40) / 150
    np.testing.assert_allclose(pre.data[0], want, rtol=1e-6, atol=1e-6)


def test_transpose_forward_is_applied_before_resampling():
    rng = np.random.default_rng(2)
    img = ndimage.gaussian_filter(rng.standard_normal((1, 9, 14, 12)), 1) * 300
    tf = (2, 0, 1)
    stages = ({"patch_size": np.array([8, 8, 8]), "current_spacing": np.array([1.2, 2.0, 1.5])},)
    plans_t = Plans.from_dict(make_plans(stages=stages, transpose_forward=tf))
    plans_i = Plans.from_dict(make_plans(stages=stages))
    spacing = (2.0, 1.0, 1.5)
    got = preprocess(img, spacing, plans=plans_t, stage=0)
    want = preprocess(img.transpose(0, 3, 1, 2), tuple(spacing[i] for i in tf), plans=plans_i, stage=0)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-6, atol=1e-6)
    assert got.crop_bbox == ((0, 9), (0, 14), (0, 12))  # the box stays in the image's own order


def test_2d_stage_keeps_the_slice_spacing():
    plans = Plans.from_dict(make_plans_2d(spacing=(2.5, 1.6, 1.6)))
    img = np.ones((1, 7, 32, 32), np.float32)
    pre = preprocess(img, (5.0, 0.8, 0.8), plans=plans, stage=0)
    assert pre.data.shape == (1, 7, 16, 16) and pre.target_spacing == (5.0, 1.6, 1.6)


@pytest.mark.parametrize("scheme", ["nonCT", "CT2", "noNorm"])
def test_other_schemes(scheme):
    rng = np.random.default_rng(4)
    ch = (rng.standard_normal((6, 7, 8)) * 200 + 30).astype(np.float32)
    orig = ch.copy()
    props = Plans.from_dict(make_plans()).intensity_properties[0]
    normalize(ch, scheme=scheme, properties=props)
    if scheme == "noNorm":
        np.testing.assert_array_equal(ch, orig)
    elif scheme == "nonCT":
        np.testing.assert_allclose([ch.mean(), ch.std()], [0, 1], atol=1e-5)
    else:
        clipped = np.clip(orig, -990, 300)
        inside = (orig > -990) & (orig < 300)
        want = (clipped - clipped[inside].mean()) / clipped[inside].std()
        np.testing.assert_allclose(ch, want, rtol=1e-4, atol=1e-4)


def test_mask_for_norm_zeroes_the_outside():
    plans_dict = make_plans(scheme="nonCT")
    plans_dict["use_mask_for_norm"] = {0: True}
    plans = Plans.from_dict(plans_dict)
    img = np.zeros((1, 6, 10, 10), np.float32)
    img[0, 1:5, 2:8, 2:8] = np.random.default_rng(5).random((4, 6, 6)) + 1
    img[0, 1:5, 2:4, 2:4] = 0  # a notch at the body's edge: outside the mask
    img[0, 2:4, 4:6, 4:6] = 0  # a hole inside the body: inside the (hole-filled) mask
    pre = preprocess(img, plans.stage(1).spacing, plans=plans, stage=1)
    assert pre.crop_bbox == ((1, 5), (2, 8), (2, 8))
    data = pre.data[0]
    np.testing.assert_array_equal(data[:, 0:2, 0:2], 0)
    assert np.all(data[1:3, 2:4, 2:4] < -1)  # the hole's 0 normalised like the rest of the body
    mask = np.ones(data.shape, bool)
    mask[:, 0:2, 0:2] = False
    np.testing.assert_allclose([data[mask].mean(), data[mask].std()], [0, 1], atol=1e-4)


def test_unknown_scheme_is_refused_when_the_plans_are_read():
    with pytest.raises(ValidationError, match="'MRI-custom'"):
        Plans.from_dict(make_plans(scheme="MRI-custom"))


def test_ct_without_intensity_properties():
    d = make_plans()
    d["dataset_properties"] = {}
    with pytest.raises(FormatError, match="intensityproperties"):
        Plans.from_dict(d)


def test_stage_out_of_range_lists_the_stages():
    plans = Plans.from_dict(make_plans())
    with pytest.raises(ValidationError, match=r"stage 1: 3D, patch \[8, 16, 16\]"):
        plans.stage(2)


def test_bad_plans_files(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        load_plans(tmp_path / "nope.pkl")
    with pytest.raises(FormatError, match="plans_per_stage"):
        Plans.from_dict({k: v for k, v in make_plans().items() if k != "plans_per_stage"})
    d = make_plans()
    d["transpose_forward"] = [0, 0, 1]
    with pytest.raises(FormatError, match="permutation"):
        Plans.from_dict(d)


def test_wrong_modality_count_is_named():
    plans = Plans.from_dict(make_plans(num_modalities=2))
    with pytest.raises(ValidationError, match="2: \\['CT', 'CT'\\]"):
        preprocess(np.zeros((1, 4, 4, 4)), (1, 1, 1), plans=plans, stage=0)


# ------------------------------------------------------------------------------------------------------
# label resizing


def test_resize_labels_round_trip_and_order():
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[2:6, 2:6, 2:6] = 1
    lab[3:5, 3:5, 3:5] = 2
    up = resize_labels(lab, (16, 16, 16))
    np.testing.assert_array_equal(resize_labels(up, (8, 8, 8)), lab)
    assert up.dtype == np.uint8 and set(np.unique(up)) == {0, 1, 2}
    # a label absent from label_values is not drawn
    assert 2 not in resize_labels(lab, (16, 16, 16), label_values=[1])
    np.testing.assert_array_equal(resize_labels(lab, lab.shape), lab)


@pytest.mark.parametrize("order", [0, 1])
def test_linear_and_nearest_fast_path_equal_scipy_zoom(order):
    rng = np.random.default_rng(order)
    for _ in range(25):
        shape = tuple(int(v) for v in rng.integers(1, 12, 3))
        new = tuple(int(v) for v in rng.integers(1, 25, 3))
        vol = rng.random(shape).astype(np.float32)
        want = ndimage.zoom(vol, [n / o for o, n in zip(shape, new, strict=True)], order=order, mode="nearest",
                            grid_mode=True)
        np.testing.assert_allclose(resample_volume(vol, new, order=order), want, atol=1e-6)
        # separate z: linear in-plane per slice, nearest along z
        inplane = np.stack([ndimage.zoom(s, [new[1] / shape[1], new[2] / shape[2]], order=order, mode="nearest",
                                         grid_mode=True) for s in vol])
        want = ndimage.zoom(inplane, (new[0] / shape[0], 1, 1), order=0, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(resample_volume(vol, new, order=order, separate_axis=0, order_z=0), want,
                                   atol=1e-6)
