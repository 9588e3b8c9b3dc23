"""Prediction folders: layout detection, case sources in original geometry, writers, bad inputs."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from medfuse.errors import (
    CaseMismatchError,
    FormatError,
    GeometryMismatchError,
    UnsafePickleError,
    ValidationError,
)
from medfuse.geometry import Geometry
from medfuse.io import (
    check_same_geometry,
    load_pickle,
    open_folder,
    read_nifti,
    save_pickle,
    v1_properties,
    v2_properties,
    write_nifti,
    write_v1_case,
    write_v2_case,
)

pytest.importorskip("SimpleITK")

SHAPE = (9, 14, 12)
BOX = ((2, 8), (3, 12), (1, 10))
BOX_SIZES = tuple(hi - lo for lo, hi in BOX)


def _geometry(shape: tuple[int, ...] = SHAPE, *, origin_shift: float = 0.0) -> Geometry:
    a = math.radians(20.0)
    direction = (math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0, 0.0, 0.0, 1.0)
    return Geometry(shape, spacing=(3.0, 0.75, 0.75), origin=(-100.0 + origin_shift, 50.5, -20.25),
                    direction=direction)


def _probabilities(rng: np.random.Generator, c: int, spatial: tuple[int, ...], dtype: type = np.float16
                   ) -> np.ndarray:
    logits = rng.standard_normal((c, *spatial)).astype(np.float32) * 2
    e = np.exp(logits - logits.max(0, keepdims=True))
    return (e / e.sum(0, keepdims=True)).astype(dtype)


def _v1_folder(path: Path, rng: np.random.Generator, cases: tuple[str, ...] = ("case_a", "case_b"),
               c: int = 4) -> dict[str, np.ndarray]:
    """v1 folder with the extras a real one has (plans pkl, postprocessing.json), probabilities per case."""
    out = {}
    for name in cases:
        p = _probabilities(rng, c, BOX_SIZES)
        write_v1_case(path, name, probabilities=p, geometry=_geometry(), crop_bbox=BOX)
        out[name] = p
    save_pickle(path / "nnUNetPlansv2.1_plans_3D.pkl", {"num_classes": c - 1, "plans_per_stage": {}})
    (path / "postprocessing.json").write_text(json.dumps({"for_which_classes": [1]}))
    (path / "summary.json").write_text("{}")
    (path / "fusion.json").write_text("{}")
    (path / ".DS_Store").write_bytes(b"junk")
    (path / ".medfuse-tmp-0123abcd-case_c.nii.gz").write_bytes(b"half written")
    (path / "notes.txt").write_text("hello")
    return out


def _expected_full(p: np.ndarray) -> np.ndarray:
    full = np.zeros((p.shape[0], *SHAPE), p.dtype)
    full[0] = 1
    full[(slice(None), *(slice(lo, hi) for lo, hi in BOX))] = p
    return full


# -- v1 -----------------------------------------------------------------------------------------------
def test_v1_folder_round_trip(tmp_path, rng):
    probs = _v1_folder(tmp_path, rng)
    folder = open_folder(tmp_path)
    assert folder.layout == "v1"
    assert folder.cases == ("case_a", "case_b") and len(folder) == 2 and list(folder) == list(folder.cases)
    assert "case_a" in folder and "case_c" not in folder
    src = folder.case("case_b")
    assert src is folder["case_b"]
    assert src.layout == "v1" and src.name == "case_b" and src.folder is folder and src.has_probabilities
    assert src.geometry == _geometry()
    assert src.crop_bbox == BOX
    assert src.num_classes == 4
    cropped = src.read_probabilities()
    assert cropped.dtype == np.float16 and cropped.shape == (4, *BOX_SIZES)
    np.testing.assert_array_equal(cropped, probs["case_b"])
    full = src.read_probabilities(full=True)
    np.testing.assert_array_equal(full, _expected_full(probs["case_b"]))
    for c, channel in src.iter_channels():
        np.testing.assert_array_equal(channel, probs["case_b"][c])
    labels = src.read_labels()
    assert labels.dtype == np.uint8 and labels.shape == SHAPE
    np.testing.assert_array_equal(labels, _expected_full(probs["case_b"]).argmax(0))
    assert isinstance(src.properties, dict) and "crop_bbox" in src.properties
    src.check()


def test_v1_labels_without_nifti_are_the_argmax_pasted(tmp_path, rng):
    probs = _v1_folder(tmp_path, rng, cases=("only",), c=3)
    os.remove(tmp_path / "only.nii.gz")
    src = open_folder(tmp_path).case("only")
    assert src.label_path is None
    np.testing.assert_array_equal(src.read_labels(), _expected_full(probs["only"]).argmax(0))


def test_v1_nifti_labels_are_read_as_written_not_recomputed(tmp_path, rng):
    """The label file may be postprocessed: read_labels returns the file, not the argmax."""
    p = _probabilities(rng, 3, BOX_SIZES)
    own = rng.integers(0, 3, size=SHAPE).astype(np.uint8)
    write_v1_case(tmp_path, "x", probabilities=p, labels=own, geometry=_geometry(), crop_bbox=BOX)
    np.testing.assert_array_equal(open_folder(tmp_path).case("x").read_labels(), own)


def test_v1_properties_have_the_real_keys_and_types():
    props = v1_properties(_geometry(), BOX)
    assert list(props) == [
        "original_size_of_raw_data", "original_spacing", "list_of_data_files", "seg_file", "itk_origin",
        "itk_spacing", "itk_direction", "crop_bbox", "classes", "size_after_cropping", "size_after_resampling",
        "spacing_after_resampling",
    ]
    assert props["original_size_of_raw_data"].dtype == np.int64
    np.testing.assert_array_equal(props["original_size_of_raw_data"], SHAPE)
    np.testing.assert_array_equal(props["original_spacing"], (3.0, 0.75, 0.75))
    assert props["itk_spacing"] == (0.75, 0.75, 3.0) and type(props["itk_spacing"]) is tuple
    assert props["crop_bbox"] == [list(b) for b in BOX] and all(type(v) is int for b in props["crop_bbox"] for v in b)
    np.testing.assert_array_equal(props["classes"], [-1, 0])
    assert props["size_after_cropping"] == BOX_SIZES
    assert v1_properties(_geometry(), BOX, size_after_resampling=(1, 2, 3))["size_after_resampling"] == (1, 2, 3)


def test_v1_ensemble_list_pickle(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("e",))
    props = load_pickle(tmp_path / "e.pkl")
    save_pickle(tmp_path / "e.pkl", [props, dict(props), props])
    src = open_folder(tmp_path).case("e")
    assert src.geometry == _geometry() and src.crop_bbox == BOX
    src.read_probabilities()


def test_v1_ensemble_list_that_disagrees(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("e",))
    props = load_pickle(tmp_path / "e.pkl")
    other = dict(props, crop_bbox=[[0, 6], [3, 12], [1, 10]], itk_origin=(0.0, 0.0, 0.0))
    save_pickle(tmp_path / "e.pkl", [props, other])
    with pytest.raises(GeometryMismatchError, match=r"entry 1.*origin.*crop_bbox"):
        _ = open_folder(tmp_path).case("e").geometry


@pytest.mark.parametrize("content", [[], [1, 2], "a string", {"no": "keys"}])
def test_v1_pickle_that_is_not_properties(tmp_path, rng, content):
    _v1_folder(tmp_path, rng, cases=("e",))
    save_pickle(tmp_path / "e.pkl", content)
    with pytest.raises(FormatError, match=r"e\.pkl"):
        _ = open_folder(tmp_path).case("e").geometry


def test_v1_npz_shape_differs_from_crop_box(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("m",))
    np.savez_compressed(tmp_path / "m.npz", softmax=_probabilities(rng, 4, (6, 9, 8)))
    src = open_folder(tmp_path).case("m")
    with pytest.raises(GeometryMismatchError) as info:
        src.read_probabilities()
    message = str(info.value)
    assert "m.npz" in message and "(6, 9, 8)" in message and "[[2, 8], [3, 12], [1, 10]]" in message
    assert "(6, 9, 9)" in message  # the box size
    with pytest.raises(GeometryMismatchError):
        next(src.iter_channels())
    with pytest.raises(GeometryMismatchError):
        src.check()


def test_v1_crop_box_outside_the_image(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("m",))
    props = load_pickle(tmp_path / "m.pkl")
    props["crop_bbox"] = [[0, 99], [3, 12], [1, 10]]
    save_pickle(tmp_path / "m.pkl", props)
    with pytest.raises(FormatError, match="crop_bbox"):
        _ = open_folder(tmp_path).case("m").crop_bbox


def test_v1_pickle_and_label_header_disagree(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("g",))
    write_nifti(tmp_path / "g.nii.gz", np.zeros(SHAPE, np.uint8), _geometry(origin_shift=1.5))
    with pytest.raises(GeometryMismatchError, match=r"g\.pkl.*g\.nii\.gz.*origin"):
        _ = open_folder(tmp_path).case("g").geometry


def test_malicious_case_pickle_is_refused_on_use(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("evil",))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"crop_bbox": Evil()}, protocol=3))
    src = open_folder(tmp_path).case("evil")
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl"):
        _ = src.geometry
    assert not marker.exists()


def test_truncated_npz_in_a_folder(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("t",))
    path = tmp_path / "t.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"t\.npz"):
        open_folder(tmp_path)  # the zip directory is gone: detection already fails


def test_corrupt_label_file_in_a_folder(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("t",))
    path = tmp_path / "t.nii.gz"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(FormatError, match=r"t\.nii\.gz"):
        _ = open_folder(tmp_path).case("t").geometry


# -- v2 -----------------------------------------------------------------------------------------------
def test_v2_folder_round_trip(tmp_path, rng):
    geometry = _geometry()
    probs = {n: _probabilities(rng, 3, SHAPE, np.float32) for n in ("a", "b")}
    for name, p in probs.items():
        write_v2_case(tmp_path, name, probabilities=p, geometry=geometry, crop_bbox=BOX)
    for extra in ("dataset.json", "plans.json", "predict_from_raw_data_args.json"):
        (tmp_path / extra).write_text(json.dumps({"labels": {"background": 0, "organ": 1, "other": 2}}))
    folder = open_folder(tmp_path)
    assert folder.layout == "v2" and folder.cases == ("a", "b") and folder.regions_class_order is None
    src = folder.case("a")
    assert src.geometry == geometry and src.crop_bbox == tuple((0, s) for s in SHAPE) and src.num_classes == 3
    p = src.read_probabilities()
    assert p.dtype == np.float32
    np.testing.assert_array_equal(p, probs["a"])
    np.testing.assert_array_equal(src.read_probabilities(full=True), probs["a"])
    np.testing.assert_array_equal(src.read_labels(), probs["a"].argmax(0))
    for c, channel in src.iter_channels():
        np.testing.assert_array_equal(channel, probs["a"][c])
    props = src.properties
    assert props["bbox_used_for_cropping"] == [list(b) for b in BOX]
    assert props["sitk_stuff"]["spacing"] == geometry.itk_spacing


def test_v2_properties_keys():
    props = v2_properties(_geometry(), crop_bbox=BOX)
    assert set(props) == {"sitk_stuff", "spacing", "shape_before_cropping", "bbox_used_for_cropping",
                          "shape_after_cropping_and_before_resampling"}
    assert props["spacing"] == [3.0, 0.75, 0.75]
    assert props["shape_after_cropping_and_before_resampling"] == BOX_SIZES


def test_v2_transposed_shape_before_cropping_is_accepted(tmp_path, rng):
    """nnU-Net v2 stores shape_before_cropping in the model's transposed axis order."""
    p = _probabilities(rng, 2, SHAPE, np.float32)
    write_v2_case(tmp_path, "t", probabilities=p, geometry=_geometry(),
                  extra_properties={"shape_before_cropping": (SHAPE[2], SHAPE[0], SHAPE[1])})
    assert open_folder(tmp_path).case("t").geometry == _geometry()


