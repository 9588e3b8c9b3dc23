"""Integrity checks of files just written, chosen from the file name (used by :func:`atomic_write`).

Each check reads the file back from disk and raises :class:`~medfuse.errors.FormatError` when it is not
whole. They exist because some writers do not report a failed write: SimpleITK's gzip writer returns
normally after ``EFBIG`` (``ulimit -f``) or ``ENOSPC``, leaving a truncated ``.nii.gz``.

============================  ==========================================================================
ending                        check
============================  ==========================================================================
``.nii.gz``                   the whole gzip stream decodes (CRC-32 and length of every member), and it
                              holds at least the bytes the NIfTI header announces (header + voxels)
``.gz``                       the whole gzip stream decodes (CRC-32 and length)
``.nii``                      the header is NIfTI-1/2 and the file holds the bytes it announces
``.npz`` / ``.zip``           the zip directory reads and every member inflates to its CRC-32 and size
``.pkl``                      loads with medfuse's restricted unpickler (nothing is executed)
``.json``                     parses as JSON (UTF-8)
``.png``                      PNG signature, and the file ends with the IEND chunk
``.csv`` ``.md`` ``.html``    not empty, decodes as UTF-8
``.txt`` ``.tsv`` ``.yaml``
anything else                 reads back to its full size
============================  ==========================================================================

Every check streams the file in 1 MiB blocks with bounded output, so memory stays constant.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ..errors import FormatError

__all__ = ["CHECKS", "ZIP_READ_ERRORS", "check_for", "gzip_size", "has_check", "nifti_expected_size", "verify_file"]

_BLOCK = 1 << 20
_MAX_OUT = 8 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_TEXT_ENDINGS = (".csv", ".md", ".html", ".txt", ".tsv", ".yaml", ".yml")


def nifti_expected_size(header: bytes) -> int | None:
    """Bytes of a single-file NIfTI-1/2 (header + extensions + voxels), or None if not determinable."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = int(struct.unpack(endian + "h", header[72:74])[0])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = int(struct.unpack(endian + "h", header[14:16])[0])
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = int(struct.unpack(endian + "q", header[168:176])[0])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or offset < 348 or any(d < 0 for d in dims[1:ndim + 1]):
        return None
    nvox = 1
    for d in dims[1:ndim + 1]:
        nvox *= int(d)
    return offset + nvox * bitpix // 8


def gzip_size(path: Path, *, head: bytearray | None = None) -> int:
    """Uncompressed size of a (possibly multi-member) gzip file, decoded in full with bounded memory.

    The inflate library checks each member's CRC-32 and length trailer; the fastest installed one is used
    (zlib-ng or ISA-L, extra ``fast``: 5-15x stdlib zlib on label maps). ``head``, when given, receives the
    first 540 uncompressed bytes. Raises :class:`GzipError` on a damaged or truncated stream.
    """
    z = _inflate_module()
    total = 0
    with open(path, "rb") as f:
        data = f.read(_BLOCK)
        if not data:
            raise GzipError("the file is empty")
        try:
            d = z.decompressobj(31)
            while True:
                out = d.decompress(data, _MAX_OUT)
                if head is not None and len(head) < 540:
                    head += out[: 540 - len(head)]
                total += len(out)
                if d.eof:
                    data = d.unused_data or f.read(_BLOCK)
                    if not data:
                        return total
                    if data[:2] != b"\x1f\x8b":
                        raise GzipError("data after the end of the gzip stream is not another gzip member")
                    d = z.decompressobj(31)
                    continue
                data = d.unconsumed_tail
                if not data and not out:
                    data = f.read(_BLOCK)
                    if not data:
                        raise GzipError("the gzip stream ends before its end-of-stream marker (truncated)")
        except z.error as exc:
            raise GzipError(str(exc)) from exc


class GzipError(ValueError):
    """A gzip stream does not decode in full (damaged, truncated or not gzip)."""


