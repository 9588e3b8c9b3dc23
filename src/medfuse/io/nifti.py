"""NIfTI (and other SimpleITK formats) read/write with the geometry kept exactly.

Arrays are in SimpleITK array order ``(z, y, x)``; the geometry is a :class:`medfuse.Geometry`. Writers are
atomic and verified (:func:`medfuse.io.atomic_write`) and write label maps as uint8 (uint16 above 255
labels) compressed ``.nii.gz``, as the models' own writers do. SimpleITK is imported lazily (extra ``nifti``).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .._core.atomic import atomic_write
from .._core.optional import import_optional
from .._core.validation import describe, native_byteorder
from .._core.verify import GzipError, gzip_size, nifti_expected_size
from ..errors import FormatError, GeometryMismatchError, ValidationError
from ..geometry import Geometry

__all__ = ["label_dtype", "label_map_files", "read_geometry", "read_nifti", "write_nifti"]

#: File endings medfuse reads as images (SimpleITK picks the reader from the ending).
IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")


def _sitk() -> Any:
    return import_optional("SimpleITK", purpose="reading and writing NIfTI files")


def _check_readable(p: Path) -> None:
    if not p.is_file():
        raise FormatError(f"image file {p} does not exist (or is not a file).")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti_complete(p, compressed=name.endswith(".gz"))


def _check_nifti_complete(p: Path, *, compressed: bool) -> None:
    """ITK's NIfTI reader silently zero-fills a truncated file: check the size the header implies.

    For ``.nii.gz`` the gzip trailer (uncompressed size mod 2**32) is compared with it; only when they
    differ (truncation, or a multi-member gzip) is the file inflated to count its bytes.
    """
    try:
        if compressed:
            with gzip.open(p, "rb") as g:
                header = g.read(540)
        else:
            with open(p, "rb") as f:
                header = f.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"cannot read the image header of {p}: {exc}. The file is truncated or corrupt.") from exc
    expected = nifti_expected_size(header)
    if expected is None:
        return  # not a single-file NIfTI medfuse can size; let SimpleITK judge it
    if compressed:
        with open(p, "rb") as f:
            f.seek(max(p.stat().st_size - 4, 0))
            tail = f.read(4)
        if len(tail) == 4 and struct.unpack("<I", tail)[0] == expected % (1 << 32):
            return
        try:
            actual = gzip_size(p)
        except (OSError, GzipError) as exc:
            raise FormatError(
                f"{p} is truncated or corrupt ({exc}); its header announces {expected} bytes. Re-create it."
            ) from exc
    else:
        actual = p.stat().st_size
    if actual < expected:
        raise FormatError(
            f"{p} is truncated: its header announces {expected} bytes of header and voxels but the file holds "
            f"{actual}. Re-create it."
        )


def label_map_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``<case>.nii.gz`` files of ``folder`` by case name, sorted; hidden and temporary files left out."""
    return {p.name[: -len(".nii.gz")]: p for p in sorted(Path(folder).glob("*.nii.gz")) if not p.name.startswith(".")}


def read_geometry(path: str | os.PathLike[str]) -> Geometry:
    """Geometry of an image file, from its header only (the voxels are not decompressed).

    Parameters
    ----------
    path : path-like
        ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, or any format SimpleITK reads.

    Raises
    ------
    FormatError
        The file is missing, not an image, or holds a multi-component (vector) image.
    """
    sitk = _sitk()
    p = Path(path)
    _check_readable(p)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise FormatError(f"cannot read the image header of {p}: {_first_line(exc)}") from exc
    if reader.GetNumberOfComponents() != 1:
        raise FormatError(
            f"{p} holds a vector image with {reader.GetNumberOfComponents()} components per voxel; medfuse "
            "expects a scalar label map or image."
        )
    return Geometry(
        shape=tuple(reversed(reader.GetSize())),
        spacing=tuple(reversed(reader.GetSpacing())),
        origin=tuple(reader.GetOrigin()),
        direction=tuple(reader.GetDirection()),
    )


