"""surface_metrics: kernels against their numpy twins, values against DeepMind's surface-distance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

import medfuse
from _reference import twin_surface as ref_sf
from medfuse._kernels import surface as ks
from medfuse.errors import ValidationError

sd = pytest.importorskip("surface_distance", reason="the oracle: pip install medfuse[test]")
# surface-distance 0.1 calls scipy.ndimage.filters / .morphology, deprecated namespaces
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPES_3D = [(0, 4, 5), (1, 1, 1), (1, 3, 1), (5, 7, 9), (9, 4, 13)]
SHAPES_2D = [(0, 5), (1, 1), (7, 1), (6, 11)]
DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64]


def blobs(rng: np.random.Generator, shape: tuple[int, ...], n_labels: int, sigma: float = 1.2) -> np.ndarray:
    """A smooth random label map with labels 0..n_labels."""
    if 0 in shape:
        return np.zeros(shape, np.int64)
    field = ndimage.gaussian_filter(rng.random((n_labels + 1, *shape)), (0, *([sigma] * len(shape))))
    return field.argmax(0).astype(np.int64)


def as_dtype(a: np.ndarray, dtype: type) -> np.ndarray:
    return (a > 0) if dtype is np.bool_ else a.astype(dtype)


def scan(labels: np.ndarray, lut: np.ndarray, lut_lo: int = 0) -> tuple[np.ndarray, ...]:
    """The scan kernel on one thread: (slot, z, y, x, code)."""
    two_d = labels.ndim == 2
    vol = np.ascontiguousarray(labels[None] if two_d else labels)
    if vol.dtype == np.bool_:
        vol = vol.view(np.uint8)
    lo = np.empty(vol.shape[:2], np.int32)
    hi = np.empty(vol.shape[:2], np.int32)
    ks.row_extents(0, vol.shape[0], 0, vol, np.ones(vol.shape[:2], bool), lo, hi)
    planes = 1 if two_d else vol.shape[0] + 1
    counts, starts = np.zeros(1, np.int64), np.zeros(1, np.int64)
    i32, u8 = np.empty(0, np.int32), np.empty(0, np.uint8)
    ks.scan_surfels(0, planes, 0, vol, two_d, lo, hi, lut, lut_lo, False, starts, counts, i32, i32, i32, i32, u8)
    out = [np.empty(int(counts[0]), np.int32) for _ in range(4)] + [np.empty(int(counts[0]), np.uint8)]
    ks.scan_surfels(0, planes, 0, vol, two_d, lo, hi, lut, lut_lo, True, starts, counts, *out)
    return tuple(out)


# ------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_3D + SHAPES_2D)
def test_scan_matches_twin_for_every_label(rng, dtype, shape):
    labels = as_dtype(blobs(rng, shape, 3), dtype)
    lut = np.array([-1, 0, 1, 2], np.int32)  # slot = label - 1
    slot, z, y, x, code = scan(labels, lut)
    for label in (1, 2, 3):
        mine = slot == label - 1
        twin = ref_sf.surfels(labels == label)
        for got, want in zip((z[mine], y[mine], x[mine], code[mine]), twin, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(0, 3, 4), (1, 1, 1), (4, 6, 9), (3, 5, 17)])
def test_row_extents_match_twin(rng, shape):
    labels = (rng.random(shape) < 0.1).astype(np.uint8) * 7
    lo, hi = np.empty(shape[:2], np.int32), np.empty(shape[:2], np.int32)
    ks.row_extents(0, shape[0], 0, labels, labels.any(axis=2), lo, hi)
    want_lo, want_hi = ref_sf.row_extents(labels)
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)


@pytest.mark.parametrize("n", [0, 1, 17, 300])
def test_group_by_slot_is_a_stable_sort(rng, n):
    slot = rng.integers(0, 5, n).astype(np.int32)
    order, bounds = ks.group_by_slot(slot, 5)
    np.testing.assert_array_equal(order, np.argsort(slot, kind="stable"))
    np.testing.assert_array_equal(bounds, np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=5))]))


def raster_points(rng: np.random.Generator, n: int, extent: int, n_slots: int) -> tuple[np.ndarray, ...]:
    """``n`` random corners of ``n_slots`` slots grouped by slot, raster order within one (distinct points
    per slot): z, y, x (int32) and the slot bounds."""
    pts = np.unique(np.column_stack([rng.integers(0, n_slots, n), rng.integers(0, extent, (n, 3))]), axis=0)
    bounds = np.searchsorted(pts[:, 0], np.arange(n_slots + 1)).astype(np.int64)
    return (*(np.ascontiguousarray(pts[:, i], dtype=np.int32) for i in (1, 2, 3)), bounds)


def kernel_distances(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], spacing: tuple[float, ...],
                     chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every slot held by both sets, through the boxes, row index and task kernels."""
    boxes, n_index = ks.boxes_of(a[0], a[1], a[3], b[0], b[1], b[3])
    a_rows = ks.row_index(a[0], a[1], a[3], boxes, n_index)
    b_rows = ks.row_index(b[0], b[1], b[3], boxes, n_index)
    tasks = [(q, min(q + chunk, m[3][s + 1]), s, d) for s in range(len(boxes)) if boxes[s, 2]
             for d, m in enumerate((a, b)) for q in range(m[3][s], m[3][s + 1], chunk)]
    table = np.asarray(tasks, np.int64).reshape(-1, 4)
    out_a, out_b = np.full(a[0].size, -1.0), np.full(b[0].size, -1.0)
    ks.nearest_distances(0, len(table), 0, table, (*a[:3], a_rows), (*b[:3], b_rows), boxes, spacing, out_a, out_b)
    return out_a, out_b


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 0.58, 0.7), (0.3, 2.0, 1.1)])
@pytest.mark.parametrize(("n_a", "n_b", "extent", "n_slots", "chunk"),
                         [(1, 1, 1, 1, 1), (40, 1, 6, 1, 7), (60, 80, 9, 3, 5), (50, 5, 30, 2, 1000),
                          (300, 200, 40, 4, 13)])
