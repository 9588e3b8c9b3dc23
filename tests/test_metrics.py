"""medfuse.metrics against the numpy twins in tests/_reference/twin_metrics.py, plus the error messages."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from _reference import twin_metrics as ref_impl
from medfuse._core.optional import has_module
from medfuse._kernels import threads as kernel_threads
from medfuse.errors import MissingDependencyError, ValidationError
from medfuse.metrics import (
    CaseSummary,
    LabelOverlap,
    OverlapResult,
    aggregate_cases,
    confusion as metrics,
    confusion_matrix,
    dice,
    overlap,
    overlap_from_confusion,
)

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
BIG_ENDIAN = [">u2", ">i2", ">u4", ">i4", ">u8", ">i8"]
#: empty, single voxel, odd sizes, sizes around the kernel's 8-voxel words and 2048-voxel blocks
SHAPES = [(0,), (1,), (1, 1, 1), (3, 5, 7), (2, 0, 4), (9,), (130,), (2048,), (2057,), (4103,), (17, 33, 129)]


def blocky(rng: np.random.Generator, shape: tuple[int, ...], k: int, dtype: object = np.uint8,
           run: int = 37, noise: float = 0.05) -> np.ndarray:
    """Label map made of runs of one label (what the fast path sees) with some isolated voxels."""
    n = math.prod(shape)
    a = np.repeat(rng.integers(0, k, size=n // run + 1), run)[:n]
    flip = rng.random(n) < noise
    a[flip] = rng.integers(0, k, size=int(flip.sum()))
    return a.reshape(shape).astype(dtype)


def pair(rng: np.random.Generator, shape: tuple[int, ...], k: int, dtype: object = np.uint8, *,
         run: int = 37, changed: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    reference = blocky(rng, shape, k, dtype, run=run, noise=changed / 2)
    prediction = reference.copy()
    n = prediction.size
    if n:
        change = rng.random(n) < changed
        flat = prediction.reshape(-1)
        flat[change] = rng.integers(0, k, size=int(change.sum())).astype(dtype)
    return reference, prediction


@pytest.fixture(params=["serial", "parallel"])
def kernel_path(request, monkeypatch):
    """Run a test through the single-threaded path (small maps: one contiguous copy at most) and through the
    multi-threaded one (no copy, strided kernel for non-contiguous views) with 3 threads, so chunk
    boundaries fall at odd places whatever the machine's core count."""
    parallel = request.param == "parallel"
    monkeypatch.setattr(metrics, "_MIN_PARALLEL_VOXELS", 0 if parallel else 1 << 62)
    monkeypatch.setattr(kernel_threads, "n_threads", lambda: 3)  # read at each call
    return request.param


# ------------------------------------------------------------------------------------ confusion_matrix
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_confusion_matrix_matches_reference(rng, dtype, shape, kernel_path):
    reference, prediction = pair(rng, shape, 6, dtype)
    np.testing.assert_array_equal(confusion_matrix(reference, prediction),
                                  ref_impl.confusion_matrix(reference, prediction))
    np.testing.assert_array_equal(confusion_matrix(reference, prediction, num_classes=9),
                                  ref_impl.confusion_matrix(reference, prediction, 9))


@pytest.mark.parametrize("run", [150, 3000, 20000])
def test_confusion_matrix_long_runs(rng, run, kernel_path):
    # runs longer than the kernel's 2048-voxel blocks: the uniform-block path counts most voxels
    for dtype in (np.uint8, ">i4"):
        reference, prediction = pair(rng, (6, 50, 347), 7, dtype, run=run, changed=0.0005)
        np.testing.assert_array_equal(confusion_matrix(reference, prediction),
                                      ref_impl.confusion_matrix(reference, prediction))


