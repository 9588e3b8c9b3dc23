"""Tests of medfuse.postprocess: largest components, postprocessing.json, determining postprocessing."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from _reference import twin_postprocess as reference
from medfuse import FormatError, ValidationError
from medfuse.postprocess import (
    Postprocessing,
    apply_postprocessing,
    determine_postprocessing,
    keep_largest_component,
)
from medfuse.postprocess import components as pp_module
from medfuse.synthetic import phantom, simulate_labels

FORMATS_EXAMPLE = (
    '{"for_which_classes": [1, 11, 6], "min_valid_object_sizes": "None", '
    '"dc_per_class_raw": {"1": 0.8956}, "dc_per_class_pp_all": {}, "dc_per_class_pp_per_class": {}, '
    '"num_samples": 32, "validation_raw": "validation_raw", "validation_final": "validation_raw_postprocessed"}'
)


@pytest.fixture(params=["cc3d", "scipy"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "cc3d":
        pytest.importorskip("cc3d")
    else:
        monkeypatch.setattr(pp_module, "_get_cc3d", lambda: None)
    return str(request.param)


def blobby(rng: np.random.Generator, shape: tuple[int, ...], k: int, *, sigma: float = 1.0,
           background: float = 0.4) -> np.ndarray:
    """Random label map with many components per label (smoothed noise, argmax, some background)."""
    field = ndimage.gaussian_filter(rng.random((k - 1, *shape)), sigma=(0, *([sigma] * len(shape))))
    labels = field.argmax(axis=0).astype(np.uint8) + 1
    labels[field.max(axis=0) < np.quantile(field.max(axis=0), background)] = 0
    return labels


# ------------------------------------------------------------------------------------------ components


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("seed", [0, 1])
def test_keep_largest_matches_reference(rng: np.random.Generator, backend: str, connectivity: int,
                                        seed: int) -> None:
    labels = blobby(np.random.default_rng(seed), (9, 14, 11), 5, sigma=0.8)
    assert max(ndimage.label(labels == c)[1] for c in range(1, 5)) > 1  # something to remove
    for entries in (None, [1, 3], [[1, 2], 3], [3, [1, 2, 4]], [4, [2, 3], 1]):
        ref_entries = entries if entries is not None else [int(v) for v in np.unique(labels[labels > 0])]
        expected, _ = reference.remove_all_but_largest(labels, ref_entries, 1.0, None, connectivity)
        got = keep_largest_component(labels, for_which_classes=entries, connectivity=connectivity)
        np.testing.assert_array_equal(got, expected, err_msg=f"entries={entries}")


@pytest.mark.parametrize("connectivity", [6, 26])
def test_min_sizes_match_reference(backend: str, connectivity: int) -> None:
    labels = blobby(np.random.default_rng(3), (10, 12, 13), 4, sigma=0.7)
    spacing = (2.5, 0.7, 0.9)
    vv = reference.voxel_volume(spacing)
    sizes = {1: 3.5 * vv, (2, 3): 6 * vv, 3: 2.5 * vv}
    entries = [1, [2, 3], 3]
    expected, _ = reference.remove_all_but_largest(labels, entries, vv, {1: sizes[1], (2, 3): sizes[(2, 3)],
                                                                        3: sizes[3]}, connectivity)
    got = keep_largest_component(labels, for_which_classes=entries, connectivity=connectivity,
                                 min_valid_object_sizes=sizes, spacing_mm=spacing)
    np.testing.assert_array_equal(got, expected)
    # the str() form nnU-Net writes is accepted too
    got_str = keep_largest_component(labels, for_which_classes=entries, connectivity=connectivity,
                                     min_valid_object_sizes=str(sizes), spacing_mm=spacing)
    np.testing.assert_array_equal(got_str, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64])
def test_dtypes_are_kept(rng: np.random.Generator, backend: str, dtype: type) -> None:
    labels = blobby(rng, (7, 9, 8), 4).astype(dtype)
    expected, _ = reference.remove_all_but_largest(labels, [1, 2, 3], 1.0)
    got = keep_largest_component(labels)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


def test_layouts_and_degenerate_shapes(rng: np.random.Generator, backend: str) -> None:
    labels = blobby(rng, (8, 10, 12), 4)
    expected, _ = reference.remove_all_but_largest(labels, [1, 2, 3], 1.0)
    fortran = np.asfortranarray(labels)
    strided = np.zeros((16, 10, 12), dtype=np.uint8)[::2]
    strided[...] = labels
    big_endian = labels.astype(">u2")
    readonly = labels.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided, big_endian, readonly):
        got = keep_largest_component(variant)
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(readonly, labels)  # input untouched
    for shape in [(0, 4, 4), (1, 1, 1), (1, 5, 1)]:
        tiny = np.ones(shape, dtype=np.uint8)
        np.testing.assert_array_equal(keep_largest_component(tiny), tiny)
    boolean = labels == 2
    got_bool = keep_largest_component(boolean)
    assert got_bool.dtype == np.bool_
    np.testing.assert_array_equal(got_bool, expected == 2)
    large = labels.astype(np.uint32) * 30000  # label values above 65535
    np.testing.assert_array_equal(keep_largest_component(large), expected.astype(np.uint32) * 30000)


def test_ties_for_largest_are_all_kept(backend: str) -> None:
    labels = np.zeros((5, 12, 12), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1  # 8 voxels
    labels[1:3, 7:9, 7:9] = 1  # 8 voxels, tie
    labels[4, 0, 11] = 1  # 1 voxel
    labels[1:4, 1:3, 8:11] = 2  # single component
    out = keep_largest_component(labels)
    assert np.count_nonzero(out == 1) == 16 and out[4, 0, 11] == 0
    np.testing.assert_array_equal(out == 2, labels == 2)


def test_merged_entry_semantics(backend: str) -> None:
    labels = np.zeros((4, 10, 20), dtype=np.uint8)
    labels[1:3, 2:6, 2:5] = 1
    labels[1:3, 2:6, 5:8] = 2  # touches label 1: one merged region of 48 voxels
    labels[1:3, 2:4, 15:18] = 2  # far piece of label 2 (12 voxels), larger than label 2's other piece?
    labels[0, 8, 15] = 3
    # per label: label 2's pieces are 24 and 12 voxels -> the far one goes
    per_label = keep_largest_component(labels, for_which_classes=[2])
    assert np.count_nonzero(per_label == 2) == 24
    # merged {1, 2}: the far piece is a separate, smaller region -> removed (voxels become 0, not label 1)
    merged = keep_largest_component(labels, for_which_classes=[[1, 2]])
    assert np.count_nonzero(merged == 2) == 24 and np.count_nonzero(merged == 1) == 24
    assert merged[1, 2, 16] == 0 and merged[0, 8, 15] == 3  # label 3 is not part of the region
    # when label 2's big piece stands alone, the merged region decides differently from the per-label one
    lone = labels.copy()
    lone[1:3, 2:6, 2:5] = 0
    lone[1:3, 2:6, 5:8] = 0
    lone[1:3, 7:9, 2:12] = 1  # 40 voxels of label 1 touching nothing
    lone[1:3, 2:4, 2:5] = 2  # 12 voxels, a tie with the far piece for label 2 alone
    np.testing.assert_array_equal(keep_largest_component(lone, for_which_classes=[2]), lone)
    out = keep_largest_component(lone, for_which_classes=[(1, 2)])
    assert np.count_nonzero(out == 2) == 0 and np.count_nonzero(out == 1) == 40


def test_min_sizes_in_mm3_with_anisotropic_spacing(backend: str) -> None:
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[0:4, 0:5, 0:5] = 1  # 100 voxels: largest
    labels[0:2, 10:13, 10:13] = 1  # 18 voxels
    labels[5, 18:20, 18:20] = 1  # 4 voxels
    spacing = (3.0, 0.5, 0.5)  # 0.75 mm³ per voxel: 18 voxels = 13.5 mm³, 4 voxels = 3 mm³
    out = keep_largest_component(labels, min_valid_object_sizes={1: 10.0}, spacing_mm=spacing)
    assert np.count_nonzero(out) == 118  # only the 3 mm³ object is smaller than 10 mm³
    out = keep_largest_component(labels, min_valid_object_sizes={1: 14.0}, spacing_mm=spacing)
    assert np.count_nonzero(out) == 100
    # isotropic 1 mm: 18 mm³ survives a 14 mm³ minimum
    out = keep_largest_component(labels, min_valid_object_sizes={1: 14.0}, spacing_mm=1.0)
    assert np.count_nonzero(out) == 118
    with pytest.raises(ValidationError, match="spacing_mm"):
        keep_largest_component(labels, min_valid_object_sizes={1: 10.0})
    with pytest.raises(ValidationError, match="no size"):
        keep_largest_component(labels, for_which_classes=[1, 2], min_valid_object_sizes={1: 10.0}, spacing_mm=1)


def test_connectivity_6_versus_26(backend: str) -> None:
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    labels[2, 2, 2] = 1  # touches the cube only at a corner
    np.testing.assert_array_equal(keep_largest_component(labels, connectivity=26), labels)
    six = keep_largest_component(labels, connectivity=6)
    assert six[2, 2, 2] == 0 and np.count_nonzero(six) == 8
    edge = np.zeros((4, 4, 4), dtype=np.uint8)
    edge[0:2, 0:2, 0:2] = 1
    edge[1, 2, 2] = 1  # shares an edge with the cube
    assert np.count_nonzero(keep_largest_component(edge, connectivity=18)) == 9
    assert np.count_nonzero(keep_largest_component(edge, connectivity=6)) == 8


def test_bad_component_arguments() -> None:
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    with pytest.raises(ValidationError, match="connectivity"):
        keep_largest_component(labels, connectivity=8)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="connectivity"):
        keep_largest_component(labels, connectivity=True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="3 dimensions"):
        keep_largest_component(np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(ValidationError, match="integer or boolean"):
        keep_largest_component(np.zeros((3, 3, 3), dtype=np.float32))
    with pytest.raises(ValidationError, match="non-negative"):
        keep_largest_component(-np.ones((3, 3, 3), dtype=np.int16))
    with pytest.raises(ValidationError, match="for_which_classes"):
        keep_largest_component(labels, for_which_classes=[0])
    with pytest.raises(ValidationError, match="for_which_classes"):
        keep_largest_component(labels, for_which_classes=[[]])
    with pytest.raises(ValidationError, match="spacing_mm"):
        keep_largest_component(labels, spacing_mm=(1.0, -1.0, 1.0))


def test_cc3d_and_scipy_give_identical_output(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cc3d")
    ph = phantom((24, 64, 64), seed=2)
    pred = simulate_labels(ph, quality=0.6, false_positive_blobs=6, seed=1)
    results = {}
    for name in ("cc3d", "scipy"):
        with monkeypatch.context() as m:
            if name == "scipy":
                m.setattr(pp_module, "_get_cc3d", lambda: None)
            results[name] = [
                keep_largest_component(pred, connectivity=c, for_which_classes=e)
                for c in (6, 18, 26) for e in (None, [tuple(range(1, 12))], [tuple(range(1, 12)), 3, 5])
            ]
    for a, b in zip(results["cc3d"], results["scipy"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results["cc3d"][0], pred)


# ------------------------------------------------------------------------------------------ json


def test_formats_example_round_trips_byte_for_byte(tmp_path: Path) -> None:
    pp = Postprocessing.from_json(FORMATS_EXAMPLE)
    assert pp.for_which_classes == (1, 11, 6)
    assert pp.min_valid_object_sizes is None and pp.num_samples == 32
    assert pp.dc_per_class_raw == {1: 0.8956}
    assert pp.to_json(layout="compact") == FORMATS_EXAMPLE
    assert pp.to_json() == json.dumps(json.loads(FORMATS_EXAMPLE), indent=4, sort_keys=True)
    path = tmp_path / "postprocessing.json"
    (tmp_path / "example.json").write_text(FORMATS_EXAMPLE)
    assert Postprocessing.read(tmp_path / "example.json") == pp
    pp.write(path, layout="compact")
    assert path.read_bytes() == FORMATS_EXAMPLE.encode()
    assert sorted(os.listdir(tmp_path)) == ["example.json", "postprocessing.json"]  # no temp file left
    pp.write(path)
    assert Postprocessing.read(path) == pp and Postprocessing.read(str(path)) == pp


def test_nested_entries_and_min_sizes_round_trip(tmp_path: Path) -> None:
    text = json.dumps({
        "dc_per_class_pp_all": {"1": 0.9, "2": 0.8}, "dc_per_class_pp_per_class": {"1": 0.91, "2": 0.79},
        "dc_per_class_raw": {"1": 0.88, "2": 0.8}, "for_which_classes": [[1, 2], 1],
        "min_valid_object_sizes": "{(1, 2): 25089.0, 1: 8}", "num_samples": 3,
        "validation_final": "validation_raw_postprocessed", "validation_raw": "validation_raw",
    }, indent=4, sort_keys=True)
    pp = Postprocessing.from_json(text)
    assert pp.for_which_classes == ((1, 2), 1)
    assert dict(pp.min_valid_object_sizes or {}) == {(1, 2): 25089.0, 1: 8}
    assert pp.min_size_of((2, 1)) == 25089.0 and pp.min_size_of(1) == 8.0
    assert pp.to_json() == text
    pp.write(tmp_path / "pp.json")
    assert (tmp_path / "pp.json").read_text() == text


def test_numpy2_style_min_sizes_are_parsed() -> None:
    pp = Postprocessing.from_dict({"for_which_classes": [[1, 2], 2],
                                   "min_valid_object_sizes": "{(1, 2): np.float64(12.5), 2: np.float64(3.0)}"})
    assert dict(pp.min_valid_object_sizes or {}) == {(1, 2): 12.5, 2: 3.0}
    assert "np." not in pp.to_json()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"for_which_classes": [1], "extra": 1}, "extra"),
        ({"min_valid_object_sizes": "None"}, "for_which_classes"),
        ({"for_which_classes": [0]}, "for_which_classes"),
        ({"for_which_classes": [-2]}, "for_which_classes"),
        ({"for_which_classes": [True]}, "for_which_classes"),
        ({"for_which_classes": ["1"]}, "for_which_classes"),
        ({"for_which_classes": 1}, "for_which_classes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "{1: }"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "[1, 2]"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "{1: -5.0}"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "{1: 'big'}"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "{0: 5.0}"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1, 2], "min_valid_object_sizes": "{1: 5.0}"}, "min_valid_object_sizes"),
        ({"for_which_classes": [1], "min_valid_object_sizes": "__import__('os').system('echo pwned')"},
         "min_valid_object_sizes"),
        ({"for_which_classes": [1], "dc_per_class_raw": {"liver": 0.9}}, "dc_per_class_raw"),
        ({"for_which_classes": [1], "dc_per_class_raw": {"1": "high"}}, "dc_per_class_raw"),
        ({"for_which_classes": [1], "dc_per_class_pp_all": [0.9]}, "dc_per_class_pp_all"),
        ({"for_which_classes": [1], "num_samples": -1}, "num_samples"),
        ({"for_which_classes": [1], "num_samples": 2.5}, "num_samples"),
        ({"for_which_classes": [1], "validation_raw": 3}, "validation_raw"),
    ],
)
def test_bad_postprocessing_json(data: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=match):
        Postprocessing.from_dict(data)
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match=match):
        Postprocessing.read(path)


def test_labels_out_of_range_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "postprocessing.json"
    path.write_text(FORMATS_EXAMPLE)
    assert Postprocessing.read(path, num_classes=12).for_which_classes == (1, 11, 6)
    with pytest.raises(ValidationError, match=r"for_which_classes.*\[11\]"):
        Postprocessing.read(path, num_classes=8)
    sizes = Postprocessing(for_which_classes=[(1, 2)], min_valid_object_sizes={(1, 2): 5.0, 9: 1.0})
    with pytest.raises(ValidationError, match="min_valid_object_sizes"):
        sizes.validate(5)
    with pytest.raises(ValidationError, match="dc_per_class_raw"):
        Postprocessing(dc_per_class_raw={7: 0.5}).validate(5)
    with pytest.raises(ValidationError, match="num_classes"):
        Postprocessing().validate(1)


def test_broken_files_raise_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        Postprocessing.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{'for_which_classes': [1]")
    with pytest.raises(FormatError, match="not valid JSON"):
        Postprocessing.read(tmp_path / "bad.json")
    with pytest.raises(ValidationError, match="JSON object"):
        Postprocessing.from_json("[1, 2]")
    with pytest.raises(ValidationError, match="layout"):
        Postprocessing().to_json(layout="pretty")  # type: ignore[arg-type]


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "postprocessing.json"
    path.write_text(FORMATS_EXAMPLE)

    def boom(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError, match="disk full"):
        Postprocessing(for_which_classes=[2]).write(path)
    monkeypatch.undo()
    assert path.read_text() == FORMATS_EXAMPLE
    assert os.listdir(tmp_path) == ["postprocessing.json"]


def test_apply_postprocessing_from_file_dict_and_instance(tmp_path: Path, backend: str) -> None:
    labels = blobby(np.random.default_rng(5), (8, 12, 12), 4)
    spec = {"for_which_classes": [[1, 2], 3], "min_valid_object_sizes": "{(1, 2): 6.0, 3: 2.0}"}
    path = tmp_path / "pp.json"
    path.write_text(json.dumps(spec))
    spacing = (2.0, 1.0, 1.5)
    expected, _ = reference.remove_all_but_largest(labels, [[1, 2], 3], reference.voxel_volume(spacing),
                                                   {(1, 2): 6.0, 3: 2.0})
    for source in (path, str(path), spec, Postprocessing.from_dict(spec)):
        np.testing.assert_array_equal(apply_postprocessing(labels, source, spacing_mm=spacing), expected)
    nothing = apply_postprocessing(labels, {"for_which_classes": []})
    np.testing.assert_array_equal(nothing, labels)
    assert nothing is not labels


# ------------------------------------------------------------------------------------------ determine


def add_fragment(pred: np.ndarray, label: int, corner: tuple[int, int, int], size: int = 2) -> None:
    z, y, x = corner
    pred[z:z + size, y:y + size, x:x + size] = label


@pytest.fixture(scope="module")
def organ_cases() -> list[tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """Three phantoms; predictions = reference + small far fragments of labels 2 and 7 only."""
    cases = []
    for seed in range(3):
        ph = phantom((32, 64, 64), seed=seed, crop_margin=1)
        pred = ph.labels.copy()
        free = np.argwhere(ndimage.binary_dilation(ph.labels > 0, iterations=3, structure=np.ones((3, 3, 3)))
                           == 0)
        free = free[(free[:, 0] < 30) & (free[:, 1] < 62) & (free[:, 2] < 62)]
        pick = np.random.default_rng(seed).choice(len(free), size=4, replace=False)
        for label, p in zip((2, 7, 2, 7), pick, strict=True):
            add_fragment(pred, label, tuple(free[p]))
        cases.append((ph.labels, pred, ph.spacing))
    return cases


def test_determine_accepts_exactly_the_fragmented_labels(backend: str, organ_cases: list) -> None:
    pp = determine_postprocessing(iter(organ_cases), num_classes=12)
    # merging all foreground would delete whole organs (kidneys, bladder are separate): rejected
    assert pp.for_which_classes == (2, 7)
    assert pp.min_valid_object_sizes is None and pp.num_samples == 3
    assert pp.dc_per_class_raw[1] == 1.0 and pp.dc_per_class_raw[2] < 1.0
    assert pp.dc_per_class_pp_per_class[2] == 1.0 == pp.dc_per_class_pp_per_class[7]
    assert pp.dc_per_class_pp_all[6] < 1.0  # a separate organ lost in the merged step
    assert set(pp.dc_per_class_raw) == set(range(1, 12))
    expected = reference.determine_postprocessing(organ_cases, 12)
    assert list(pp.for_which_classes) == expected["for_which_classes"]
    pp.validate(12)


def test_determine_accepts_the_merged_step_when_nothing_gets_worse(backend: str) -> None:
    ref = np.zeros((6, 20, 20), dtype=np.uint8)
    ref[1:5, 2:8, 2:6] = 1
    ref[1:5, 2:8, 6:10] = 2  # labels 1 and 2 touch: one foreground region
    cases = []
    for i in range(2):
        pred = ref.copy()
        add_fragment(pred, 1 + i, (1, 15, 15))
        cases.append((ref, pred, (2.0, 1.0, 1.0)))
    pp = determine_postprocessing(cases, num_classes=3)
    assert pp.for_which_classes == ((1, 2),)
    assert pp.dc_per_class_pp_all == {1: 1.0, 2: 1.0}
    assert pp.dc_per_class_pp_per_class == {1: 1.0, 2: 1.0}  # nothing more to gain: not added
    text = pp.to_json(layout="compact")
    assert '"for_which_classes": [[1, 2]]' in text
    fixed = apply_postprocessing(cases[0][1], Postprocessing.from_json(text))
    np.testing.assert_array_equal(fixed, ref)


def test_determine_with_one_foreground_label_skips_the_per_label_step(backend: str) -> None:
    ref = np.zeros((4, 10, 10), dtype=np.uint8)
    ref[1:3, 1:5, 1:5] = 1
    pred = ref.copy()
    pred[3, 8, 8] = 1
    pp = determine_postprocessing([(ref, pred, None)], num_classes=2)
    assert pp.for_which_classes == ((1,),) and pp.dc_per_class_pp_per_class == {}


def validation_cases(family: str, seed: int) -> list[tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """Small references with simulated noisy predictions plus background specks.

    ``separate``: labels 1, 2, 4 are single boxes (touching or not), label 3 has two pieces;
    ``touching``: four adjacent slabs (one foreground region); ``blobby``: many pieces per label.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(4):
        ref = np.zeros((10, 24, 24), dtype=np.uint8)
        if family == "separate":
            z = rng.integers(1, 3)
            ref[z:z + 6, 3:11, 3:10] = 1
            ref[z:z + 6, 3:11, (10 if i % 2 == 0 else 11):16] = 2
            ref[1:5, 14:20, 2:8] = 3
            ref[6:9, 14:20, 16:21] = 3
            ref[2:7, 15:21, 10:14] = 4
        elif family == "touching":
            y0 = rng.integers(2, 6)
            for c in range(1, 5):
                ref[2:8, y0:y0 + 12, 2 + 4 * c:6 + 4 * c] = c
        else:
            ref = blobby(rng, (10, 24, 24), 5, sigma=1.6, background=0.5)
        pred = simulate_labels(ref, num_classes=5, quality=0.85, boundary_noise=0.8, spacing=(2.0, 1.0, 1.0), seed=i)
        specks = (rng.random(pred.shape) < 0.003) & (ref == 0)
        pred[specks] = rng.integers(1, 5, size=int(specks.sum()))
        cases.append((ref, pred, (2.0, 1.0, 1.25 if i % 2 else 1.0)))
    return cases


