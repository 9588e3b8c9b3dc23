"""The io layer on the real competition files (skipped when ../shared/data is absent)."""

from __future__ import annotations

import collections
import shutil
import zipfile

import numpy as np
import pytest

from medfuse.errors import GeometryMismatchError
from medfuse.geometry import Geometry
from medfuse.io import (
    load_pickle,
    open_folder,
    read_geometry,
    read_nifti,
    save_pickle,
    v1_properties,
    write_nifti,
)
from medfuse.io.v1 import v1_crop_bbox, v1_geometry

pytestmark = pytest.mark.real_data
pytest.importorskip("SimpleITK")

REAL_BOX = ((18, 107), (228, 579), (114, 615))
REAL_GEOMETRY = Geometry(
    shape=(107, 768, 768),
    spacing=(5.0, 0.5833333134651184, 0.5833333134651184),
    origin=(-258.0, 373.4166564941406, -383.5),
    direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
)


def test_real_case_properties_load(real_data):
    props = load_pickle(real_data / "case_properties.pkl")
    assert isinstance(props, collections.OrderedDict)
    assert v1_geometry(props, source="real") == REAL_GEOMETRY
    assert v1_crop_bbox(props, source="real") == REAL_BOX
    assert props["size_after_cropping"] == (89, 351, 501)
    np.testing.assert_array_equal(props["classes"], [-1, 0])


def test_real_plans_load(real_data):
    plans = load_pickle(real_data / "nnUNetPlansv2.1_plans_3D.pkl")
    assert plans["num_classes"] == 11 and plans["num_stages"] == 2
    stage = plans["plans_per_stage"][1]
    assert list(stage["patch_size"]) == [64, 160, 160]


def test_v1_properties_reproduce_the_real_file_byte_for_byte(real_data, tmp_path):
    real = load_pickle(real_data / "case_properties.pkl")
    ours = v1_properties(
        v1_geometry(real, source="real"), REAL_BOX,
        list_of_data_files=real["list_of_data_files"],
        size_after_resampling=real["size_after_resampling"],
        spacing_after_resampling=real["spacing_after_resampling"],
    )
    save_pickle(tmp_path / "case.pkl", ours)
    assert (tmp_path / "case.pkl").read_bytes() == (real_data / "case_properties.pkl").read_bytes()


def test_real_label_map_round_trip(real_data, tmp_path):
    labels, geometry = read_nifti(real_data / "case_labels.nii.gz")
    assert labels.shape == (107, 768, 768) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 11
    assert geometry == REAL_GEOMETRY
    assert read_geometry(real_data / "case_labels.nii.gz") == geometry
    write_nifti(tmp_path / "copy.nii.gz", labels, geometry)
    again, geometry2 = read_nifti(tmp_path / "copy.nii.gz")
    assert geometry2 == geometry
    assert geometry2.direction == geometry.direction and geometry2.origin == geometry.origin
    np.testing.assert_array_equal(again, labels)


def test_real_empty_prediction(real_data, tmp_path):
    shutil.copy(real_data / "case_empty_prediction.nii.gz", tmp_path / "case.nii.gz")
    folder = open_folder(tmp_path)
    assert folder.layout == "labels"
    src = folder.case("case")
    assert src.geometry == REAL_GEOMETRY
    labels = src.read_labels()
    assert labels.dtype == np.uint8 and not labels.any()


def _real_v1_case(real_data, folder, *, cropped_shape=None):
    """A v1 case around the real properties: real labels, 2-class float16 probabilities in the crop box."""
    folder.mkdir(exist_ok=True)
    shutil.copy(real_data / "case_properties.pkl", folder / "case.pkl")
    shutil.copy(real_data / "case_labels.nii.gz", folder / "case.nii.gz")
    labels, _ = read_nifti(real_data / "case_labels.nii.gz")
    inside = labels[tuple(slice(lo, hi) for lo, hi in REAL_BOX)]
    foreground = (inside > 0).astype(np.float16) * np.float16(0.75) + np.float16(0.125)
    softmax = np.stack([np.float16(1) - foreground, foreground])
    if cropped_shape is not None:
        softmax = np.ascontiguousarray(softmax[(slice(None), *(slice(0, s) for s in cropped_shape))])
    np.savez_compressed(folder / "case.npz", softmax=softmax)
    return labels, softmax


def test_real_v1_case(real_data, tmp_path):
    labels, softmax = _real_v1_case(real_data, tmp_path / "model")
    save_pickle(tmp_path / "model" / "nnUNetPlansv2.1_plans_3D.pkl",
                load_pickle(real_data / "nnUNetPlansv2.1_plans_3D.pkl"))
    folder = open_folder(tmp_path / "model")
    assert folder.layout == "v1" and folder.cases == ("case",)
    src = folder.case("case")
    src.check()
    assert src.geometry == REAL_GEOMETRY and src.crop_bbox == REAL_BOX and src.num_classes == 2
    for c, channel in src.iter_channels():
        assert channel.shape == (89, 351, 501) and channel.dtype == np.float16
        np.testing.assert_array_equal(channel, softmax[c])
    full = src.read_probabilities(full=True)
    assert full.shape == (2, 107, 768, 768) and full.dtype == np.float16
    expected = np.zeros_like(full)
    expected[0] = 1  # background outside the crop box
    expected[(slice(None), *(slice(lo, hi) for lo, hi in REAL_BOX))] = softmax
    assert np.array_equal(full.view(np.uint16), expected.view(np.uint16))  # bit-exact, fast compare
    # all the real foreground lies inside the crop box, so the pasted argmax is the real foreground
    # (non-negative float16 values order like their uint16 bit patterns)
    assert np.array_equal(full[1].view(np.uint16) > full[0].view(np.uint16), labels > 0)
    np.testing.assert_array_equal(src.read_labels(), labels)


def test_real_v1_npz_that_does_not_match_the_crop_box(real_data, tmp_path):
    _real_v1_case(real_data, tmp_path, cropped_shape=(89, 351, 500))
    with pytest.raises(GeometryMismatchError) as info:
        open_folder(tmp_path).case("case").read_probabilities()
    message = str(info.value)
    assert "case.npz" in message and "(89, 351, 500)" in message and "(89, 351, 501)" in message
    assert "[[18, 107], [228, 579], [114, 615]]" in message


def test_real_submission_members_as_a_labels_folder(real_data, tmp_path):
    with zipfile.ZipFile(real_data / "baseline_submit.zip") as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".nii.gz"))[:2]
        for name in names:
            (tmp_path / name).write_bytes(zf.read(name))
    folder = open_folder(tmp_path)
    assert folder.layout == "labels" and len(folder) == 2
    for case in folder:
        src = folder.case(case)
        labels = src.read_labels()
        assert labels.dtype == np.uint8 and labels.shape == src.geometry.shape
        assert labels.max() <= 11
