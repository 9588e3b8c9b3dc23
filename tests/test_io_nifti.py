"""NIfTI read/write: exact geometry (non-identity direction), label dtypes, atomic writes, corrupt files."""

from __future__ import annotations

import gzip
import math
import os

import numpy as np
import pytest

from medfuse.errors import FormatError, GeometryMismatchError
from medfuse.geometry import Geometry
from medfuse.io import read_geometry, read_nifti, write_nifti

pytest.importorskip("SimpleITK")


def _rotated_geometry(shape: tuple[int, ...] = (7, 9, 11)) -> Geometry:
    a = math.radians(30.0)
    direction = (math.cos(a), -math.sin(a), 0.0, math.sin(a), math.cos(a), 0.0, 0.0, 0.0, -1.0)
    return Geometry(shape, spacing=(2.5, 0.8125, 0.7), origin=(-10.5, 20.25, 3.125), direction=direction)


def _labels(rng: np.random.Generator, shape: tuple[int, ...], top: int = 11) -> np.ndarray:
    return rng.integers(0, top + 1, size=shape).astype(np.uint8)


def test_round_trip_is_exact(tmp_path, rng):
    geometry = _rotated_geometry()
    labels = _labels(rng, geometry.shape)
    path = tmp_path / "case.nii.gz"
    write_nifti(path, labels, geometry)
    array, read_back = read_nifti(path)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, labels)
    assert read_back.shape == geometry.shape
    # NIfTI stores float32 header fields: exact after one pass through the file
    assert read_back.differences(geometry, coordinate_tolerance=1e-6, direction_tolerance=1e-6) == []
    write_nifti(tmp_path / "again.nii.gz", array, read_back)
    array2, geometry2 = read_nifti(tmp_path / "again.nii.gz")
    assert geometry2 == read_back
    np.testing.assert_array_equal(array2, array)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip-compressed


def test_read_geometry_reads_the_header_only_and_agrees(tmp_path, rng):
    geometry = _rotated_geometry((5, 6, 4))
    write_nifti(tmp_path / "a.nii.gz", _labels(rng, geometry.shape), geometry)
    assert read_geometry(tmp_path / "a.nii.gz") == read_nifti(tmp_path / "a.nii.gz")[1]


@pytest.mark.parametrize(
    ("dtype", "top", "stored"),
    [(np.int64, 11, np.uint8), (np.int32, 255, np.uint8), (np.uint16, 300, np.uint16), (np.int64, 256, np.uint16),
     (np.bool_, 1, np.uint8), (np.uint8, 0, np.uint8)],
)
def test_label_maps_are_stored_as_the_smallest_unsigned_type(tmp_path, rng, dtype, top, stored):
    geometry = Geometry.default((3, 4, 5))
    labels = rng.integers(0, top + 1, size=geometry.shape)
    labels.flat[0] = top
    labels = labels.astype(dtype)
    write_nifti(tmp_path / "l.nii.gz", labels, geometry)
    array, _ = read_nifti(tmp_path / "l.nii.gz")
    assert array.dtype == stored
    np.testing.assert_array_equal(array, labels.astype(np.int64))


def test_negative_integers_keep_their_dtype(tmp_path):
    geometry = Geometry.default((2, 2, 2))
    image = np.arange(-4, 4, dtype=np.int16).reshape(2, 2, 2)
    write_nifti(tmp_path / "ct.nii.gz", image, geometry)
    array, _ = read_nifti(tmp_path / "ct.nii.gz")
    assert array.dtype == np.int16
    np.testing.assert_array_equal(array, image)


@pytest.mark.parametrize(("dtype", "stored"), [(np.float32, np.float32), (np.float64, np.float64),
                                               (np.float16, np.float32)])
def test_float_images(tmp_path, rng, dtype, stored):
    geometry = _rotated_geometry((3, 5, 4))
    image = rng.standard_normal(geometry.shape).astype(dtype)
    write_nifti(tmp_path / "img.nii.gz", image, geometry)
    array, _ = read_nifti(tmp_path / "img.nii.gz")
    assert array.dtype == stored
    np.testing.assert_array_equal(array, image.astype(stored))


def test_explicit_dtype(tmp_path):
    geometry = Geometry.default((2, 3, 4))
    write_nifti(tmp_path / "x.nii.gz", np.ones(geometry.shape, np.uint8), geometry, dtype=np.int16)
    assert read_nifti(tmp_path / "x.nii.gz")[0].dtype == np.int16