@pytest.mark.parametrize("family", ["separate", "touching", "blobby"])
@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("min_object_size", ["none", "auto"])
def test_determine_matches_the_multi_pass_reference(backend: str, family: str, connectivity: int,
                                                    min_object_size: str) -> None:
    cases = validation_cases(family, seed=connectivity)
    got = determine_postprocessing(iter(cases), num_classes=5, connectivity=connectivity,  # type: ignore[arg-type]
                                   min_object_size=min_object_size)  # type: ignore[arg-type]
    expected = reference.determine_postprocessing(cases, 5, connectivity=connectivity,
                                                  advanced=min_object_size == "auto")
    got_entries = [list(e) if isinstance(e, tuple) else e for e in got.for_which_classes]
    assert got_entries == expected["for_which_classes"]
    if family == "separate":
        assert 3 not in got_entries and {1, 2, 4} <= set(got_entries)
    if family == "touching":
        assert got_entries[0] == [1, 2, 3, 4]
    for key in ("dc_per_class_raw", "dc_per_class_pp_all", "dc_per_class_pp_per_class"):
        assert set(getattr(got, key)) == set(expected[key])
        for c, v in expected[key].items():
            assert getattr(got, key)[c] == pytest.approx(v, abs=1e-12, nan_ok=True), (key, c)
    if expected["min_valid_object_sizes"] is None:
        assert got.min_valid_object_sizes is None
    else:
        assert dict(got.min_valid_object_sizes or {}) == pytest.approx(expected["min_valid_object_sizes"])
        assert len(expected["min_valid_object_sizes"]) == len(got_entries)