def test_nearest_distances_match_brute_force(rng, spacing, n_a, n_b, extent, n_slots, chunk):
    a = raster_points(rng, n_a, extent, n_slots)
    b = raster_points(rng, n_b, extent, n_slots)
    out_a, out_b = kernel_distances(a, b, spacing, chunk)
    for s in range(n_slots):
        sa, sb = slice(a[3][s], a[3][s + 1]), slice(b[3][s], b[3][s + 1])
        pa = np.column_stack([c[sa] for c in a[:3]])
        pb = np.column_stack([c[sb] for c in b[:3]])
        if len(pa) and len(pb):  # slots missing from one set get no task (the caller's empty rule)
            np.testing.assert_allclose(out_a[sa], ref_sf.nearest(pa, pb, spacing), rtol=1e-12, atol=0)
            np.testing.assert_allclose(out_b[sb], ref_sf.nearest(pb, pa, spacing), rtol=1e-12, atol=0)
        else:
            assert np.all(out_a[sa] == -1.0) and np.all(out_b[sb] == -1.0)


@pytest.mark.parametrize(("n_a", "n_b", "n_slots"), [(0, 0, 1), (0, 30, 2), (50, 40, 3), (200, 10, 5)])
def test_boxes_and_row_index_match_twin(rng, n_a, n_b, n_slots):
    a = raster_points(rng, n_a, 12, n_slots)
    b = raster_points(rng, n_b, 12, n_slots)
    boxes, n_index = ks.boxes_of(a[0], a[1], a[3], b[0], b[1], b[3])
    want_boxes, want_n = ref_sf.boxes(a, b)
    np.testing.assert_array_equal(boxes, want_boxes)
    assert n_index == want_n
    for m in (a, b):
        np.testing.assert_array_equal(ks.row_index(m[0], m[1], m[3], boxes, n_index), ref_sf.row_index(m, boxes))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.3), (0.3, 4.0, 0.9)])