def test_v2_shape_before_cropping_that_does_not_fit(tmp_path, rng):
    p = _probabilities(rng, 2, SHAPE, np.float32)
    write_v2_case(tmp_path, "t", probabilities=p, geometry=_geometry(),
                  extra_properties={"shape_before_cropping": (5, 5, 5)})
    with pytest.raises(GeometryMismatchError, match="shape_before_cropping"):
        _ = open_folder(tmp_path).case("t").geometry


def test_v2_without_sitk_stuff_uses_the_label_header(tmp_path, rng):
    p = _probabilities(rng, 2, SHAPE, np.float32)
    write_v2_case(tmp_path, "n", probabilities=p, geometry=_geometry())
    props = load_pickle(tmp_path / "n.pkl")
    del props["sitk_stuff"]
    save_pickle(tmp_path / "n.pkl", props)
    assert open_folder(tmp_path).case("n").geometry == read_nifti(tmp_path / "n.nii.gz")[1]
    os.remove(tmp_path / "n.nii.gz")
    with pytest.raises(FormatError, match="sitk_stuff"):
        _ = open_folder(tmp_path).case("n").geometry


def test_v2_region_based_dataset_json(tmp_path, rng):
    write_v2_case(tmp_path, "r", probabilities=_probabilities(rng, 2, SHAPE, np.float32), geometry=_geometry())
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "whole": [1, 2], "core": [2]}, "regions_class_order": [1, 2]}))
    assert open_folder(tmp_path).regions_class_order == (1, 2)