def test_determine_bad_arguments(organ_cases: list) -> None:
    ref, pred, spacing = organ_cases[0]
    with pytest.raises(ValidationError, match="num_classes"):
        determine_postprocessing([(ref, pred, spacing)], num_classes=1)
    with pytest.raises(ValidationError, match=r"case 0.*reference.*label 11"):
        determine_postprocessing([(ref, pred, spacing)], num_classes=8)
    with pytest.raises(ValidationError, match="empty"):
        determine_postprocessing([], num_classes=12)
    with pytest.raises(ValidationError, match=r"cases\[0\]"):
        determine_postprocessing([ref], num_classes=12)
    with pytest.raises(ValidationError, match="same shape"):
        determine_postprocessing([(ref, pred[:-1], spacing)], num_classes=12)
    with pytest.raises(ValidationError, match="spacing"):
        determine_postprocessing([(ref, pred, (1.0, 1.0))], num_classes=12)
    with pytest.raises(ValidationError, match="connectivity"):
        determine_postprocessing([(ref, pred, spacing)], num_classes=12, connectivity=4)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="min_object_size"):
        determine_postprocessing([(ref, pred, spacing)], num_classes=12, min_object_size="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dice_threshold"):
        determine_postprocessing([(ref, pred, spacing)], num_classes=12, dice_threshold=math.nan)