def test_confusion_matrix_runs_of_every_short_length(rng, kernel_path):
    # run lengths 1..17 in random order: flag words with several run starts, none, or one at either end
    lengths = rng.integers(1, 18, size=4000)
    values = rng.integers(0, 5, size=(2, lengths.size))
    reference = np.repeat(values[0], lengths).astype(np.uint8)
    prediction = np.repeat(values[1], np.roll(lengths, 1))[:reference.size].astype(np.uint8)
    prediction = np.pad(prediction, (0, reference.size - prediction.size))
    n = reference.size // 60 * 60
    cases = [(reference, prediction), (reference[3:], prediction[3:]),  # word boundaries shifted
             (reference[:n].reshape(4, 15, -1), prediction[:n].reshape(4, 15, -1))]
    for r, p in cases:
        np.testing.assert_array_equal(confusion_matrix(r, p, num_classes=5), ref_impl.confusion_matrix(r, p, 5))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_confusion_matrix_default_threshold(rng, dtype):
    # large enough for the parallel kernel at the default threshold; chunk boundaries fall inside runs
    assert metrics._MIN_PARALLEL_VOXELS < 8 * 129 * 1031
    reference, prediction = pair(rng, (8, 129, 1031), 15, dtype)
    np.testing.assert_array_equal(confusion_matrix(reference, prediction),
                                  ref_impl.confusion_matrix(reference, prediction))
    uniform = np.full((5, 100, 200), 3, dtype=dtype)
    expected = np.zeros((4, 4), np.int64)
    expected[3, 3] = uniform.size
    np.testing.assert_array_equal(confusion_matrix(uniform, uniform), expected)


def test_confusion_matrix_bool_masks(rng, kernel_path):
    reference = rng.random((9, 10, 11)) < 0.3
    prediction = rng.random((9, 10, 11)) < 0.3
    np.testing.assert_array_equal(confusion_matrix(reference, prediction),
                                  ref_impl.confusion_matrix(reference, prediction))
    empty = np.zeros((4, 4), bool)
    np.testing.assert_array_equal(confusion_matrix(empty, empty), [[16, 0], [0, 0]])


def test_confusion_matrix_mixed_dtypes(rng, kernel_path):
    reference, prediction = pair(rng, (7, 9, 70), 5)
    expected = ref_impl.confusion_matrix(reference, prediction)
    for a, b in [(reference, prediction.astype(np.int64)), (reference.astype(np.uint16), prediction),
                 (reference.astype(bool), prediction.astype(bool))]:
        np.testing.assert_array_equal(confusion_matrix(a, b), ref_impl.confusion_matrix(a, b))
    np.testing.assert_array_equal(confusion_matrix(reference.astype(np.int32), prediction.astype(">i8")), expected)


@pytest.mark.parametrize("dtype", BIG_ENDIAN)
def test_confusion_matrix_big_endian(rng, dtype, kernel_path):
    reference, prediction = pair(rng, (5, 6, 131), 7, np.int64)
    big_r, big_p = reference.astype(dtype), prediction.astype(dtype)
    assert not big_r.dtype.isnative
    expected = ref_impl.confusion_matrix(reference, prediction)
    np.testing.assert_array_equal(confusion_matrix(big_r, big_p), expected)
    np.testing.assert_array_equal(confusion_matrix(big_r, prediction), expected)
    np.testing.assert_array_equal(confusion_matrix(big_r[:, ::2], big_p[:, ::2]),
                                  ref_impl.confusion_matrix(reference[:, ::2], prediction[:, ::2]))


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "fortran": np.asfortranarray(a),
        "strided": a[::2, 1:, ::3],
        "reversed": a[::-1, :, ::-1],
        "transposed": a.transpose(2, 0, 1),
        "inner_stride": a[:, :, 1::2],
    }


@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed", "transposed", "inner_stride"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_confusion_matrix_layouts(rng, layout, dtype, kernel_path):
    reference, prediction = pair(rng, (9, 14, 131), 6, dtype)
    r, p = _layouts(reference)[layout], _layouts(prediction)[layout]
    assert not r.flags.c_contiguous
    np.testing.assert_array_equal(confusion_matrix(r, p), ref_impl.confusion_matrix(r, p))
    # one map C-ordered, the other not: pairs must still line up voxel by voxel
    np.testing.assert_array_equal(confusion_matrix(np.ascontiguousarray(r), p), ref_impl.confusion_matrix(r, p))
    np.testing.assert_array_equal(confusion_matrix(r, np.asfortranarray(p)), ref_impl.confusion_matrix(r, p))


