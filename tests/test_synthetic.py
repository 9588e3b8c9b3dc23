"""Tests of medfuse.synthetic: phantoms and simulated members."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medfuse import ValidationError
from medfuse.synthetic import (
    ORGAN_NAMES,
    Phantom,
    phantom,
    simulate_labels,
    simulate_members,
    simulate_probabilities,
)


def dice_per_class(reference: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of labels 1..K-1 (nan when absent from both), plain numpy."""
    out = []
    for c in range(1, num_classes):
        r, p = reference == c, prediction == c
        denom = r.sum() + p.sum()
        out.append(2.0 * (r & p).sum() / denom if denom else np.nan)
    return np.array(out)


@pytest.fixture(scope="module")
def ph() -> Phantom:
    return phantom((40, 96, 96), spacing=(2.5, 0.8, 0.8), seed=7)


# --------------------------------------------------------------------------------------------- phantom


def test_phantom_defaults_and_sizes() -> None:
    p = phantom()
    assert p.labels.shape == p.image.shape == (64, 128, 128)
    assert p.labels.dtype == np.uint8 and p.image.dtype == np.float32
    assert p.num_classes == 12 and p.num_labels == 11 and p.label_names == ORGAN_NAMES
    assert p.spacing == (2.5, 0.8, 0.8) and p.geometry.shape == (64, 128, 128)
    counts = np.bincount(p.labels.ravel(), minlength=12)
    assert np.all(counts[1:] > 0)
    names = dict(zip(ORGAN_NAMES, counts[1:], strict=True))
    assert names["liver"] == counts[1:].max()  # liver largest
    for small in ("gallbladder", "esophagus", "pancreas"):
        assert names[small] < names["spleen"] < names["liver"]
    assert names["esophagus"] < names["aorta"]
    # each organ one 6-connected component
    for lab in range(1, 12):
        assert ndimage.label(p.labels == lab)[1] == 1


def test_phantom_is_deterministic_by_seed() -> None:
    a, b, c = phantom((24, 48, 48), seed=3), phantom((24, 48, 48), seed=3), phantom((24, 48, 48), seed=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.crop_bbox == b.crop_bbox
    assert not np.array_equal(a.labels, c.labels)


def nonzero_box(a: np.ndarray) -> tuple[tuple[int, int], ...]:
    idx = np.nonzero(a)
    return tuple((int(i.min()), int(i.max()) + 1) for i in idx)


@pytest.mark.parametrize("margin", [None, 3, (1, 5, 2), ((0, 4), (6, 1), (2, 9))])
def test_crop_bbox_is_the_nonzero_box_of_the_image(margin: object) -> None:
    p = phantom((32, 64, 64), seed=1, crop_margin=margin)  # type: ignore[arg-type]
    assert p.crop_bbox == nonzero_box(p.image)
    assert p.crop_bbox != ((0, 32), (0, 64), (0, 64))  # non-trivial
    # every label lies inside the crop box; air around the body inside it
    assert nonzero_box(p.labels)[0][0] >= p.crop_bbox[0][0]
    inside = p.image[tuple(slice(lo, hi) for lo, hi in p.crop_bbox)]
    assert np.all(inside != 0) and inside.min() < -900 and np.median(inside[p.labels[
        tuple(slice(lo, hi) for lo, hi in p.crop_bbox)] == 3]) > 60  # liver enhanced
    if margin == ((0, 4), (6, 1), (2, 9)):
        assert p.crop_bbox == ((0, 28), (6, 63), (2, 55))


def test_phantom_ct_intensities(ph: Phantom) -> None:
    img, lab = ph.image, ph.labels
    box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
    assert np.all(img[lab == 0][img[lab == 0] != 0] < 500)
    assert abs(np.median(img[lab == 6]) - 5) < 10  # bladder ~ water
    assert abs(np.median(img[lab == 1]) - 180) < 10  # kidney
    assert np.median(img[box][img[box] < -500]) < -950  # air
    assert np.all(img == np.round(img))


def test_phantom_flipped_direction_keeps_anatomy() -> None:
    sym = ((2, 2), (4, 4), (3, 3))
    a = phantom((24, 64, 64), seed=5, crop_margin=sym)
    b = phantom((24, 64, 64), seed=5, crop_margin=sym, direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert b.geometry.direction == (1, 0, 0, 0, -1, 0, 0, 0, 1)
    np.testing.assert_array_equal(b.labels, a.labels[:, ::-1])
    # the physical position of a labelled voxel is the same in both
    idx = np.argwhere(a.labels == 3)[0]
    flipped = idx.copy()
    flipped[1] = 63 - idx[1]

    def physical(g, ijk):  # ijk in array order
        d = np.reshape(g.direction, (3, 3))
        return np.asarray(g.origin) + d @ (np.asarray(ijk[::-1]) * g.itk_spacing)

    np.testing.assert_allclose(physical(a.geometry, idx), physical(b.geometry, flipped))
    # asymmetric margins are kept in the array's own coordinates
    c = phantom((24, 64, 64), seed=5, crop_margin=((0, 4), (6, 1), (2, 9)), direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert c.crop_bbox == ((0, 20), (6, 63), (2, 55)) == nonzero_box(c.image)


def test_phantom_label_counts() -> None:
    few = phantom((24, 48, 48), num_labels=3, seed=0)
    assert set(np.unique(few.labels)) == {0, 1, 2, 3} and few.label_names == ORGAN_NAMES[:3]
    many = phantom((24, 48, 48), num_labels=15, seed=0)
    assert set(np.unique(many.labels)) == set(range(16))
    assert many.label_names[-1] == "structure_15"
    tiny = phantom((8, 8, 8), seed=0)
    assert set(np.unique(tiny.labels)) == set(range(12))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (4, 64, 64)}, "shape"),
        ({"shape": (64, 64)}, "shape"),
        ({"num_labels": 0}, "num_labels"),
        ({"num_labels": 300}, "num_labels"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"seed": -1}, "seed"),
        ({"crop_margin": (1, 2)}, "crop_margin"),
        ({"crop_margin": -1}, "crop_margin"),
        ({"crop_margin": 40}, "crop_margin"),
        ({"crop_margin": 1.5}, "crop_margin"),
        ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction"),
        ({"direction": (1, 0, 0)}, "direction"),
    ],
)
def test_phantom_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"shape": (32, 64, 64), **kwargs}
    with pytest.raises(ValidationError, match=match):
        phantom(**args)