def test_area_tables_equal_deepmind(spacing):
    from surface_distance import lookup_tables as lt

    np.testing.assert_allclose(ks.area_table(spacing), lt.create_table_neighbour_code_to_surface_area(spacing),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(ks.area_table(spacing[:2]),
                               lt.create_table_neighbour_code_to_contour_length(spacing[:2]), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------- DeepMind's published cases
def test_two_pixels_2mm_apart():
    ref, pred = np.zeros((100, 100, 100), bool), np.zeros((100, 100, 100), bool)
    ref[50, 60, 70] = pred[50, 60, 72] = True
    r = medfuse.surface_metrics(ref, pred, spacing_mm=(3, 2, 1), tolerance_mm=(1.0, 2.0))[1]
    assert r.hd == r.hd95 == 2.0 and r.masd == r.assd == 1.5  # the corners 1 mm apart halve the average
    assert r.nsd == (0.5, 1.0)
    ref_sf.assert_close(r, ref_sf.deepmind(ref, pred, (3, 2, 1), (1.0, 2.0)))


@pytest.mark.parametrize("shift", [(0, 3), (2, -1), (5, 5)])
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 2.0)])
def test_shifted_squares(shift, spacing):
    ref = np.zeros((60, 60), bool)
    ref[20:40, 15:35] = True
    pred = np.roll(ref, shift, axis=(0, 1))
    tols = (0.0, 1.0, 2.0, 4.0)
    for pct in (0.0, 50.0, 95.0, 100.0):
        r = medfuse.surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=tols, percentile=pct)[1]
        ref_sf.assert_close(r, ref_sf.deepmind(ref, pred, spacing, tols, pct))


@pytest.mark.parametrize("shift", [(0, 0, 1), (1, 2, 0), (3, -2, 2)])
def test_shifted_cubes(shift):
    ref = np.zeros((30, 30, 30), bool)
    ref[8:20, 10:22, 9:19] = True
    pred = np.roll(ref, shift, axis=(0, 1, 2))
    for spacing in ((1.0, 1.0, 1.0), (3.0, 0.8, 1.1)):
        r = medfuse.surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=(1.0, 2.0))[1]
        ref_sf.assert_close(r, ref_sf.deepmind(ref, pred, spacing, (1.0, 2.0)))


def test_empty_masks_follow_the_documented_rules_and_deepmind_where_it_agrees():
    full, empty = np.zeros((20, 20, 20), bool), np.zeros((20, 20, 20), bool)
    full[5:10, 5:10, 5:10] = True
    for ref, pred in ((full, empty), (empty, full)):
        r = medfuse.surface_metrics(ref.astype(np.uint8), pred.astype(np.uint8), spacing_mm=1.0, labels=[1],
                                    tolerance_mm=(1.0, 2.0))[1]
        dm = ref_sf.deepmind(ref, pred, (1.0, 1.0, 1.0), (1.0, 2.0))
        assert r.nsd == dm["nsd"] == (0.0, 0.0)
        assert r.hd == r.hd95 == dm["hd95"] == math.inf
        assert r.asd_ref_to_pred == r.asd_pred_to_ref == r.masd == r.assd == math.inf
        assert math.isnan(dm["masd"])  # DeepMind: 0/0 for the empty side's average (documented difference)
    both = medfuse.surface_metrics(empty, empty, spacing_mm=1.0, labels=1)[1]
    assert all(math.isnan(v) for k, v in both.to_dict().items() if k not in ("reference_surface",
                                                                             "prediction_surface"))
    assert len(medfuse.surface_metrics(empty, empty, spacing_mm=1.0)) == 0


# ------------------------------------------------------------------------------------- random blobs
@pytest.mark.parametrize("shape", [(12, 15, 11), (7, 20, 9), (31, 24)])
@pytest.mark.parametrize("spacing", [(2.5, 0.7, 1.3), (5.0, 0.58, 0.58), (0.4, 1.9, 0.8)])
def test_random_blobs_equal_deepmind_for_every_label(rng, shape, spacing):
    sp = spacing[-len(shape):]
    ref, pred = blobs(rng, shape, 4, 1.5).astype(np.uint8), blobs(rng, shape, 4, 1.5).astype(np.uint8)
    result = medfuse.surface_metrics(ref, pred, spacing_mm=sp, tolerance_mm=(1.0, 2.0), percentile=90)
    assert result.labels == tuple(int(v) for v in np.union1d(np.unique(ref), np.unique(pred)) if v)
    areas = ks.area_table(sp)
    for label, entry in result.items():
        want = ref_sf.deepmind(ref == label, pred == label, sp, (1.0, 2.0), 90)
        ref_sf.assert_close(entry, want)
        ref_sf.assert_close(entry, ref_sf.surface_metrics(ref == label, pred == label, sp, (1.0, 2.0), 90, areas))


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
def test_label_values_and_dtypes_do_not_change_the_values(rng, dtype):
    ref, pred = blobs(rng, (9, 10, 11), 3), blobs(rng, (9, 10, 11), 3)
    base = medfuse.surface_metrics(ref.astype(np.uint8), pred.astype(np.uint8), spacing_mm=(2, 1, 1))
    big = np.array([0, 7, 40_000, 3_000_000_000 if dtype is np.int64 else 60_000])
    scaled = medfuse.surface_metrics(big[ref].astype(dtype), big[pred].astype(dtype), spacing_mm=(2, 1, 1))
    assert [big[k] for k in base] == list(scaled)
    for k, v in base.items():
        assert scaled[int(big[k])] == v