def _inflate_module() -> ModuleType:
    from .inflate import backend_module

    return backend_module("auto")


def _check_gzip(path: Path) -> None:
    try:
        gzip_size(path)
    except GzipError as exc:
        raise FormatError(f"{path} is not a whole gzip stream ({exc}).") from exc


def _check_nifti_gz(path: Path) -> None:
    head = bytearray()
    try:
        size = gzip_size(path, head=head)
    except GzipError as exc:
        raise FormatError(f"{path} is not a whole gzip stream ({exc}).") from exc
    _check_nifti_size(path, bytes(head), size)


def _check_nifti_size(path: Path, head: bytes, size: int) -> None:
    expected = nifti_expected_size(head)
    if expected is None:
        raise FormatError(f"{path} does not start with a NIfTI-1/2 header medfuse can read.")
    if size < expected:
        raise FormatError(f"{path} holds {size} bytes but its NIfTI header announces {expected}.")


def _check_nifti(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(540)
    _check_nifti_size(path, head, path.stat().st_size)


#: what ``zipfile`` raises on a damaged archive or member (the stdlib wraps none of them in one class): every
#: zip reader of medfuse turns these into a ``FormatError`` naming the file
ZIP_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError, struct.error,
    OverflowError,
)


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as member:
                    while member.read(_MAX_OUT):
                        pass
    except ZIP_READ_ERRORS as exc:
        raise FormatError(f"{path} is not a whole zip file ({type(exc).__name__}: {exc}).") from exc


def _check_pickle(path: Path) -> None:
    from .safepickle import loads_pickle

    loads_pickle(path.read_bytes(), source=str(path))


def _check_json(path: Path) -> None:
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:
        raise FormatError(f"{path} is not whole JSON ({exc}).") from exc


def _check_png(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(len(_PNG_SIGNATURE))
        f.seek(max(size - len(_PNG_IEND), 0))
        end = f.read()
    if start != _PNG_SIGNATURE or end != _PNG_IEND:
        raise FormatError(f"{path} is not a whole PNG (signature or final IEND chunk missing).")


def _check_text(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    total = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                total += len(block)
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path} is not UTF-8 text ({exc}).") from exc
    if total == 0:
        raise FormatError(f"{path} is empty.")


def _check_readable(path: Path) -> None:
    total = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            total += len(block)
    if total != os.stat(path).st_size:
        raise FormatError(f"{path} reads back {total} bytes of {os.stat(path).st_size}.")


#: ending -> check, longest ending first (``.nii.gz`` before ``.gz``).
CHECKS: dict[str, Callable[[Path], None]] = {
    ".nii.gz": _check_nifti_gz, ".nii": _check_nifti, ".gz": _check_gzip, ".npz": _check_zip,
    ".zip": _check_zip, ".pkl": _check_pickle, ".json": _check_json, ".png": _check_png,
    **{ending: _check_text for ending in _TEXT_ENDINGS},
}


def has_check(name: str | os.PathLike[str]) -> bool:
    """Whether ``name``'s ending has a format check (otherwise only "reads back in full" applies)."""
    lower = Path(name).name.lower()
    return any(lower.endswith(ending) for ending in CHECKS)


def check_for(name: str | os.PathLike[str]) -> Callable[[Path], None]:
    """The check :func:`verify_file` runs for a file called ``name`` (by its ending)."""
    lower = Path(name).name.lower()
    for ending, check in CHECKS.items():
        if lower.endswith(ending):
            return check
    return _check_readable


def verify_file(path: str | os.PathLike[str], *, name: str | os.PathLike[str] | None = None) -> None:
    """Check that the file at ``path`` is whole, by the format of ``name`` (default: ``path`` itself).

    Raises
    ------
    FormatError
        The file is truncated or corrupt; the message says what failed.
    OSError
        Reading it back failed.
    """
    check_for(path if name is None else name)(Path(path))
