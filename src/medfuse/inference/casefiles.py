"""An nnU-Net image folder (``<case>_0000.nii.gz`` ...), its low-res segmentations, and header checks.

Everything here reads file names and NIfTI headers only, so a bad folder fails before any prediction.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import FormatError, GeometryMismatchError, ValidationError

__all__ = ["check_headers", "find_cases", "find_lowres"]

_IMAGE_RE = re.compile(r"^(?P<case>.+)_(?P<mod>\d{4})\.nii(\.gz)?$")


def find_cases(folder: str | os.PathLike[str], *, num_modalities: int) -> dict[str, tuple[Path, ...]]:
    """Cases of an nnU-Net-style image folder: ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ...

    Returns
    -------
    dict of str to tuple of Path
        Case name -> one file per modality, in modality order; sorted by case name.
    """
    p = Path(folder)
    if not p.is_dir():
        raise FormatError(f"image folder {str(p)!r} does not exist.")
    found: dict[str, dict[int, Path]] = {}
    for f in sorted(p.iterdir()):
        m = _IMAGE_RE.match(f.name)
        if m and f.is_file():
            found.setdefault(m.group("case"), {})[int(m.group("mod"))] = f
    if not found:
        raise FormatError(f"no images in {str(p)!r}: expected nnU-Net names `<case>_0000.nii.gz` (one file per "
                          "modality: _0000, _0001, ...).")
    out: dict[str, tuple[Path, ...]] = {}
    bad: list[str] = []
    for case in sorted(found):
        mods = found[case]
        if sorted(mods) != list(range(num_modalities)):
            bad.append(f"{case}: {[f'_{k:04d}' for k in sorted(mods)]}")
            continue
        out[case] = tuple(mods[k] for k in range(num_modalities))
    if bad:
        want = ", ".join(f"_{k:04d}" for k in range(num_modalities))
        raise FormatError(f"the plans have {num_modalities} modalities ({want}) but these cases in {str(p)!r} "
                          f"have other files: {'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}.")
    return out


def find_lowres(folder: str | os.PathLike[str], cases: Iterable[str]) -> dict[str, Path]:
    """The low-res stage's ``<case>.nii.gz`` (or ``.nii``) for every case; all must be there."""
    low_dir = Path(folder)
    if not low_dir.is_dir():
        raise FormatError(f"low-res folder {str(low_dir)!r} does not exist.")
    found: dict[str, Path] = {}
    absent: list[str] = []
    for case in cases:
        f = next((c for c in (low_dir / f"{case}.nii.gz", low_dir / f"{case}.nii") if c.is_file()), None)
        if f is None:
            absent.append(case)
        else:
            found[case] = f
    if absent:
        raise FormatError(f"the low-res folder {str(low_dir)!r} has no `<case>.nii.gz` for "
                          f"{absent[:10]}{' ...' if len(absent) > 10 else ''}; run the low-res stage first.")
    return found


def check_headers(cases: Mapping[str, Sequence[Path]], lowres: Mapping[str, Path]) -> None:
    """Every image is 3D, a case's modalities share a geometry, and its low-res map matches it (headers only)."""
    from ..io import read_geometry

    for case, files in cases.items():
        geos = [read_geometry(f) for f in files]
        for f, g in zip(files, geos, strict=True):
            if len(g.shape) != 3:
                raise ValidationError(f"image {str(f)!r} must be a 3D volume; it has shape {g.shape}.")
            diff = geos[0].differences(g)
            if diff:
                raise GeometryMismatchError(f"case {case}: {str(f)!r} differs from {str(files[0])!r}: "
                                            f"{'; '.join(diff)}.")
        if case in lowres:
            diff = geos[0].differences(read_geometry(lowres[case]))
            if diff:
                raise GeometryMismatchError(
                    f"case {case}: the low-res segmentation {str(lowres[case])!r} does not match the image "
                    f"{str(files[0])!r}: {'; '.join(diff)}."
                )