def read_nifti(path: str | os.PathLike[str]) -> tuple[NDArray[Any], Geometry]:
    """Read an image: its voxels in array order ``(z, y, x)`` and its geometry.

    Parameters
    ----------
    path : path-like
        ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, or any format SimpleITK reads.

    Returns
    -------
    array : ndarray of shape (Z, Y, X)
        The voxels in the file's own dtype (label maps: usually uint8).
    geometry : Geometry
        Shape, spacing, origin and direction, exactly as stored.

    Raises
    ------
    FormatError
        The file is missing, truncated, corrupt, or a vector image; the message names it.
    """
    sitk = _sitk()
    p = Path(path)
    _check_readable(p)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise FormatError(
            f"cannot read image {p}: {_first_line(exc)}. The file is truncated or corrupt; re-create it."
        ) from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise FormatError(
            f"{p} holds a vector image with {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "medfuse expects a scalar label map or image."
        )
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


def label_dtype(max_label: int) -> np.dtype[Any]:
    """uint8 for labels up to 255, uint16 up to 65535 (what the models' writers use)."""
    if max_label <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_label <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    raise ValidationError(f"label values must be at most 65535 to be written as a label map; got {max_label}.")


def _output_dtype(a: NDArray[Any], dtype: DTypeLike | None) -> np.dtype[Any]:
    if dtype is not None:
        return np.dtype(dtype)
    if a.dtype == np.bool_:
        return np.dtype(np.uint8)
    if a.dtype.kind in "iu":
        if a.size == 0:
            return np.dtype(np.uint8)
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= np.iinfo(np.uint16).max:
            return label_dtype(hi)
        return a.dtype
    if a.dtype == np.float16:
        return np.dtype(np.float32)  # no half-float pixels in ITK / NIfTI
    return a.dtype


def write_nifti(
    path: str | os.PathLike[str], array: ArrayLike, geometry: Geometry, *,
    dtype: DTypeLike | None = None, compress: bool = True,
) -> None:
    """Write ``array`` with ``geometry`` to ``path`` atomically (SimpleITK; the ending picks the format).

    Parameters
    ----------
    path : path-like
        Destination, normally ``<case>.nii.gz``. Written to a temporary file beside it, then renamed.
    array : array_like of shape (Z, Y, X)
        Voxels in array order; must match ``geometry.shape``.
    geometry : Geometry
        Spacing, origin and direction to store (kept exactly, including non-identity directions).
    dtype : dtype, optional
        Stored pixel type. By default integer/bool label maps are stored as uint8 (uint16 when a label
        exceeds 255, as the models' writers do; the file's dtype otherwise), float16 as float32, other
        dtypes unchanged.
    compress : bool, default True
        Ask the writer to compress (gzip for ``.nii.gz``).

    Raises
    ------
    GeometryMismatchError
        ``array.shape`` differs from ``geometry.shape``.
    FormatError
        The writer failed (e.g. unknown file ending); nothing is left under ``path``.
    OutputError
        The folder or file could not be created or written (ENOSPC, EROFS, EACCES, EISDIR...), or the file
        written does not verify (a full decode of its gzip stream against the size its header announces:
        SimpleITK reports no error when ``ulimit -f`` or a full disk cuts its gzip write short); nothing is
        left under ``path`` and an older file there is untouched.
    """
    sitk = _sitk()
    a = native_byteorder(np.asarray(array))
    if not isinstance(geometry, Geometry):
        raise ValidationError(f"`geometry` must be a medfuse.Geometry; got {describe(geometry)}.")
    if a.shape != geometry.shape:
        raise GeometryMismatchError(
            f"`array` has shape {a.shape} but `geometry` describes {geometry.shape}; the array must be in "
            f"SimpleITK order (z, y, x) on the geometry's grid. (writing {path})"
        )
    out_dtype = _output_dtype(a, dtype)
    if a.dtype != out_dtype:
        a = a.astype(out_dtype)
    image = sitk.GetImageFromArray(np.ascontiguousarray(a))
    geometry.apply_to_sitk(image)
    p = Path(path)
    try:
        with atomic_write(p) as tmp:
            sitk.WriteImage(image, str(tmp), bool(compress))
    except RuntimeError as exc:
        raise FormatError(f"cannot write image {p}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """The informative part of an ITK exception (its messages span many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "Description:" in ln or "ERROR" in ln.upper():
            return ln.split("Description:", 1)[-1].strip()
    return lines[-1] if lines else type(exc).__name__