@pytest.mark.parametrize("ending", [".nrrd", ".mha"])
def test_v2_other_file_endings(tmp_path, rng, ending):
    p = _probabilities(rng, 2, SHAPE, np.float32)
    write_v2_case(tmp_path, "o", probabilities=p, geometry=_geometry(), file_ending=ending)
    src = open_folder(tmp_path).case("o")
    assert src.label_path is not None and src.label_path.name == f"o{ending}"
    np.testing.assert_array_equal(src.read_labels(), p.argmax(0))


# -- labels -------------------------------------------------------------------------------------------
def test_labels_folder(tmp_path, rng):
    maps = {n: rng.integers(0, 5, size=SHAPE).astype(np.uint8) for n in ("x", "y", "z")}
    for name, lab in maps.items():
        write_nifti(tmp_path / f"{name}.nii.gz", lab, _geometry())
    (tmp_path / "summary.json").write_text("{}")
    folder = open_folder(tmp_path)
    assert folder.layout == "labels" and folder.cases == ("x", "y", "z")
    src = folder.case("y")
    assert not src.has_probabilities and src.num_classes is None and src.properties == {}
    assert src.geometry == read_nifti(tmp_path / "y.nii.gz")[1] and src.crop_bbox == tuple((0, s) for s in SHAPE)
    np.testing.assert_array_equal(src.read_labels(), maps["y"])
    with pytest.raises(FormatError, match="no probabilities"):
        src.read_probabilities()
    with pytest.raises(FormatError, match="no probabilities"):
        next(src.iter_channels())