def test_confusion_matrix_more_dims_broadcast_readonly_and_lists(rng, kernel_path):
    reference, prediction = pair(rng, (3, 4, 5, 6, 7), 4)
    r, p = reference[:, ::2, :, ::2, 1:], prediction[:, ::2, :, ::2, 1:]  # 5-D, not mergeable
    np.testing.assert_array_equal(confusion_matrix(r, p), ref_impl.confusion_matrix(r, p))
    row = blocky(rng, (50,), 3)
    wide = np.broadcast_to(row, (20, 50))  # zero strides
    np.testing.assert_array_equal(confusion_matrix(wide, wide.T.copy().T),
                                  ref_impl.confusion_matrix(wide, wide))
    frozen_r, frozen_p = reference.copy(), prediction.copy()
    frozen_r.flags.writeable = False
    frozen_p.flags.writeable = False
    np.testing.assert_array_equal(confusion_matrix(frozen_r, frozen_p),
                                  ref_impl.confusion_matrix(reference, prediction))
    np.testing.assert_array_equal(confusion_matrix([[0, 1], [2, 2]], [[0, 2], [2, 2]]),
                                  [[1, 0, 0], [0, 0, 1], [0, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(np.uint8(3), np.uint8(1)),
                                  ref_impl.confusion_matrix(np.uint8(3), np.uint8(1)))


def test_confusion_matrix_labels_above_255(rng, kernel_path):
    reference = blocky(rng, (4, 50, 50), 5, np.uint16)
    prediction = reference.copy()
    reference[0, 0, :7] = 300
    prediction[3, 2, 5] = 1000
    cm = confusion_matrix(reference, prediction)
    assert cm.shape == (1001, 1001)
    np.testing.assert_array_equal(cm, ref_impl.confusion_matrix(reference, prediction))
    eight = blocky(rng, (4, 50, 50), 5)  # uint8 with labels past the first pass's 128 classes
    eight[1, 1, :3] = 200
    np.testing.assert_array_equal(confusion_matrix(eight, eight[::-1].copy()),
                                  ref_impl.confusion_matrix(eight, eight[::-1]))


def test_confusion_matrix_input_is_not_modified(rng):
    reference, prediction = pair(rng, (6, 40, 70), 5)
    before = reference.copy(), prediction.copy()
    confusion_matrix(reference, prediction)
    np.testing.assert_array_equal(reference, before[0])
    np.testing.assert_array_equal(prediction, before[1])
    assert reference.flags.writeable


# ------------------------------------------------------------------------------------------- bad input
def test_label_outside_num_classes_names_the_map(kernel_path):
    reference = np.zeros((4, 70, 70), np.uint8)
    prediction = reference.copy()
    prediction[2, 3, 4] = 9
    with pytest.raises(ValidationError, match=r"`prediction` holds label 9.*num_classes=10"):
        confusion_matrix(reference, prediction, num_classes=5)
    reference[0, 0, 0] = 7
    with pytest.raises(ValidationError, match=r"`reference` holds label 7"):
        confusion_matrix(reference, prediction, num_classes=5)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, ">i2", ">i8"])
@pytest.mark.parametrize("num_classes", [None, 5])
def test_negative_labels_are_refused(dtype, num_classes, kernel_path):
    reference = np.zeros((3, 4, 100), dtype=dtype)
    prediction = reference.copy()
    reference[1, 2, 3] = -1
    with pytest.raises(ValidationError, match=r"`reference` holds the negative label -1"):
        confusion_matrix(reference, prediction, num_classes=num_classes)
    with pytest.raises(ValidationError, match=r"`prediction` holds the negative label -1"):
        confusion_matrix(prediction, reference, num_classes=num_classes)