# --------------------------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_probabilities_sum_to_one(ph: Phantom, dtype: type) -> None:
    p = simulate_probabilities(ph, dtype=dtype, quality=0.8, false_positive_blobs=2, seed=1)
    assert p.shape == (12, *ph.shape) and p.dtype == dtype
    assert np.all(p >= 0) and np.all(p <= 1)
    tol = 2e-3 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=0), 1.0, atol=tol)
    # far from everything: exactly background
    assert np.all(p[0][ph.labels == 0][:10] >= 0.99)
    assert p[0, 0, 0, 0] == 1 and np.all(p[1:, 0, 0, 0] == 0)


def test_simulation_is_deterministic_by_seed(ph: Phantom) -> None:
    kw = {"quality": 0.75, "false_positive_blobs": 2}
    a = simulate_probabilities(ph, seed=11, **kw)
    b = simulate_probabilities(ph, seed=11, **kw)
    c = simulate_probabilities(ph, seed=12, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(simulate_labels(ph, seed=11, **kw), simulate_labels(ph, seed=11, **kw))
    seq = np.random.SeedSequence(5)
    np.testing.assert_array_equal(simulate_labels(ph, seed=seq), simulate_labels(ph, seed=seq))


def test_labels_are_the_argmax_of_the_probabilities(ph: Phantom) -> None:
    kw = {"quality": 0.7, "false_positive_blobs": 1, "class_strength": {3: 0.5}}
    p = simulate_probabilities(ph, dtype=np.float32, seed=3, **kw)
    lab = simulate_labels(ph, seed=3, **kw)
    assert lab.dtype == np.uint8
    assert (p.argmax(axis=0) == lab).mean() > 0.9999


def test_better_quality_gives_higher_dice(ph: Phantom) -> None:
    means = []
    for q in (0.95, 0.85, 0.7, 0.5):
        lab = simulate_labels(ph, quality=q, seed=2)
        means.append(np.nanmean(dice_per_class(ph.labels, lab, ph.num_classes)))
    assert means == sorted(means, reverse=True)
    assert means[0] > 0.9 and means[-1] < 0.75
    members = simulate_members(ph, qualities=(0.9, 0.8, 0.7), soft=True, seed=4)
    scores = [np.nanmean(dice_per_class(ph.labels, m.argmax(0), 12)) for m in members]
    assert scores == sorted(scores, reverse=True)


def test_perfect_quality_reproduces_the_reference(ph: Phantom) -> None:
    lab = simulate_labels(ph, quality=1.0, seed=0)
    np.testing.assert_array_equal(lab, ph.labels)


def test_dilation_and_erosion_move_the_boundary(ph: Phantom) -> None:
    base = np.count_nonzero(simulate_labels(ph, boundary_noise=0, dilation=0, seed=0) == 3)
    grown = np.count_nonzero(simulate_labels(ph, boundary_noise=0, dilation={3: 2.0}, seed=0) == 3)
    shrunk = np.count_nonzero(simulate_labels(ph, boundary_noise=0, dilation={3: -2.0}, seed=0) == 3)
    assert shrunk < base < grown
    assert base == np.count_nonzero(ph.labels == 3)
    # per class as a (C,) sequence: only class 3 moves (a mapping leaves the others at their random
    # quality-derived shift)
    dil = np.zeros(12)
    dil[3] = 2.0
    lab = simulate_labels(ph, boundary_noise=0, dilation=dil, seed=0)
    assert np.count_nonzero(lab == 1) == np.count_nonzero(ph.labels == 1)
    assert np.count_nonzero(lab == 3) > base
    same = simulate_labels(ph, boundary_noise=0, dilation={c: float(dil[c]) for c in range(1, 12)}, seed=0)
    np.testing.assert_array_equal(lab, same)


def test_missed_labels_are_absent(ph: Phantom) -> None:
    p = simulate_probabilities(ph, missed_labels=(2, 8), false_positive_blobs=3, seed=1)
    assert np.all(p[2] == 0) and np.all(p[8] == 0)
    lab = simulate_labels(ph, missed_labels=[2, 8], seed=1)
    assert not np.isin(lab, [2, 8]).any()
    assert np.isin(lab, [1, 3]).any()


def test_false_positive_blobs_are_disconnected_from_the_organ(ph: Phantom) -> None:
    clean = simulate_labels(ph, quality=0.9, seed=6)
    blobs = simulate_labels(ph, quality=0.9, false_positive_blobs=4, seed=6)
    changed = set(np.unique(blobs[blobs != clean])) - {0}
    assert changed  # some class got extra voxels
    extra_components = 0
    for c in changed:
        n_clean = ndimage.label(clean == c, structure=np.ones((3, 3, 3)))[1]
        lab, n = ndimage.label(blobs == c, structure=np.ones((3, 3, 3)))
        extra_components += n - n_clean
        # the component holding the reference organ's center of mass does not touch any blob
        ref_comp = lab[tuple(np.round(ndimage.center_of_mass(ph.labels == c)).astype(int))]
        assert ref_comp == 0 or np.count_nonzero((lab == ref_comp) & (clean != c)) < 0.02 * np.count_nonzero(
            lab == ref_comp)
    assert extra_components == 4


def test_class_strength_changes_confidence(ph: Phantom) -> None:
    weak = simulate_probabilities(ph, class_strength={3: 0.3}, boundary_noise=0, dilation=0, dtype=np.float32)
    strong = simulate_probabilities(ph, boundary_noise=0, dilation=0, dtype=np.float32)
    inside = ph.labels == 3
    assert weak[3][inside].mean() < strong[3][inside].mean()
    # confidence, not location: a lone organ keeps its boundary
    np.testing.assert_array_equal(weak.argmax(0) == 3, strong.argmax(0) == 3)


def test_simulate_members_hard_and_soft(ph: Phantom) -> None:
    soft = simulate_members(ph, qualities=(0.9, 0.6), seed=1)
    hard = simulate_members(ph, qualities=(0.9, 0.6), soft=False, seed=1)
    assert [m.shape for m in soft] == [(12, *ph.shape)] * 2 and soft[0].dtype == np.float16
    assert [m.shape for m in hard] == [ph.shape] * 2 and hard[0].dtype == np.uint8
    assert not np.array_equal(hard[0], hard[1])
    assert (soft[0].argmax(0) == hard[0]).mean() > 0.999
    again = simulate_members(ph, qualities=(0.9, 0.6), soft=False, seed=1)
    np.testing.assert_array_equal(again[1], hard[1])
    f32 = simulate_members(ph, qualities=(0.8,), dtype=np.float32, missed_labels=(4,))
    assert f32[0].dtype == np.float32 and np.all(f32[0][4] == 0)


def test_error_correlation_shares_errors_between_members(ph: Phantom) -> None:
    # fully shared errors: two seeds, same quality -> the same member
    a = simulate_labels(ph, quality=0.8, seed=1, error_correlation=1.0, shared_seed=5)
    b = simulate_labels(ph, quality=0.8, seed=2, error_correlation=1.0, shared_seed=5)
    np.testing.assert_array_equal(a, b)
    # no sharing: the shared seed is irrelevant
    np.testing.assert_array_equal(simulate_labels(ph, quality=0.8, seed=1, shared_seed=5),
                                  simulate_labels(ph, quality=0.8, seed=1, shared_seed=6))

    def disagreement(rho: float) -> float:
        m = simulate_members(ph, qualities=(0.8, 0.8), soft=False, seed=3, error_correlation=rho)
        return float(np.mean(m[0] != m[1]))

    assert disagreement(0.0) > disagreement(0.6) > disagreement(0.95) > 0


def test_plain_arrays_and_2d(rng: np.random.Generator) -> None:
    ref = np.zeros((40, 50), dtype=np.int16)
    ref[5:20, 5:25] = 1
    ref[25:35, 30:45] = 2
    p = simulate_probabilities(ref, spacing=(1.0, 0.5), quality=0.8, false_positive_blobs=1, seed=0)
    assert p.shape == (3, 40, 50) and p.dtype == np.float16
    np.testing.assert_allclose(p.astype(np.float32).sum(0), 1, atol=2e-3)
    lab = simulate_labels(ref, num_classes=5, quality=1.0)
    np.testing.assert_array_equal(lab, ref)
    p5 = simulate_probabilities(ref.astype(bool), num_classes=5)
    assert p5.shape == (5, 40, 50) and np.all(p5[2:] == 0)


def test_many_classes_use_uint16() -> None:
    ref = np.zeros((6, 6, 6), dtype=np.uint16)
    ref[1:3, 1:3, 1:3] = 300
    lab = simulate_labels(ref, quality=1.0)
    assert lab.dtype == np.uint16
    np.testing.assert_array_equal(lab, ref)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quality": 0.0}, "quality"),
        ({"quality": 1.5}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"num_classes": 3}, "num_classes"),
        ({"boundary_noise": -1.0}, "boundary_noise"),
        ({"boundary_noise": [1.0, 2.0]}, "boundary_noise"),
        ({"dilation": {0: 1.0}}, "dilation"),
        ({"dilation": {99: 1.0}}, "dilation"),
        ({"dilation": float("nan")}, "dilation"),
        ({"class_strength": 0.0}, "class_strength"),
        ({"missed_labels": (0,)}, "missed_labels"),
        ({"missed_labels": (12,)}, "missed_labels"),
        ({"missed_labels": (1.5,)}, "missed_labels"),
        ({"false_positive_blobs": -1}, "false_positive_blobs"),
        ({"dtype": np.float64}, "dtype"),
        ({"dtype": np.int8}, "dtype"),
        ({"seed": -3}, "seed"),
        ({"spacing": (1.0, 1.0)}, "spacing"),
        ({"error_correlation": 1.5}, "error_correlation"),
        ({"error_correlation": "some"}, "error_correlation"),
        ({"error_correlation": 0.5, "shared_seed": -1}, "shared_seed"),
    ],
)
def test_simulation_bad_arguments(ph: Phantom, kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        simulate_probabilities(ph, **kwargs)


def test_bad_references() -> None:
    with pytest.raises(ValidationError, match="reference"):
        simulate_labels(np.zeros((4, 4, 4), dtype=np.float32))
    with pytest.raises(ValidationError, match="reference"):
        simulate_labels(np.zeros((4, 4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValidationError, match="non-negative"):
        simulate_labels(-np.ones((4, 4, 4), dtype=np.int8))
    with pytest.raises(ValidationError, match="false_positive_blobs"):
        simulate_labels(np.zeros((4, 4, 4), dtype=np.uint8), num_classes=3, false_positive_blobs=1)
    crowded = np.ones((6, 6, 6), dtype=np.uint8)
    with pytest.raises(ValidationError, match="no room"):
        simulate_labels(crowded, false_positive_blobs=1)
    with pytest.raises(ValidationError, match="qualities"):
        simulate_members(crowded, qualities=())
    with pytest.raises(ValidationError, match="unknown"):
        simulate_members(crowded, qualities=(0.9,), quality=0.5)


@pytest.mark.real_data
def test_simulation_on_a_real_label_map(real_data) -> None:
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.ReadImage(str(real_data / "case_labels.nii.gz"))
    ref = sitk.GetArrayFromImage(image)[40:80, 200:600:2, 100:620:2]  # a subsampled block keeps it quick
    spacing = tuple(reversed(image.GetSpacing()))
    lab = simulate_labels(ref, spacing=(spacing[0], spacing[1] * 2, spacing[2] * 2), num_classes=12,
                          quality=0.85, false_positive_blobs=2, seed=0)
    d = dice_per_class(ref, lab, 12)
    present = np.bincount(ref.ravel(), minlength=12)[1:] > 0
    assert np.all(d[present] > 0.3)
    assert np.nanmean(d) > 0.7
