"""Corrupt bytes (random, truncated, bit-flipped valid files) given to the readers: they succeed or raise a
MedfuseError subclass, never zipfile.BadZipFile, zlib.error, EOFError, struct.error, RuntimeError, ..."""

from __future__ import annotations

import contextlib
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medfuse import io
from medfuse.errors import MedfuseError
from medfuse.folders import validate_submission
from medfuse.geometry import Geometry


def _valid_samples() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        labels = rng.integers(0, 4, (5, 12, 12)).astype(np.uint8)
        io.write_nifti(d / "c0.nii.gz", labels, Geometry.default(labels.shape))
        np.savez_compressed(d / "c0.npz", softmax=rng.random((3, 5, 12, 12)).astype(np.float16))
        io.save_pickle(d / "c0.pkl", io.v1_properties(Geometry.default(labels.shape), [[0, 5], [0, 12], [0, 12]]))
        with zipfile.ZipFile(d / "s.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(d / "c0.nii.gz", "c0.nii.gz")
        return {ext: (d / name).read_bytes() for ext, name in
                ((".nii.gz", "c0.nii.gz"), (".npz", "c0.npz"), (".pkl", "c0.pkl"), (".zip", "s.zip"))}


VALID = _valid_samples()

READERS: dict[str, Callable[[Path], Any]] = {
    ".nii.gz": io.read_nifti,
    ".npz": lambda p: io.read_npz(p, "softmax"),
    ".pkl": io.load_pickle,
    ".zip": validate_submission,
}


@st.composite
def corrupt(draw: st.DrawFn, ext: str) -> bytes:
    valid = VALID[ext]
    kind = draw(st.sampled_from(["random", "truncate", "flip", "flip-many"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    if kind == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    data = bytearray(valid)
    for _ in range(1 if kind == "flip" else draw(st.integers(2, 16))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def _check(ext: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"c0{ext}"
        path.write_bytes(data)
        with contextlib.suppress(MedfuseError):  # refused with a medfuse error is fine; anything else fails
            READERS[ext](path)


@pytest.mark.parametrize("ext", sorted(READERS))
def test_valid_samples_read(ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"c0{ext}"
        path.write_bytes(VALID[ext])
        READERS[ext](path)


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(data=corrupt(".nii.gz"))
def test_nifti_reader_raises_only_medfuse_errors(data: bytes) -> None:
    _check(".nii.gz", data)


@_SETTINGS
@given(data=corrupt(".npz"))
def test_npz_reader_raises_only_medfuse_errors(data: bytes) -> None:
    _check(".npz", data)


@_SETTINGS
@given(data=corrupt(".pkl"))
def test_pickle_reader_raises_only_medfuse_errors(data: bytes) -> None:
    _check(".pkl", data)


@_SETTINGS
@given(data=corrupt(".zip"))
def test_submission_reader_raises_only_medfuse_errors(data: bytes) -> None:
    _check(".zip", data)
