"""make_submission / validate_submission, including a round trip of the real 40-case baseline zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from medfuse import io, synthetic
from medfuse.errors import CaseMismatchError, FormatError, GeometryMismatchError, ValidationError
from medfuse.folders.submission import image_cases, make_submission, validate_submission
from medfuse.geometry import Geometry


@pytest.fixture
def small_task(tmp_path):
    """Two cases: predictions folder (plus clutter) and test images named <case>_0000.nii.gz."""
    pred, images = tmp_path / "pred", tmp_path / "imagesTs"
    phantoms = {}
    for i in range(2):
        ph = synthetic.phantom((12, 24, 20), num_labels=3, seed=i)
        phantoms[f"c{i}"] = ph
        io.write_nifti(pred / f"c{i}.nii.gz", ph.labels, ph.geometry)
        io.write_nifti(images / f"c{i}_0000.nii.gz", ph.image.astype(np.int16), ph.geometry)
    (pred / "fusion.json").write_text("{}")
    np.savez_compressed(pred / "c0.npz", softmax=np.zeros((2, 2, 2, 2), np.float16))
    return pred, images, phantoms


def test_make_submission_is_flat_validated_and_only_label_maps(small_task, tmp_path):
    pred, images, phantoms = small_task
    report = make_submission(pred, tmp_path / "sub.zip", images=images, num_classes=4)
    assert report.cases == ("c0", "c1") and report.checked_against_images
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert sorted(zf.namelist()) == ["c0.nii.gz", "c1.nii.gz"]
    assert report.labels["c0"] == tuple(int(v) for v in np.unique(phantoms["c0"].labels))
    assert not list(tmp_path.glob(".sub.zip*"))  # no temp file left behind


def test_make_submission_converts_wider_integer_maps_to_uint8(small_task, tmp_path):
    pred, images, phantoms = small_task
    io.write_nifti(pred / "c1.nii.gz", phantoms["c1"].labels.astype(np.int16), phantoms["c1"].geometry,
                   dtype=np.int16)
    report = make_submission(pred, tmp_path / "sub.zip", images=images)
    assert report.converted == ("c1",)
    validate_submission(tmp_path / "sub.zip", images=images)


def test_missing_test_case_is_refused_and_no_zip_written(small_task, tmp_path):
    pred, images, _ = small_task
    (pred / "c1.nii.gz").unlink()
    with pytest.raises(CaseMismatchError, match="c1"):
        make_submission(pred, tmp_path / "sub.zip", images=images)
    assert not (tmp_path / "sub.zip").exists()


def test_geometry_different_from_image_is_refused(small_task, tmp_path):
    pred, images, phantoms = small_task
    g = phantoms["c0"].geometry
    io.write_nifti(pred / "c0.nii.gz", phantoms["c0"].labels, Geometry(g.shape, g.spacing, g.origin,
                                                                        (1, 0, 0, 0, -1, 0, 0, 0, 1)))
    with pytest.raises(GeometryMismatchError, match="direction"):
        make_submission(pred, tmp_path / "sub.zip", images=images)
    assert not (tmp_path / "sub.zip").exists()


def test_labels_out_of_range_are_refused(small_task, tmp_path):
    pred, images, _ = small_task
    with pytest.raises(ValidationError, match="outside"):
        make_submission(pred, tmp_path / "sub.zip", images=images, num_classes=2)


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("name", ["../evil.nii.gz", "/abs.nii.gz", "sub/case.nii.gz", "notes.txt", "C:evil.nii.gz"])
def test_validate_refuses_unsafe_or_foreign_members(small_task, tmp_path, name):
    pred, _, _ = small_task
    data = (pred / "c0.nii.gz").read_bytes()
    z = _zip_with(tmp_path / "bad.zip", {"c0.nii.gz": data, name: data})
    with pytest.raises(FormatError):
        validate_submission(z)


def test_validate_enforces_inflated_size_cap(small_task, tmp_path):
    pred, _, _ = small_task
    z = _zip_with(tmp_path / "big.zip", {"c0.nii.gz": (pred / "c0.nii.gz").read_bytes()})
    with pytest.raises(FormatError, match=r"max_member_bytes|max_total_bytes"):
        validate_submission(z, max_member_bytes=100, max_total_bytes=10**12)


def test_validate_refuses_corrupt_member_and_non_zip(small_task, tmp_path):
    z = _zip_with(tmp_path / "corrupt.zip", {"c0.nii.gz": b"\x1f\x8b\x08\x00garbage"})
    with pytest.raises(FormatError):
        validate_submission(z)
    not_zip = tmp_path / "x.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(FormatError, match="not a readable zip"):
        validate_submission(not_zip)


def test_image_cases_reads_nnunet_naming(small_task):
    _, images, _ = small_task
    (images / "c0_0001.nii.gz").write_bytes((images / "c0_0000.nii.gz").read_bytes())
    assert sorted(image_cases(images)) == ["c0", "c1"]


@pytest.mark.real_data
def test_real_baseline_submission_round_trip(real_data, tmp_path):
    """The competition's real 40-case zip validates, and re-zipping its files gives identical maps."""
    zip_path = real_data / "baseline_submit.zip"
    report = validate_submission(zip_path, num_classes=12)
    assert len(report.cases) == 40
    assert all(max(v) <= 11 for v in report.labels.values())
    folder = tmp_path / "unzipped"
    folder.mkdir()
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folder)
    again = make_submission(folder, tmp_path / "again.zip", num_classes=12)
    assert again.cases == report.cases and again.labels == report.labels
    with zipfile.ZipFile(zip_path) as a, zipfile.ZipFile(tmp_path / "again.zip") as b:
        assert sorted(a.namelist()) == sorted(b.namelist())
    for case in report.cases[:3]:
        x, gx = io.read_nifti(folder / f"{case}.nii.gz")
        with zipfile.ZipFile(tmp_path / "again.zip") as zf:
            zf.extract(f"{case}.nii.gz", tmp_path / "re")
        y, gy = io.read_nifti(tmp_path / "re" / f"{case}.nii.gz")
        np.testing.assert_array_equal(x, y)
        assert gx == gy