def test_confusion_matrix_bad_arguments():
    a = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValidationError, match=r"`reference` and `prediction` must have the same shape"):
        confusion_matrix(a, np.zeros((4, 3), np.uint8))
    with pytest.raises(ValidationError, match=r"`prediction` must be an integer or boolean label map"):
        confusion_matrix(a, a.astype(np.float32))
    with pytest.raises(ValidationError, match=r"`reference` must be an integer or boolean label map"):
        confusion_matrix(np.array([["a"]]), np.array([[1]]))
    for bad in (0, -3, 2.5, True, "3"):
        with pytest.raises(ValidationError, match=r"`num_classes`"):
            confusion_matrix(a, a, num_classes=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"4096"):
        confusion_matrix(a, a, num_classes=5000)
    huge = np.zeros(4, np.int32)
    huge[0] = 100_000
    with pytest.raises(ValidationError, match=r"labels up to 100000"):
        confusion_matrix(huge, np.zeros(4, np.int32))


# ------------------------------------------------------------------------------------------------ dice
def test_dice_of_bool_masks_is_a_float(rng):
    reference = rng.random((5, 6, 7)) < 0.4
    prediction = rng.random((5, 6, 7)) < 0.4
    tp, fp, fn, _ = ref_impl.counts(reference, prediction, 1)
    value = dice(reference, prediction)
    assert isinstance(value, float)
    assert value == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-15)
    empty = np.zeros((3, 3), bool)
    assert math.isnan(dice(empty, empty))
    assert dice(empty, empty, empty="one") == 1.0
    assert dice(empty, empty, empty="zero") == 0.0
    assert dice(empty, ~empty) == 0.0


def test_dice_of_label_maps(rng):
    reference, prediction = pair(rng, (6, 7, 8), 5)
    reference[reference == 4] = 0
    prediction[prediction == 4] = 0
    prediction[0, 0, 0] = 4  # present in the prediction only
    result = dice(reference, prediction)
    assert isinstance(result, dict)
    assert list(result) == [1, 2, 3, 4]
    for label, value in result.items():
        tp, fp, fn, _ = ref_impl.counts(reference, prediction, label)
        assert value == pytest.approx(ref_impl.metrics(tp, fp, fn)["dice"], abs=1e-15)
    assert result[4] == 0.0
    chosen = dice(reference, prediction, labels=[2, 7], empty="one")
    assert list(chosen) == [2, 7]
    assert chosen[7] == 1.0
    assert dice(reference, prediction, labels=3) == result[3]