@pytest.mark.parametrize(("dtype", "values", "stored"), [(np.int16, (0, 7), np.uint8), (np.uint16, (0, 300), np.uint16),
                                                         (np.float32, (0.0, 3.0), np.uint8)])
def test_label_files_of_other_types_are_normalised(tmp_path, dtype, values, stored):
    lab = np.zeros(SHAPE, dtype)
    lab.flat[:2] = values
    write_nifti(tmp_path / "a.nii.gz", lab, _geometry(), dtype=dtype)
    out = open_folder(tmp_path).case("a").read_labels()
    assert out.dtype == stored
    np.testing.assert_array_equal(out, lab.astype(np.int64))


@pytest.mark.parametrize(("dtype", "value"), [(np.int16, -1), (np.float32, 0.5)])
def test_label_files_that_are_not_label_maps(tmp_path, dtype, value):
    lab = np.zeros(SHAPE, dtype)
    lab.flat[0] = value
    write_nifti(tmp_path / "a.nii.gz", lab, _geometry(), dtype=dtype)
    with pytest.raises(FormatError, match=r"a\.nii\.gz"):
        open_folder(tmp_path).case("a").read_labels()


# -- detection errors ---------------------------------------------------------------------------------
def test_empty_folder(tmp_path):
    with pytest.raises(FormatError, match=f"{tmp_path}.*nothing at all"):
        open_folder(tmp_path)


