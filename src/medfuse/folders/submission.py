"""Competition submissions: a flat zip of one ``<case>.nii.gz`` uint8 label map per test case.

:func:`make_submission` builds one from a prediction folder, checking every case against its test image;
:func:`validate_submission` reads a zip defensively (no ``..`` or absolute names, no folders, size caps,
every member a readable label map) and checks it against the test images.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .._core.oserrors import output_error
from .._core.progress import progress_bar
from .._core.verify import ZIP_READ_ERRORS
from ..errors import CaseMismatchError, FormatError, GeometryMismatchError, ValidationError
from ..geometry import Geometry

__all__ = ["SubmissionReport", "image_cases", "make_submission", "validate_submission"]

#: Default caps applied while reading a zip (a zip bomb must not fill the disk).
MAX_MEMBERS = 10_000
MAX_MEMBER_BYTES = 4 << 30  # 4 GiB uncompressed per case
MAX_TOTAL_BYTES = 64 << 30
_CASE_SUFFIX = ".nii.gz"
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_IMAGE_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii\.gz$")


@dataclass(frozen=True)
class SubmissionReport:
    """What a submission zip holds and what was checked.

    Attributes
    ----------
    path : Path
        The zip file.
    cases : tuple of str
        Case names in the zip, sorted.
    labels : dict of str to tuple of int
        Labels present in each case's map.
    checked_against_images : bool
        Whether every case was compared with its test image (presence and geometry).
    converted : tuple of str
        Cases whose label maps were re-encoded as uint8 by :func:`make_submission`.
    """

    path: Path
    cases: tuple[str, ...]
    labels: dict[str, tuple[int, ...]] = field(default_factory=dict)
    checked_against_images: bool = False
    converted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "cases": list(self.cases),
                "labels": {k: list(v) for k, v in self.labels.items()},
                "checked_against_images": self.checked_against_images, "converted": list(self.converted)}


def image_cases(images: str | os.PathLike[str]) -> dict[str, Path]:
    """Test images by case name, from nnU-Net naming (``<case>_0000.nii.gz``; the first modality).

    Plain ``<case>.nii.gz`` names are accepted too when no file follows the ``_0000`` convention.
    """
    folder = Path(images)
    if not folder.is_dir():
        raise ValidationError(f"`images` must be a folder of test images; got {str(folder)!r}, "
                              "which is not a folder.")
    found: dict[str, Path] = {}
    plain: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        m = _IMAGE_RE.match(p.name)
        if m and m.group("channel") == "0000":
            found[m.group("case")] = p
        elif p.name.endswith(_CASE_SUFFIX) and not p.name.startswith("."):
            plain[p.name[: -len(_CASE_SUFFIX)]] = p
    result = found or plain
    if not result:
        raise ValidationError(f"`images` folder {str(folder)!r} holds no '<case>_0000.nii.gz' image; "
                              "point it at the test images folder (imagesTs).")
    return result


def _check_names(names: Sequence[str], where: str) -> None:
    for name in names:
        posix = PurePosixPath(name.replace("\\", "/"))
        if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in posix.parts
                or len(posix.parts) != 1 or name.endswith("/")):
            raise FormatError(
                f"{where}: the zip member {name!r} is not a plain file name at the top of the zip "
                "(folders, absolute paths and '..' are refused); a submission is a flat zip of "
                "'<case>.nii.gz' files."
            )
        if not name.endswith(_CASE_SUFFIX):
            raise FormatError(f"{where}: the zip member {name!r} is not a '<case>.nii.gz' label map; "
                              "a submission holds nothing else.")




def _check_entries(infos: Sequence[zipfile.ZipInfo], where: str) -> None:
    """Refuse what the stdlib would trip on later: encryption, unknown compression, duplicates, nothing."""
    if not infos:
        raise FormatError(f"{where} is an empty zip; a submission holds one '<case>.nii.gz' per test case.")
    for info in infos:
        if info.flag_bits & 0x1:
            raise FormatError(f"{where}: entry {info.filename!r} is encrypted; submit an unencrypted zip.")
        if info.compress_type not in _COMPRESSIONS:
            raise FormatError(
                f"{where}: entry {info.filename!r} uses zip compression method {info.compress_type}; a submission "
                "uses deflate (8) or stored (0). Re-create it with 'medfuse submit'."
            )
    folded = [i.filename.lower() for i in infos]
    dupes = sorted({i.filename for i, f in zip(infos, folded, strict=True) if folded.count(f) > 1})
    if dupes:
        raise FormatError(f"{where} holds these entries more than once (names compared ignoring case): {dupes}.")


@contextmanager
def _extracted(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tmpdir: Path, *, cap: int,
               where: str) -> Iterator[Path]:
    """Copy one member to a temp file, counting bytes so a lying header cannot exceed ``cap``.

    A damaged entry (bad CRC, truncated or corrupt deflate data, bad local header) is a FormatError that
    names the zip and the entry.
    """
    target = tmpdir / "member.nii.gz"
    written = 0
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except ZIP_READ_ERRORS as exc:
                    raise FormatError(f"{where}: entry {info.filename!r} is damaged ({type(exc).__name__}: "
                                      f"{exc}); re-create the zip.") from exc
                if not chunk:
                    break
                written += len(chunk)
                if written > cap:
                    raise FormatError(f"{where}: member {info.filename!r} inflates past {cap} bytes; refused "
                                      "(raise `max_member_bytes` if this is a genuine case).")
                dst.write(chunk)
    except ZIP_READ_ERRORS as exc:  # zf.open: bad local header, name mismatch, ...
        target.unlink(missing_ok=True)
        raise FormatError(f"{where}: entry {info.filename!r} is damaged ({type(exc).__name__}: {exc}); "
                          "re-create the zip.") from exc
    except OSError as exc:
        target.unlink(missing_ok=True)
        if exc.errno != errno.EINVAL or exc.filename is not None:
            raise  # a real I/O error of this machine: the command line names it
        # a seek to an offset the zip's own headers got wrong (negative, past the end)
        raise FormatError(f"{where}: entry {info.filename!r} is damaged (its headers point outside the zip: "
                          f"{exc}); re-create the zip.") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    try:
        yield target
    finally:
        target.unlink(missing_ok=True)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tmpdir: Path, *, cap: int,
                where: str) -> tuple[np.ndarray[Any, Any], Geometry]:
    """The label map of one entry; its errors name the entry, not the temporary copy."""
    from ..io import read_nifti

    with _extracted(zf, info, tmpdir, cap=cap, where=where) as member:
        try:
            return read_nifti(member)
        except FormatError as exc:
            reason = str(exc).replace(str(member), "it")
            raise FormatError(f"{where}: entry {info.filename!r} is not a readable label map: {reason}") from exc


def _label_values(array: np.ndarray[Any, Any], *, case: str, num_classes: int | None,
                  where: str) -> tuple[int, ...]:
    if array.dtype.kind not in "iub":
        raise FormatError(f"{where}: case {case!r} holds {array.dtype} values, not integer labels.")
    values = np.unique(array) if array.size else np.zeros(0, dtype=np.int64)
    if values.size and (values[0] < 0 or (num_classes is not None and values[-1] >= num_classes)):
        bad = [int(v) for v in values if v < 0 or (num_classes is not None and v >= num_classes)]
        allowed = f"0..{num_classes - 1}" if num_classes else "0 and above"
        raise ValidationError(f"{where}: case {case!r} holds labels {bad} outside {allowed}; "
                              "the submission must only hold the task's labels.")
    return tuple(int(v) for v in values)


def _compare_geometry(case: str, got: Geometry, image: Path, where: str) -> None:
    from ..io import read_geometry

    expected = read_geometry(image)
    diff = expected.differences(got)
    if diff:
        raise GeometryMismatchError(
            f"{where}: case {case!r} does not have its test image's geometry ({image.name}): "
            + "; ".join(diff) + ". Restore the original geometry (crop box, spacing, direction) before submitting."
        )


def validate_submission(
    zip_path: str | os.PathLike[str], *, images: str | os.PathLike[str] | None = None,
    cases: Sequence[str] | None = None, num_classes: int | None = None,
    max_members: int = MAX_MEMBERS, max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> SubmissionReport:
    """Check a submission zip without trusting it.

    Parameters
    ----------
    zip_path : path
        The zip to check.
    images : path, optional
        Test images folder (``<case>_0000.nii.gz``): every image must have its case in the zip, with the
        image's shape, spacing, origin and direction.
    cases : sequence of str, optional
        Expected case names (when no images are at hand).
    num_classes : int, optional
        Labels must lie in ``0 .. num_classes - 1``.
    max_members, max_member_bytes, max_total_bytes : int
        Caps on the number of members and on inflated sizes (enforced while inflating, not only from the
        zip's headers).

    Returns
    -------
    SubmissionReport
    """
    path = Path(zip_path)
    if not path.is_file():
        raise ValidationError(f"`zip_path` must be an existing zip file; got {str(path)!r}.")
    return _validate(path, where=f"submission {str(path)!r}", images=images, cases=cases, num_classes=num_classes,
                     max_members=max_members, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)


#: what opening a damaged zip raises (OSError is reported as a read error instead)
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*ZIP_READ_ERRORS, zipfile.LargeZipFile)


def _open_zip(path: Path, where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except OSError as exc:
        raise output_error(exc, path=path, operation="read") from exc
    except _OPEN_ERRORS as exc:
        raise FormatError(f"{where} is not a readable zip file ({type(exc).__name__}: {exc}).") from exc


def _validate(path: Path, *, where: str, images: str | os.PathLike[str] | None, cases: Sequence[str] | None,
              num_classes: int | None, max_members: int, max_member_bytes: int,
              max_total_bytes: int, progress: bool = False) -> SubmissionReport:
    zf = _open_zip(path, where)
    with zf, tempfile.TemporaryDirectory(prefix="medfuse-submission-") as tmp:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise FormatError(f"{where} holds {len(infos)} members, more than `max_members`={max_members}.")
        names = [i.filename for i in infos]
        _check_names(names, where)
        _check_entries(infos, where)
        found = [n[: -len(_CASE_SUFFIX)] for n in names]
        if sum(i.file_size for i in infos) > max_total_bytes:
            raise FormatError(f"{where} declares more than `max_total_bytes`={max_total_bytes} bytes inflated.")
        expected_images = image_cases(images) if images is not None else None
        expected = set(expected_images) if expected_images is not None else (set(cases) if cases else None)
        if expected is not None:
            missing, extra = sorted(expected - set(found)), sorted(set(found) - expected)
            if missing or extra:
                raise CaseMismatchError(
                    f"{where}: missing cases {missing[:20]}{' ...' if len(missing) > 20 else ''} "
                    f"({len(missing)}), unexpected cases {extra[:20]} ({len(extra)})."
                )
        labels: dict[str, tuple[int, ...]] = {}
        entries = progress_bar(zip(infos, found, strict=True), enabled=progress, total=len(infos), desc="verify")
        for info, case in entries:
            array, geometry = _read_entry(zf, info, Path(tmp), cap=max_member_bytes, where=where)
            if array.ndim != 3:
                raise FormatError(f"{where}: case {case!r} is {array.ndim}-D; a 3-D label map is expected.")
            if array.dtype != np.uint8:
                raise FormatError(f"{where}: case {case!r} is stored as {array.dtype}; the competition expects "
                                  "uint8 label maps (make_submission converts them).")
            labels[case] = _label_values(array, case=case, num_classes=num_classes, where=where)
            if expected_images is not None:
                _compare_geometry(case, geometry, expected_images[case], where)
    return SubmissionReport(path=path, cases=tuple(sorted(found)), labels=dict(sorted(labels.items())),
                            checked_against_images=expected_images is not None)


def make_submission(
    folder: str | os.PathLike[str], zip_path: str | os.PathLike[str], *,
    images: str | os.PathLike[str] | None = None, num_classes: int | None = None, progress: bool = False,
) -> SubmissionReport:
    """Zip a folder of ``<case>.nii.gz`` label maps into a validated, flat submission.

    Parameters
    ----------
    folder : path
        Prediction folder (e.g. the output of :func:`medfuse.fuse_folders`). Only ``<case>.nii.gz`` files
        are taken; ``.npz``, ``.pkl``, ``.json`` and anything else are left out.
    zip_path : path
        Zip to write. Written to a temporary file, fsynced, read back and validated entry by entry, then
        renamed: a failed run leaves no partial zip (and an older zip there untouched).
    images : path, optional
        Test images (``<case>_0000.nii.gz``): every test case must be present with its image's geometry,
        and only those cases are zipped.
    num_classes : int, optional
        Labels must lie in ``0 .. num_classes - 1``.
    progress : bool, default False
        Progress bars (needs the ``progress`` extra) while zipping and while reading the zip back.

    Returns
    -------
    SubmissionReport
        Of the written zip, validated by reading it back.

    Raises
    ------
    OutputError
        The zip cannot be written (ENOSPC, EROFS, EACCES; ``zip_path`` is a folder: EISDIR), or what was
        written does not read back whole.
    """
    from ..io import atomic_write, label_map_files, read_nifti, write_nifti

    src = Path(folder)
    if not src.is_dir():
        raise ValidationError(f"`folder` must be a folder of '<case>.nii.gz' predictions; got {str(src)!r}.")
    files = label_map_files(src)
    if not files:
        raise ValidationError(f"`folder` {str(src)!r} holds no '<case>.nii.gz' prediction.")
    expected_images = image_cases(images) if images is not None else None
    if expected_images is not None:
        missing = sorted(set(expected_images) - set(files))
        if missing:
            raise CaseMismatchError(f"`folder` {str(src)!r} lacks predictions for {len(missing)} test cases: "
                                    f"{missing[:20]}{' ...' if len(missing) > 20 else ''}.")
        files = {c: files[c] for c in sorted(expected_images)}
    out = Path(zip_path)
    if out.is_dir():
        raise output_error(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), path=out, operation="write")
    if out.suffix != ".zip":
        raise ValidationError(f"`zip_path` must end in '.zip'; got {str(out)!r}.")
    converted: list[str] = []
    reports: list[SubmissionReport] = []

    def read_back(written: Path) -> None:  # the zip as written on disk, every entry decoded and checked
        reports.append(_validate(written, where=f"submission {str(out)!r}", images=images, cases=list(files),
                                 num_classes=num_classes, max_members=MAX_MEMBERS,
                                 max_member_bytes=MAX_MEMBER_BYTES, max_total_bytes=MAX_TOTAL_BYTES,
                                 progress=progress))

    with atomic_write(out, verify=read_back) as tmp_zip, \
            zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            tempfile.TemporaryDirectory(prefix="medfuse-submit-") as tmp:
        for case, path in progress_bar(files.items(), enabled=progress, total=len(files), desc="zip"):
            array, geometry = read_nifti(path)
            if array.ndim != 3:
                raise FormatError(f"prediction {str(path)!r} is {array.ndim}-D; a 3-D label map is expected.")
            _label_values(array, case=case, num_classes=num_classes, where=f"`folder` {str(src)!r}")
            if expected_images is not None:
                _compare_geometry(case, geometry, expected_images[case], f"`folder` {str(src)!r}")
            if array.dtype == np.uint8:
                zf.write(path, arcname=case + _CASE_SUFFIX)
            else:
                if array.size and array.max() > 255:
                    raise ValidationError(f"case {case!r} holds labels above 255; a uint8 submission "
                                          "cannot represent them.")
                fixed = Path(tmp) / (case + _CASE_SUFFIX)
                write_nifti(fixed, array.astype(np.uint8), geometry)
                zf.write(fixed, arcname=case + _CASE_SUFFIX)
                fixed.unlink()
                converted.append(case)
    report = reports[-1]
    return SubmissionReport(path=out, cases=report.cases, labels=report.labels,
                            checked_against_images=report.checked_against_images, converted=tuple(converted))