def test_labels_select_and_order_and_bool_is_label_one(rng):
    ref, pred = blobs(rng, (8, 9, 10), 3), blobs(rng, (8, 9, 10), 3)
    every = medfuse.surface_metrics(ref, pred, spacing_mm=1.0)
    some = medfuse.surface_metrics(ref, pred, spacing_mm=1.0, labels=[3, 1, 9])
    assert some.labels == (3, 1, 9) and some[3] == every[3] and some[1] == every[1]
    assert math.isnan(some[9].hd)
    masks = medfuse.surface_metrics(ref == 2, pred == 2, spacing_mm=1.0)
    assert masks.labels == (1,) and masks[1] == every[2]


def test_scalar_tolerance_gives_a_float_and_a_sequence_a_tuple(rng):
    ref, pred = blobs(rng, (8, 9, 10), 2), blobs(rng, (8, 9, 10), 2)
    one = medfuse.surface_metrics(ref, pred, spacing_mm=1.0, tolerance_mm=2.0)
    many = medfuse.surface_metrics(ref, pred, spacing_mm=1.0, tolerance_mm=[2.0, 0.5])
    for k in one:
        assert isinstance(one[k].nsd, float) and many[k].nsd[0] == one[k].nsd and len(many[k].nsd) == 2
    assert one.tolerance_mm == 2.0 and many.tolerance_mm == (2.0, 0.5)