@pytest.mark.real_data
def test_real_submission_maps(real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LCC on real baseline predictions: cc3d and scipy agree, and determine matches the reference."""
    pytest.importorskip("cc3d")
    sitk = pytest.importorskip("SimpleITK")
    import zipfile

    with zipfile.ZipFile(real_data / "baseline_submit.zip") as zf:
        names = sorted(zf.namelist())[:2]
        zf.extractall(tmp_path, members=names)
    cases = []
    for i, name in enumerate(names):
        image = sitk.ReadImage(str(tmp_path / name))
        ref = sitk.GetArrayFromImage(image)[:, ::4, ::4]  # subsampled: quick, still real shapes
        spacing = tuple(reversed(image.GetSpacing()))
        spacing = (spacing[0], spacing[1] * 4, spacing[2] * 4)
        pred = simulate_labels(ref, num_classes=12, quality=0.8, false_positive_blobs=3, spacing=spacing, seed=i)
        cases.append((ref, pred, spacing))
    fast = [keep_largest_component(p) for _, p, _ in cases]
    fast_pp = determine_postprocessing(cases, num_classes=12)
    monkeypatch.setattr(pp_module, "_get_cc3d", lambda: None)
    for (_, p, _), f in zip(cases, fast, strict=True):
        np.testing.assert_array_equal(keep_largest_component(p), f)
    assert determine_postprocessing(cases, num_classes=12) == fast_pp
    expected = reference.determine_postprocessing(cases, 12)
    assert [list(e) if isinstance(e, tuple) else e for e in fast_pp.for_which_classes] \
        == expected["for_which_classes"]