def test_dice_bad_arguments():
    a = np.zeros((3, 3), np.uint8)
    with pytest.raises(ValidationError, match=r"`empty` must be one of"):
        dice(a, a, empty="ignore")  # type: ignore[arg-type]
    for bad, pattern in [([-1], "non-negative"), ([1, 1], "repeat"), ([1.5], "integer labels"), ("12", "sequence"),
                         ([True], "integer labels")]:
        with pytest.raises(ValidationError, match=rf"`labels`.*{pattern}"):
            dice(a, a, labels=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- overlap
@pytest.mark.parametrize("empty", ["nan", "one", "zero"])
def test_overlap_matches_mask_reference(rng, empty):
    reference, prediction = pair(rng, (8, 9, 10), 6)
    prediction[prediction == 5] = 1  # label 5: reference only
    reference[reference == 4] = 2  # label 4: prediction only
    labels = [1, 2, 3, 4, 5, 7]  # 7: absent from both
    regions = [(1, 2), (2, 3, 5), (7,)]
    spacing = (2.5, 0.8, 0.75)
    result = overlap(reference, prediction, labels=labels, regions=regions, spacing_mm=spacing, empty=empty)
    assert result.labels == (1, 2, 3, 4, 5, 7, (1, 2), (2, 3, 5), (7,))
    for key in result.labels:
        tp, fp, fn, tn = ref_impl.counts(reference, prediction, key)
        entry = result[key]
        assert (entry.tp, entry.fp, entry.fn, entry.tn) == (tp, fp, fn, tn)
        assert entry.reference_voxels == tp + fn and entry.prediction_voxels == tp + fp
        assert entry.reference_volume_mm3 == pytest.approx((tp + fn) * 2.5 * 0.8 * 0.75)
        assert entry.prediction_volume_mm3 == pytest.approx((tp + fp) * 2.5 * 0.8 * 0.75)
        for name, expected in ref_impl.metrics(tp, fp, fn, empty).items():
            np.testing.assert_allclose(getattr(entry, name), expected, rtol=0, atol=1e-15, err_msg=f"{key} {name}")
    assert result[5].dice == 0.0 and result[5].recall == 0.0 and result[5].precision == 0.0
    assert result[4].dice == 0.0 and result[4].recall == 0.0 and result[4].volume_similarity == 0.0


def test_overlap_default_labels_and_ignore_label(rng):
    reference, prediction = pair(rng, (8, 9, 10), 5)
    reference[0, :3] = 9  # ignore label, where the prediction says anything
    prediction[1, 1, 1] = 6
    result = overlap(reference, prediction, ignore_label=9)
    assert result.labels_inferred
    expected_labels = sorted({int(v) for v in np.unique(np.concatenate([reference[reference != 9],
                                                                          prediction[reference != 9]]))} - {0})
    assert list(result.labels) == expected_labels
    for key in result.labels:
        tp, fp, fn, tn = ref_impl.counts(reference, prediction, key, ignore_label=9)
        assert (result[key].tp, result[key].fp, result[key].fn, result[key].tn) == (tp, fp, fn, tn)
    assert result.total_voxels == int(np.sum(reference != 9))
    assert math.isnan(result[1].reference_volume_mm3)
    only_regions = overlap(reference, prediction, regions=[(1, 2)], ignore_label=9)
    assert only_regions.labels == ((1, 2),) and not only_regions.labels_inferred


def test_overlap_from_confusion_equals_overlap(rng):
    reference, prediction = pair(rng, (5, 20, 30), 8)
    cm = confusion_matrix(reference, prediction)
    kwargs = {"labels": [1, 3, 7, 12], "regions": [(1, 3), (2, 4, 6)], "spacing_mm": (1.0, 2.0, 0.5)}
    np.testing.assert_equal(overlap_from_confusion(cm, **kwargs).to_dict(),
                            overlap(reference, prediction, **kwargs).to_dict())
    beyond = overlap_from_confusion(cm, labels=[12], empty="zero")[12]  # beyond K: absent from both maps
    assert (beyond.tp, beyond.fp, beyond.fn, beyond.tn, beyond.dice) == (0, 0, 0, reference.size, 0.0)
    a, b = overlap_from_confusion(cm.astype(np.int32)), overlap(reference, prediction)
    np.testing.assert_equal(a.to_dict(), b.to_dict())  # NaN volumes (no spacing) compare equal here


def test_overlap_bad_arguments():
    a = np.zeros((3, 4, 5), np.uint8)
    a[0, 0, 0] = 2
    cases = [
        ({"regions": [()]}, r"`regions`.*at least one label"),
        ({"regions": [(1, 1)]}, r"`regions entry.*repeat"),
        ({"regions": [(1, 2), (2, 1)]}, r"`regions` lists the region \(2, 1\) twice"),
        ({"regions": [1, 2]}, r"`regions`.*bare label 1"),
        ({"regions": "12"}, r"`regions` must be a sequence"),
        ({"regions": [(-1,)]}, r"non-negative"),
        ({"labels": [1, 2], "ignore_label": 2}, r"`ignore_label` 2 must not be one of `labels`"),
        ({"regions": [(1, 2)], "ignore_label": 2}, r"`ignore_label` 2 must not be inside a region"),
        ({"ignore_label": -1}, r"`ignore_label` must be >= 0"),
        ({"spacing_mm": (1.0, 1.0)}, r"`spacing_mm` must hold one value per axis \(3\)"),
        ({"spacing_mm": (1.0, 0.0, 1.0)}, r"`spacing_mm` must be positive"),
        ({"empty": "1"}, r"`empty` must be one of"),
        ({"num_classes": 2}, r"`reference` holds label 2"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValidationError, match=pattern):
            overlap(a, a, **kwargs)  # type: ignore[arg-type]
    assert overlap(a, a, spacing_mm=2.0)[2].reference_volume_mm3 == 8.0
    for bad in (np.zeros((2, 3), np.int64), np.zeros((2, 2)), [[1, -1], [0, 0]], np.zeros(3, np.int64)):
        with pytest.raises(ValidationError, match=r"`cm`"):
            overlap_from_confusion(bad)
    with pytest.raises(ValidationError, match=r"`spacing_mm` must be a sequence"):
        overlap_from_confusion(np.eye(2, dtype=np.int64), spacing_mm=2.0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- result objects
def test_overlap_result_api(rng):
    reference, prediction = pair(rng, (4, 5, 6), 4)
    result = overlap(reference, prediction, labels=[0, 1, 2, 9], regions=[(1, 2)], spacing_mm=(1.0, 1.0, 2.0))
    assert isinstance(result, OverlapResult) and isinstance(result[1], LabelOverlap)
    assert len(result) == 5 and 9 in result and (1, 2) in result and result[[1, 2]] is result[(1, 2)]
    assert result[np.int64(1)] is result[1]
    with pytest.raises(KeyError, match=r"holds \[0, 1, 2, 9, \(1, 2\)\]"):
        result[5]
    assert result.dice == {k: result[k].dice for k in result.labels}
    assert result.metric("recall")[2] == result[2].recall
    values = [result[k].dice for k in (1, 2, (1, 2))]  # 0 is background, 9 is NaN
    assert result.foreground_mean() == pytest.approx(sum(values) / 3)
    assert result.foreground_mean("iou") == pytest.approx(sum(result[k].iou for k in (1, 2, (1, 2))) / 3)
    with pytest.raises(ValidationError, match=r"`metric` must be one of"):
        result.foreground_mean("hausdorff")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.empty = "one"  # type: ignore[misc]
    d = result.to_dict()
    assert set(d["labels"]) == {"0", "1", "2", "9", "(1, 2)"}
    assert d["labels"]["1"]["tp"] == result[1].tp and d["voxel_volume_mm3"] == 2.0
    parsed = json.loads(result.to_json())
    assert parsed["labels"]["9"]["dice"] is None  # NaN -> null, strict JSON
    assert parsed["labels"]["2"]["dice"] == pytest.approx(result[2].dice)
    rows = result.to_rows()
    assert [r["label"] for r in rows] == ["0", "1", "2", "9", "(1, 2)"] and rows[1]["fn"] == result[1].fn
    if has_module("pandas"):
        assert list(result.to_frame().index) == ["0", "1", "2", "9", "(1, 2)"]
    else:
        with pytest.raises(MissingDependencyError, match="pandas"):
            result.to_frame()
    empty = overlap(np.zeros(5, np.uint8), np.zeros(5, np.uint8))
    assert len(empty) == 0 and math.isnan(empty.foreground_mean())


# ------------------------------------------------------------------------------------- aggregate_cases
def test_aggregate_cases_follows_nnunet_order(rng, tmp_path):
    cases = {}
    per_case_dice = []
    for i in range(4):
        reference, prediction = pair(rng, (5, 6, 7), 4)
        if i == 1:
            reference[reference == 3] = 0
            prediction[prediction == 3] = 0  # label 3 absent from both maps of case 1: NaN, left out
        cases[f"case_{i}"] = overlap(reference, prediction, labels=[1, 2, 3])
        per_case_dice.append(cases[f"case_{i}"].dice)
    summary = aggregate_cases(cases)
    assert isinstance(summary, CaseSummary)
    assert summary.labels == (1, 2, 3) and summary.cases == tuple(cases)
    mean, fg = ref_impl.nnunet_summary(per_case_dice)
    for key in (1, 2, 3):
        assert summary.mean[key]["dice"] == pytest.approx(mean[key], abs=1e-15)
        tps = [cases[c][key].tp for c in cases]
        assert summary.mean[key]["tp"] == pytest.approx(np.mean(tps))
    assert summary.foreground_mean["dice"] == pytest.approx(fg, abs=1e-15)
    # mean of per-label means is not the mean of per-case means when a case has a NaN
    per_case_means = np.mean([np.nanmean(list(d.values())) for d in per_case_dice])
    assert summary.foreground_mean["dice"] != pytest.approx(per_case_means, abs=1e-12)

    files = {c: (f"ref/{c}.nii.gz", f"pred/{c}.nii.gz") for c in list(cases)[:3]}
    nn = summary.to_nnunet_dict(files=files)
    assert set(nn) == {"metric_per_case", "mean", "foreground_mean"}
    first = nn["metric_per_case"][0]
    assert first["reference_file"] == "ref/case_0.nii.gz" and first["prediction_file"] == "pred/case_0.nii.gz"
    assert nn["metric_per_case"][3]["reference_file"] is None
    assert set(first["metrics"]) == {"1", "2", "3"}
    assert set(first["metrics"]["1"]) == {"Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref"}
    assert first["metrics"]["2"]["TP"] == cases["case_0"][2].tp
    assert math.isnan(nn["metric_per_case"][1]["metrics"]["3"]["Dice"])
    assert nn["mean"]["3"]["Dice"] == pytest.approx(mean[3])
    assert nn["foreground_mean"]["Dice"] == pytest.approx(fg)
    json.dumps(nn)  # serialisable (NaN as nnU-Net writes it)

    path = summary.to_csv(tmp_path / "summary.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * 3 + 3 + 1
    assert rows[0]["case"] == "case_0" and rows[0]["label"] == "1"
    assert float(rows[0]["dice"]) == pytest.approx(cases["case_0"][1].dice)
    assert rows[-1]["case"] == "foreground_mean" and float(rows[-1]["dice"]) == pytest.approx(fg)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]  # no temporary file left
    with pytest.raises(ValidationError, match=r"`path` must be in an existing folder"):
        summary.to_csv(tmp_path / "missing" / "x.csv")


def test_aggregate_cases_fills_labels_absent_from_both_maps():
    a = np.array([0, 1, 1, 2], np.uint8)
    b = np.array([0, 1, 0, 0], np.uint8)
    results = {"with_2": overlap(a, a, empty="one"), "without_2": overlap(b, b, empty="one")}
    assert 2 not in results["without_2"]
    summary = aggregate_cases(results)
    assert summary.labels == (1, 2)
    assert summary.mean[2]["dice"] == 1.0  # "one": an absent label counts as a perfect 1 in that case
    assert summary.value("without_2", 2) == 1.0
    explicit = {"a": overlap(a, a, labels=[1, 2]), "b": overlap(b, b, labels=[1])}
    assert aggregate_cases(explicit).mean[2]["tp"] == 1.0  # missing from an explicit result: left out
    restricted = aggregate_cases(results, labels=[2, (1, 2)])
    assert restricted.labels == (2, (1, 2)) and math.isnan(restricted.mean[(1, 2)]["dice"])
    all_nan = aggregate_cases({"x": overlap(b, b, labels=[5])})
    assert math.isnan(all_nan.foreground_mean["dice"])  # nnU-Net: a label NaN everywhere makes it NaN


def test_aggregate_cases_bad_input():
    with pytest.raises(ValidationError, match=r"at least one case"):
        aggregate_cases({})
    with pytest.raises(ValidationError, match=r"`results\['x'\]` must be an OverlapResult"):
        aggregate_cases({"x": {1: 0.5}})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match=r"`results` must be a mapping"):
        aggregate_cases([overlap(np.zeros(2, np.uint8), np.zeros(2, np.uint8))])  # type: ignore[arg-type]


def test_public_names_are_exported():
    import medfuse.metrics

    for name in medfuse.metrics.__all__:
        assert hasattr(medfuse.metrics, name)