# --------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prediction": np.zeros((4, 5, 7), np.uint8)}, "same shape"),
    ({"reference": np.zeros((4, 5, 6), np.float32)}, "integer or boolean"),
    ({"prediction": np.zeros((4, 5, 6), np.float64)}, "integer or boolean"),
    ({"spacing_mm": (1.0, 1.0)}, "one value per axis"),
    ({"spacing_mm": (1.0, 0.0, 1.0)}, "positive"),
    ({"spacing_mm": (1.0, -2.0, 1.0)}, "positive"),
    ({"tolerance_mm": -0.5}, "tolerance_mm"),
    ({"tolerance_mm": [1.0, float("nan")]}, "tolerance_mm"),
    ({"tolerance_mm": []}, "tolerance_mm"),
    ({"percentile": 101}, "percentile"),
    ({"percentile": -1}, "percentile"),
    ({"percentile": float("nan")}, "percentile"),
    ({"labels": [1.5]}, "labels"),
    ({"labels": []}, "labels"),
    ({"reference": np.zeros((2, 3, 4, 5), np.uint8), "prediction": np.zeros((2, 3, 4, 5), np.uint8),
      "spacing_mm": 1.0}, "2D or 3D"),
])
def test_bad_input_raises_validation_error_naming_the_argument(kwargs, match):
    args = {"reference": np.zeros((4, 5, 6), np.uint8), "prediction": np.zeros((4, 5, 6), np.uint8),
            "spacing_mm": (1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(ValidationError, match=match):
        medfuse.surface_metrics(args.pop("reference"), args.pop("prediction"), **args)


# ------------------------------------------------------------------------------------- result types
def test_result_is_frozen_and_serialises(rng, tmp_path):
    ref, pred = blobs(rng, (8, 9, 10), 2), blobs(rng, (8, 9, 10), 2)
    pred[pred == 2] = 0
    result = medfuse.surface_metrics(ref, pred, spacing_mm=(2.0, 1.0, 1.0), tolerance_mm=(1.0, 2.0))
    with pytest.raises(AttributeError):
        result[1].hd = 0.0  # type: ignore[misc]
    strict = json.loads(result.to_json())
    assert strict["labels"]["2"]["hd"] is None and strict["tolerance_mm"] == [1.0, 2.0]
    assert strict["labels"]["1"]["nsd"] == list(result[1].nsd)
    assert "Infinity" in result.to_json(strict=False)
    rows = result.to_rows()
    assert [r["label"] for r in rows] == ["1", "2"] and rows[0]["nsd@2"] == result[1].nsd[1]
    path = result.to_csv(tmp_path / "s.csv")
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == result.columns() and len(lines) == 3
    html = result._repr_html_()
    assert html.count("<tr>") == 3 and "nsd@1" in html
    assert "hd95" not in repr(result) or "SurfaceResult" in repr(result)
    with pytest.raises(KeyError, match="not a label"):
        result[5]


def test_public_names_are_exported():
    assert medfuse.surface_metrics is medfuse.metrics.surface.surface_metrics
    assert {"surface_metrics", "SurfaceResult", "LabelSurface"} <= set(medfuse.__all__)


# ------------------------------------------------------------------------------------------ real data
def _real_case(real_data):
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.ReadImage(str(real_data / "case_labels.nii.gz"))
    return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing()[::-1])


def _shifted(a: np.ndarray, shift: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros_like(a)
    src = tuple(slice(max(0, -s), a.shape[i] - max(0, s)) for i, s in enumerate(shift))
    dst = tuple(slice(max(0, s), a.shape[i] - max(0, -s)) for i, s in enumerate(shift))
    out[dst] = a[src]
    return out


def _compare_every_label(ref, pred, spacing):
    result = medfuse.surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=(1.0, 2.0))
    assert result.labels == tuple(int(v) for v in np.union1d(np.unique(ref), np.unique(pred)) if v)
    for label, entry in result.items():
        r, p = ref == label, pred == label
        if r.any() and p.any():
            ref_sf.assert_close(entry, ref_sf.deepmind(r, p, spacing, (1.0, 2.0)))
        else:
            assert math.isinf(entry.hd95) and entry.nsd == (0.0, 0.0)
    return result


@pytest.mark.real_data
def test_real_case_full_volume_shifted_prediction(real_data):
    ref, spacing = _real_case(real_data)
    result = _compare_every_label(ref, _shifted(ref, (1, 2, -1)), spacing)
    assert len(result) == 11


@pytest.mark.real_data
def test_real_case_eroded_and_missing_organs(real_data):
    ref, spacing = _real_case(real_data)
    ref = np.ascontiguousarray(ref[50:100, 260:480, 150:560])  # around most organs, to stay fast
    pred = ref.copy()
    for label in (2, 6):
        mask = pred == label
        pred[mask & ~ndimage.binary_erosion(mask, iterations=2)] = 0
    pred[pred == 9] = 0  # a missing organ
    pred[_shifted(ref, (0, 3, 3)) == 4] = 4  # a shifted organ painted over its neighbours
    result = _compare_every_label(ref, pred, spacing)
    assert math.isinf(result[9].hd) and result[9].nsd == (0.0, 0.0)


@pytest.mark.parametrize("n", [1, 2, 50, 5000])
@pytest.mark.parametrize("distinct", [1, 3, 700, 10_000])
def test_group_distances_match_twin(rng, n, distinct):
    d = np.sqrt(rng.integers(0, distinct, n).astype(np.float64)) * 0.58  # few distinct values, many ties
    rank = rng.integers(0, 4, n)
    values, counts = ks.group_distances(d, rank, 4)
    order = np.argsort(values)  # the kernel's groups come in order of first appearance
    values, counts = values[order], counts[order]
    want_values, want_counts = ref_sf.group_distances(d, rank, 4)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(counts, want_counts)


def test_bench_surface_row_agrees_with_deepmind():
    from medfuse.bench.runner import Sizes, run_benchmark

    tiny = Sizes(fusion=(2, 2, 2, 2, 2), vote=(2, 2, 2, 2), labels=14, dice=(10, 16, 18), bandwidth_bytes=1 << 16)
    report = run_benchmark(sizes=tiny, only=["surface"])
    methods = [m.method for m in report.measurements if m.section == "surface"]
    assert methods == ["medfuse surface_metrics", "surface-distance (DeepMind)"]
    assert report.checks == ("surface: medfuse == surface-distance: ok",)
    assert "surface kernels (metrics)" in report.compile_seconds
    assert any(t.name == "surface metrics vs DeepMind surface-distance" for t in report.targets)
