"""Every fault of a submission zip is a FormatError that names the zip and the entry (never a zipfile,
zlib, RuntimeError or NotImplementedError, never a temporary path); an empty zip is invalid."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medfuse import io
from medfuse.errors import FormatError
from medfuse.folders import validate_submission
from medfuse.geometry import Geometry


@pytest.fixture
def case_bytes(tmp_path: Path) -> bytes:
    labels = np.random.default_rng(1).integers(0, 4, (6, 16, 16)).astype(np.uint8)
    io.write_nifti(tmp_path / "c0.nii.gz", labels, Geometry.default(labels.shape))
    return (tmp_path / "c0.nii.gz").read_bytes()


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _patch_headers(path: Path, *, flags: int | None = None, method: int | None = None) -> None:
    """Set the flag bits / compression method of the first entry in its local AND central headers."""
    data = bytearray(path.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    path.write_bytes(bytes(data))


def _refused(path: Path, pattern: str) -> str:
    with pytest.raises(FormatError, match=pattern) as info:
        validate_submission(path)
    message = str(info.value)
    assert str(path) in message and "medfuse-submission-" not in message
    return message


def test_bad_crc_names_the_entry(tmp_path, case_bytes) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes})
    data = bytearray(z.read_bytes())
    data[60] ^= 0xFF  # a byte of the stored member's data
    z.write_bytes(bytes(data))
    assert "'c0.nii.gz'" in _refused(z, "damaged|CRC")


def test_encrypted_flag_names_the_entry(tmp_path, case_bytes) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes})
    _patch_headers(z, flags=0x1)
    assert "'c0.nii.gz'" in _refused(z, "encrypted")


@pytest.mark.parametrize("method", [99, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_unknown_compression_method_names_the_entry(tmp_path, case_bytes, method) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes})
    _patch_headers(z, method=method)
    assert "'c0.nii.gz'" in _refused(z, f"compression method {method}")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_zip_is_a_format_error(tmp_path, case_bytes, keep) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes}, zipfile.ZIP_DEFLATED)
    data = z.read_bytes()
    z.write_bytes(data[: int(len(data) * keep)])
    _refused(z, "not a readable zip|damaged")


def test_corrupt_deflate_data_names_the_entry(tmp_path, case_bytes) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes}, zipfile.ZIP_DEFLATED)
    data = bytearray(z.read_bytes())
    for i in range(40, 60):
        data[i] ^= 0x5A
    z.write_bytes(bytes(data))
    assert "'c0.nii.gz'" in _refused(z, "damaged|not a readable label map")


def test_garbage_member_names_the_zip_entry_not_a_temp_path(tmp_path) -> None:
    z = _zip(tmp_path / "s.zip", {"c7.nii.gz": b"\x1f\x8b\x08\x00garbage"})
    message = _refused(z, "entry 'c7.nii.gz' is not a readable label map")
    assert "member.nii.gz" not in message


def test_duplicate_names_are_refused(tmp_path, case_bytes) -> None:
    with pytest.warns(UserWarning):
        z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes})
        with zipfile.ZipFile(z, "a") as zf:
            zf.writestr("c0.nii.gz", case_bytes)
    _refused(z, "more than once")
    z2 = _zip(tmp_path / "t.zip", {"c0.nii.gz": case_bytes, "C0.nii.gz": case_bytes})
    _refused(z2, "more than once")


@pytest.mark.parametrize("name", ["dir/", "dir/c0.nii.gz", "../c0.nii.gz", "/c0.nii.gz"])
def test_directories_and_nested_paths_are_refused(tmp_path, case_bytes, name) -> None:
    z = _zip(tmp_path / "s.zip", {"c0.nii.gz": case_bytes, name: b"" if name.endswith("/") else case_bytes})
    _refused(z, "not a plain file name")


def test_empty_zip_is_invalid_even_without_images_or_cases(tmp_path) -> None:
    z = _zip(tmp_path / "s.zip", {})
    _refused(z, "empty zip")
    with pytest.raises(FormatError, match="empty zip"):
        validate_submission(z, cases=[])