def test_folder_with_only_non_case_files(tmp_path):
    save_pickle(tmp_path / "nnUNetPlansv2.1_plans_3D.pkl", {"a": 1})
    (tmp_path / "postprocessing.json").write_text("{}")
    (tmp_path / "fold_0").mkdir()
    with pytest.raises(FormatError) as info:
        open_folder(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "nnUNetPlansv2.1_plans_3D.pkl" in message and "fold_0/" in message


def test_missing_folder(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        open_folder(tmp_path / "nope")


def test_mixed_v1_and_v2(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one",))
    write_v2_case(tmp_path, "two", probabilities=_probabilities(rng, 4, SHAPE, np.float32), geometry=_geometry())
    with pytest.raises(FormatError, match=r"mixes layouts.*1 v1.*'softmax'.*1 v2.*'probabilities'"):
        open_folder(tmp_path)


def test_mixed_probabilities_and_label_only_cases(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one",))
    write_nifti(tmp_path / "lonely.nii.gz", np.zeros(SHAPE, np.uint8), _geometry())
    with pytest.raises(FormatError, match=r"mixes layouts.*label-only cases \(lonely\)"):
        open_folder(tmp_path)


def test_npz_without_pkl(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one", "two"))
    os.remove(tmp_path / "two.pkl")
    with pytest.raises(FormatError, match=r"two\.npz"):
        open_folder(tmp_path)


def test_npz_with_unknown_key(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one",))
    np.savez_compressed(tmp_path / "one.npz", logits=np.zeros((2, 2, 2, 2), np.float32))
    with pytest.raises(FormatError, match=r"one\.npz.*\['logits'\]"):
        open_folder(tmp_path)


def test_two_label_files_for_one_case(tmp_path):
    write_nifti(tmp_path / "a.nii.gz", np.zeros(SHAPE, np.uint8), _geometry())
    write_nifti(tmp_path / "a.mha", np.zeros(SHAPE, np.uint8), _geometry())
    with pytest.raises(FormatError, match="two label files"):
        open_folder(tmp_path)


def test_unknown_case(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one",))
    with pytest.raises(CaseMismatchError, match="no case 'zzz'"):
        open_folder(tmp_path).case("zzz")


def test_open_folder_accepts_a_folder(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one",))
    folder = open_folder(str(tmp_path))
    assert open_folder(folder) is folder
    assert "v1" in repr(folder) and "one" in repr(folder.case("one"))


# -- geometry across members --------------------------------------------------------------------------
def _member_folders(tmp_path: Path, rng: np.random.Generator, shifts: list[float]) -> list[Path]:
    paths = []
    for i, shift in enumerate(shifts):
        path = tmp_path / f"model{i}"
        write_v1_case(path, "case", probabilities=_probabilities(rng, 3, BOX_SIZES),
                      geometry=_geometry(origin_shift=shift), crop_bbox=BOX)
        paths.append(path)
    return paths


def test_check_same_geometry_passes_within_tolerance(tmp_path, rng):
    paths = _member_folders(tmp_path, rng, [0.0, 0.0, 1e-9])
    sources = [open_folder(p).case("case") for p in paths]
    assert check_same_geometry(sources) == _geometry()
    labels = tmp_path / "labels"
    labels.mkdir()
    write_nifti(labels / "case.nii.gz", np.zeros(SHAPE, np.uint8), _geometry())
    v2 = tmp_path / "v2"
    write_v2_case(v2, "case", probabilities=_probabilities(rng, 3, SHAPE, np.float32), geometry=_geometry())
    check_same_geometry([*sources, open_folder(labels).case("case"), open_folder(v2).case("case")])


def test_check_same_geometry_names_case_folders_and_fields(tmp_path, rng):
    paths = _member_folders(tmp_path, rng, [0.0, 0.0, 0.5])
    sources = [open_folder(p).case("case") for p in paths]
    with pytest.raises(GeometryMismatchError) as info:
        check_same_geometry(sources)
    message = str(info.value)
    assert "'case'" in message and "model2" in message and "model0" in message and "origin" in message
    assert "model1 vs" not in message and "spacing" not in message


def test_check_same_geometry_shape(tmp_path, rng):
    a, b = tmp_path / "a", tmp_path / "b"
    write_v2_case(a, "c", labels=np.zeros(SHAPE, np.uint8), geometry=_geometry())
    write_v2_case(b, "c", labels=np.zeros((9, 14, 13), np.uint8), geometry=_geometry((9, 14, 13)))
    with pytest.raises(GeometryMismatchError, match="shape"):
        check_same_geometry([open_folder(a).case("c"), open_folder(b).case("c")])


def test_check_same_geometry_bad_arguments(tmp_path, rng):
    _v1_folder(tmp_path, rng, cases=("one", "two"))
    folder = open_folder(tmp_path)
    with pytest.raises(ValidationError, match="same case"):
        check_same_geometry([folder.case("one"), folder.case("two")])
    with pytest.raises(ValidationError, match="at least one"):
        check_same_geometry([])


# -- writers ------------------------------------------------------------------------------------------
def test_writers_validate_their_inputs(tmp_path, rng):
    g = _geometry()
    with pytest.raises(ValidationError, match="neither"):
        write_v1_case(tmp_path, "x", geometry=g, crop_bbox=BOX)
    with pytest.raises(GeometryMismatchError, match="spatial shape"):
        write_v1_case(tmp_path, "x", probabilities=_probabilities(rng, 3, SHAPE), geometry=g, crop_bbox=BOX)
    with pytest.raises(ValidationError, match="floating"):
        write_v1_case(tmp_path, "x", probabilities=np.zeros((3, *BOX_SIZES), np.int32), geometry=g, crop_bbox=BOX)
    with pytest.raises(ValidationError, match="crop_bbox"):
        write_v1_case(tmp_path, "x", labels=np.zeros(SHAPE, np.uint8), geometry=g, crop_bbox=[[0, 99], [0, 1], [0, 1]])
    with pytest.raises(GeometryMismatchError, match="labels"):
        write_v1_case(tmp_path, "x", labels=np.zeros((2, 2, 2), np.uint8), geometry=g, crop_bbox=BOX)
    for bad in ("", ".hidden", "a/b", "../up"):
        with pytest.raises(ValidationError, match="`case`"):
            write_v1_case(tmp_path, bad, labels=np.zeros(SHAPE, np.uint8), geometry=g, crop_bbox=BOX)
    with pytest.raises(ValidationError, match="file_ending"):
        write_v2_case(tmp_path, "x", labels=np.zeros(SHAPE, np.uint8), geometry=g, file_ending=".png")
    with pytest.raises(ValidationError, match="geometry"):
        write_v2_case(tmp_path, "x", labels=np.zeros(SHAPE, np.uint8), geometry=SHAPE)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_writers_are_atomic_and_write_the_real_formats(tmp_path, rng):
    p = _probabilities(rng, 3, BOX_SIZES, np.float32)
    written = write_v1_case(tmp_path / "new" / "deep", "c", probabilities=p, geometry=_geometry(), crop_bbox=BOX)
    folder = tmp_path / "new" / "deep"
    assert sorted(os.listdir(folder)) == ["c.nii.gz", "c.npz", "c.pkl"]
    assert written.npz == folder / "c.npz" and written.pkl == folder / "c.pkl" and written.labels == folder / "c.nii.gz"
    with np.load(folder / "c.npz") as z:
        assert list(z.keys()) == ["softmax"]
        assert z["softmax"].dtype == np.float16 and z["softmax"].shape == (3, *BOX_SIZES)
    labels, geometry = read_nifti(folder / "c.nii.gz")
    assert labels.dtype == np.uint8 and geometry.differences(_geometry()) == []
    only_labels = write_v1_case(tmp_path / "l", "c", labels=np.zeros(SHAPE, np.int64), geometry=_geometry(),
                                crop_bbox=BOX)
    assert only_labels.npz is None and only_labels.pkl is None
    assert os.listdir(tmp_path / "l") == ["c.nii.gz"]


def test_many_classes_write_uint16_labels(tmp_path, rng):
    p = np.zeros((300, 2, 2, 2), np.float16)
    p[299] = 1
    write_v2_case(tmp_path, "c", probabilities=p, geometry=Geometry.default((2, 2, 2)))
    labels, _ = read_nifti(tmp_path / "c.nii.gz")
    assert labels.dtype == np.uint16 and np.all(labels == 299)


def test_copying_a_folder_keeps_it_readable(tmp_path, rng):
    _v1_folder(tmp_path / "a", rng, cases=("one",))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert open_folder(tmp_path / "b").case("one").geometry == _geometry()


def test_importing_medfuse_io_stays_light():
    import subprocess
    import sys

    code = ("import sys, medfuse.io; heavy = [m for m in ('SimpleITK', 'isal', 'zlib_ng', 'numba', 'scipy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_subset_keeps_only_the_named_cases_and_pickles(tmp_path, rng):
    import pickle

    probs = _v1_folder(tmp_path, rng)
    folder = open_folder(tmp_path)
    sub = pickle.loads(pickle.dumps(folder.subset(["case_b"])))
    assert sub.cases == ("case_b",) and sub.layout == "v1" and sub.path == folder.path
    np.testing.assert_array_equal(sub.case("case_b").read_probabilities(), probs["case_b"])
    with pytest.raises(CaseMismatchError, match="case_z"):
        folder.subset(["case_z"])