def test_non_contiguous_and_big_endian_inputs(tmp_path, rng):
    geometry = Geometry.default((4, 5, 6))
    base = _labels(rng, (4, 10, 6)).astype(">i4")
    view = base[:, ::2, :]
    assert not view.flags.c_contiguous
    write_nifti(tmp_path / "v.nii.gz", view, geometry)
    array, _ = read_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(array, view)
    fortran = np.asfortranarray(_labels(rng, geometry.shape))
    write_nifti(tmp_path / "f.nii.gz", fortran, geometry)
    np.testing.assert_array_equal(read_nifti(tmp_path / "f.nii.gz")[0], fortran)


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".nii"])
def test_other_simpleitk_formats(tmp_path, rng, ending):
    geometry = _rotated_geometry((3, 4, 5))
    labels = _labels(rng, geometry.shape)
    write_nifti(tmp_path / f"c{ending}", labels, geometry)
    array, read_back = read_nifti(tmp_path / f"c{ending}")
    np.testing.assert_array_equal(array, labels)
    assert read_back.differences(geometry) == []


def test_shape_mismatch_raises_and_writes_nothing(tmp_path):
    geometry = Geometry.default((3, 4, 5))
    with pytest.raises(GeometryMismatchError, match=r"\(5, 4, 3\)"):
        write_nifti(tmp_path / "x.nii.gz", np.zeros((5, 4, 3), np.uint8), geometry)
    assert os.listdir(tmp_path) == []


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path, rng):
    geometry = Geometry.default((3, 4, 5))
    path = tmp_path / "case.nii.gz"
    write_nifti(path, _labels(rng, geometry.shape), geometry)
    new = _labels(rng, geometry.shape)
    write_nifti(path, new, geometry)  # replaces
    assert os.listdir(tmp_path) == ["case.nii.gz"]
    np.testing.assert_array_equal(read_nifti(path)[0], new)


def test_failed_write_leaves_nothing(tmp_path):
    geometry = Geometry.default((2, 2, 2))
    with pytest.raises(FormatError, match=r"case\.unknownformat"):
        write_nifti(tmp_path / "case.unknownformat", np.zeros(geometry.shape, np.uint8), geometry)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9])
def test_truncated_file_is_a_format_error(tmp_path, rng, keep):
    geometry = Geometry.default((20, 30, 40))
    path = tmp_path / "case.nii.gz"
    write_nifti(path, rng.integers(0, 12, size=geometry.shape).astype(np.uint8), geometry)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FormatError, match=r"case\.nii\.gz"):
        read_nifti(path)


def test_truncated_uncompressed_nifti_is_a_format_error(tmp_path, rng):
    geometry = Geometry.default((20, 30, 40))
    path = tmp_path / "case.nii"
    write_nifti(path, rng.integers(0, 12, size=geometry.shape).astype(np.uint8), geometry)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated"):
        read_nifti(path)
    with pytest.raises(FormatError, match="truncated"):
        read_geometry(path)


def test_multi_member_gzip_is_accepted(tmp_path, rng):
    """A valid .nii.gz made of two gzip members has a trailer that only counts the last member."""
    geometry = Geometry.default((20, 30, 40))
    labels = rng.integers(0, 12, size=geometry.shape).astype(np.uint8)
    path = tmp_path / "case.nii.gz"
    write_nifti(path, labels, geometry)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]))
    array, _ = read_nifti(path)
    np.testing.assert_array_equal(array, labels)


def test_corrupt_payload_is_a_format_error(tmp_path, rng):
    geometry = Geometry.default((20, 30, 40))
    path = tmp_path / "case.nii.gz"
    write_nifti(path, rng.integers(0, 12, size=geometry.shape).astype(np.uint8), geometry)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    packed = bytearray(gzip.compress(bytes(raw)))
    packed[len(packed) // 2: len(packed) // 2 + 64] = b"\x00" * 64  # damage the deflate stream
    path.write_bytes(bytes(packed))
    with pytest.raises(FormatError, match=r"case\.nii\.gz"):
        read_nifti(path)


@pytest.mark.parametrize("content", [b"", b"this is not an image"])
def test_garbage_and_missing_files(tmp_path, content):
    path = tmp_path / "junk.nii.gz"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=r"junk\.nii\.gz"):
        read_nifti(path)
    with pytest.raises(FormatError, match=r"junk\.nii\.gz"):
        read_geometry(path)
    with pytest.raises(FormatError, match=r"absent\.nii\.gz"):
        read_nifti(tmp_path / "absent.nii.gz")
