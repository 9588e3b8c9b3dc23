"""PaddleSeg MedicalSeg / nnU-Net v1 prediction cases: properties files and writers.

A v1 case is ``<case>.nii.gz`` (uint8 labels, full image geometry), ``<case>.npz`` (key ``softmax``,
float16 ``(C, *crop box sizes)``) and ``<case>.pkl`` (an ``OrderedDict`` of properties: the full shape,
the ITK geometry and the crop box). See ``docs/formats.md``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.atomic import atomic_write
from .._core.validation import as_label_map, describe
from ..errors import FormatError, GeometryMismatchError, ValidationError
from ..geometry import Box, Geometry, paste_into_box, validate_box
from .nifti import label_dtype, write_nifti
from .pickles import save_pickle

__all__ = [
    "V1_GEOMETRY_KEYS",
    "WrittenCase",
    "argmax_labels",
    "v1_case_properties",
    "v1_crop_bbox",
    "v1_geometry",
    "v1_properties",
    "write_v1_case",
]

#: Properties keys medfuse needs from a v1 ``<case>.pkl``.
V1_GEOMETRY_KEYS = ("original_size_of_raw_data", "itk_spacing", "itk_origin", "itk_direction", "crop_bbox")


@dataclass(frozen=True)
class WrittenCase:
    """Paths of the files a case writer produced (``None`` for those it did not write)."""

    labels: Path | None
    npz: Path | None
    pkl: Path | None


# -- reading ---------------------------------------------------------------------------------------------
def v1_case_properties(obj: Any, *, source: str) -> Mapping[str, Any]:
    """The properties mapping of a loaded v1 ``.pkl`` (the first one when the file holds a list).

    The v1 ensemble (``nnunet/ensemble.py --save_npz``) writes a LIST of property dicts, one per input
    folder. They must agree on geometry and crop box; the first is returned.

    Raises
    ------
    FormatError
        Not a mapping (or a non-empty list of mappings), or keys of :data:`V1_GEOMETRY_KEYS` missing.
    GeometryMismatchError
        The dicts of a list disagree on geometry or crop box.
    """
    if isinstance(obj, (list, tuple)):
        if not obj or not all(isinstance(o, Mapping) for o in obj):
            raise FormatError(
                f"{source} holds a {type(obj).__name__} of {len(obj)} items; a v1 properties file holds a "
                "dict, or (written by the v1 ensemble) a non-empty list of dicts."
            )
        first = _require_v1_keys(obj[0], source=source)
        g0, b0 = v1_geometry(first, source=source), v1_crop_bbox(first, source=source)
        for i, other in enumerate(obj[1:], start=1):
            other = _require_v1_keys(other, source=source)
            diff = g0.differences(v1_geometry(other, source=source))
            b1 = v1_crop_bbox(other, source=source)
            if b1 != b0:
                diff.append(f"crop_bbox {[list(p) for p in b0]} != {[list(p) for p in b1]}")
            if diff:
                raise GeometryMismatchError(
                    f"{source} holds {len(obj)} property dicts (a v1 ensemble output) that disagree: entry 0 vs "
                    f"entry {i}: {'; '.join(diff)}. The ensembled predictions were not of the same image."
                )
        return first
    if not isinstance(obj, Mapping):
        raise FormatError(
            f"{source} holds {describe(obj)}, not a properties dict; is it a case properties file?"
        )
    return _require_v1_keys(obj, source=source)


def _require_v1_keys(props: Mapping[str, Any], *, source: str) -> Mapping[str, Any]:
    missing = [k for k in V1_GEOMETRY_KEYS if k not in props]
    if missing:
        raise FormatError(
            f"{source} is not a v1 (PaddleSeg/nnU-Net v1) case properties file: keys {missing} are missing "
            f"(it has {sorted(map(str, props))})."
        )
    return props


def _float_tuple(value: Any, *, key: str, source: str, length: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in np.asarray(value, dtype=np.float64).ravel())
    except (TypeError, ValueError):
        raise FormatError(f"{source}: `{key}` must be a sequence of numbers; got {value!r}.") from None
    if length is not None and len(out) != length:
        raise FormatError(f"{source}: `{key}` must hold {length} numbers; got {value!r}.")
    return out


def v1_geometry(props: Mapping[str, Any], *, source: str) -> Geometry:
    """Full image geometry from v1 properties: ``original_size_of_raw_data`` (array order) and the ITK
    ``itk_spacing`` / ``itk_origin`` / ``itk_direction`` (physical order) that the label writer used."""
    try:
        shape = tuple(int(s) for s in np.asarray(props["original_size_of_raw_data"]).ravel())
    except (TypeError, ValueError):
        raise FormatError(
            f"{source}: `original_size_of_raw_data` must be integers; got {props['original_size_of_raw_data']!r}."
        ) from None
    nd = len(shape)
    itk_spacing = _float_tuple(props["itk_spacing"], key="itk_spacing", source=source, length=nd)
    origin = _float_tuple(props["itk_origin"], key="itk_origin", source=source, length=nd)
    direction = _float_tuple(props["itk_direction"], key="itk_direction", source=source, length=nd * nd)
    try:
        return Geometry(shape, tuple(reversed(itk_spacing)), origin, direction)
    except ValidationError as exc:
        raise FormatError(f"{source}: invalid geometry in the properties: {exc}") from exc


def v1_crop_bbox(props: Mapping[str, Any], *, source: str, shape: Sequence[int] | None = None) -> Box:
    """``crop_bbox`` of v1 properties as a half-open box in array order, checked against ``shape``
    (default: ``original_size_of_raw_data``)."""
    if shape is None:
        shape = tuple(int(s) for s in np.asarray(props["original_size_of_raw_data"]).ravel())
    try:
        return validate_box(props["crop_bbox"], shape, name="crop_bbox")
    except ValidationError as exc:
        raise FormatError(f"{source}: {exc}") from exc


# -- writing ---------------------------------------------------------------------------------------------
def v1_properties(geometry: Geometry, crop_bbox: Sequence[Sequence[int]], **extra: Any) -> OrderedDict[str, Any]:
    """A v1 case properties dict with the same keys, order and Python types as the models' own.

    Parameters
    ----------
    geometry : Geometry
        Full original image geometry.
    crop_bbox : sequence of [start, stop] pairs
        Where the probabilities live inside ``geometry.shape`` (array order, half-open).
    **extra
        Keys to add or override (e.g. ``size_after_resampling``, ``spacing_after_resampling`` of the
        model's plan, ``list_of_data_files``). By default the resampled size/spacing equal the cropped
        size and the original spacing.

    Returns
    -------
    OrderedDict
        ``original_size_of_raw_data`` (int64 array), ``original_spacing`` (float64 array),
        ``list_of_data_files`` (list), ``seg_file`` (None), ``itk_origin`` / ``itk_spacing`` /
        ``itk_direction`` (tuples of float), ``crop_bbox`` (list of [int, int]), ``classes``
        (``array([-1, 0])``, as at test time), ``size_after_cropping`` (tuple of int),
        ``size_after_resampling`` (tuple of int), ``spacing_after_resampling`` (float64 array).
    """
    if not isinstance(geometry, Geometry):
        raise ValidationError(f"`geometry` must be a medfuse.Geometry; got {describe(geometry)}.")
    box = validate_box(crop_bbox, geometry.shape)
    sizes = tuple(int(hi - lo) for lo, hi in box)
    props: OrderedDict[str, Any] = OrderedDict()
    props["original_size_of_raw_data"] = np.array(geometry.shape, dtype=np.int64)
    props["original_spacing"] = np.array(geometry.spacing, dtype=np.float64)
    props["list_of_data_files"] = []
    props["seg_file"] = None
    props["itk_origin"] = tuple(float(v) for v in geometry.origin)
    props["itk_spacing"] = tuple(float(v) for v in geometry.itk_spacing)
    props["itk_direction"] = tuple(float(v) for v in geometry.direction)
    props["crop_bbox"] = [[int(lo), int(hi)] for lo, hi in box]
    props["classes"] = np.array([-1, 0], dtype=np.int64)
    props["size_after_cropping"] = sizes
    props["size_after_resampling"] = sizes
    props["spacing_after_resampling"] = np.array(geometry.spacing, dtype=np.float64)
    props.update(extra)
    return props


_CASE_NAME = re.compile(r"^[^/\\\x00]+$")


def check_case_name(case: str) -> str:
    """A case name usable as a file stem (no folders, not hidden)."""
    if not isinstance(case, str) or not _CASE_NAME.match(case) or case.startswith(".") or case in ("", ".."):
        raise ValidationError(
            f"`case` must be a plain file stem (no '/', not starting with '.'); got {case!r}."
        )
    return case


def as_probabilities(probabilities: ArrayLike, *, spatial: tuple[int, ...], name: str = "probabilities"
                     ) -> NDArray[Any]:
    """Validated ``(C, *spatial)`` floating probabilities."""
    p = np.asarray(probabilities)
    if p.dtype.kind != "f":
        raise ValidationError(f"`{name}` must be floating-point class probabilities; got {describe(p)}.")
    if p.ndim != len(spatial) + 1 or p.shape[0] < 1:
        raise ValidationError(
            f"`{name}` must have shape (C, {', '.join(map(str, spatial))}) with C >= 1; got {describe(p)}."
        )
    if p.shape[1:] != spatial:
        raise GeometryMismatchError(
            f"`{name}` has spatial shape {p.shape[1:]} but must match {spatial} (the crop box sizes / image "
            "shape it is written for)."
        )
    return p


def argmax_labels(probabilities: NDArray[Any], box: Sequence[Sequence[int]] | None,
                  full_shape: Sequence[int]) -> NDArray[Any]:
    """Argmax label map of ``(C, *box sizes)`` probabilities pasted into ``full_shape`` (0 outside the
    box; ties go to the lowest class), uint8 (uint16 beyond 256 classes)."""
    dtype = label_dtype(probabilities.shape[0] - 1)
    cropped: NDArray[Any] = np.argmax(probabilities, axis=0).astype(dtype, copy=False)
    if box is None:
        return cropped
    return paste_into_box(cropped, box, tuple(full_shape), fill=0)


def write_v1_case(
    folder: str | os.PathLike[str], case: str, *,
    probabilities: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    geometry: Geometry,
    crop_bbox: Sequence[Sequence[int]],
    extra_properties: Mapping[str, Any] | None = None,
) -> WrittenCase:
    """Write one case in the v1 (PaddleSeg MedicalSeg / nnU-Net v1 ``--save_npz``) layout, atomically.

    Parameters
    ----------
    folder : path-like
        Output folder (created if missing).
    case : str
        Case name (file stem).
    probabilities : array_like of shape (C, *crop box sizes), optional
        Class probabilities inside ``crop_bbox``; written as ``<case>.npz`` (``np.savez_compressed``, key
        ``softmax``, float16) plus ``<case>.pkl`` (:func:`v1_properties`).
    labels : array_like of shape (Z, Y, X), optional
        Full-size label map for ``<case>.nii.gz`` (uint8; uint16 above 255). When omitted, the argmax of
        ``probabilities`` pasted into the full image (background outside the crop box) is written.
    geometry : Geometry
        Full original image geometry.
    crop_bbox : sequence of [start, stop] pairs
        Crop box in array order, inside ``geometry.shape``.
    extra_properties : mapping, optional
        Extra/overriding keys for the ``.pkl`` (see :func:`v1_properties`).

    Returns
    -------
    WrittenCase
        Paths written. The ``.npz`` and ``.pkl`` are written before the ``.nii.gz``.
    """
    check_case_name(case)
    if probabilities is None and labels is None:
        raise ValidationError("write_v1_case needs `probabilities`, `labels` or both; got neither.")
    if not isinstance(geometry, Geometry):
        raise ValidationError(f"`geometry` must be a medfuse.Geometry; got {describe(geometry)}.")
    box = validate_box(crop_bbox, geometry.shape)
    sizes = tuple(hi - lo for lo, hi in box)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    probs = None if probabilities is None else as_probabilities(probabilities, spatial=sizes)
    lab = None if labels is None else as_label_map(labels, name="labels", ndim=len(geometry.shape))
    if lab is not None and lab.shape != geometry.shape:
        raise GeometryMismatchError(
            f"`labels` has shape {lab.shape} but the geometry's full image shape is {geometry.shape}."
        )
    npz_path = pkl_path = None
    if probs is not None:
        npz_path, pkl_path = out / f"{case}.npz", out / f"{case}.pkl"
        with atomic_write(npz_path) as tmp:
            np.savez_compressed(tmp, softmax=probs.astype(np.float16, copy=False))
        save_pickle(pkl_path, v1_properties(geometry, box, **dict(extra_properties or {})))
    if lab is None:
        if probs is None:  # pragma: no cover - excluded above
            raise ValidationError("nothing to write")
        lab = argmax_labels(probs, box, geometry.shape)
    label_path = out / f"{case}.nii.gz"
    write_nifti(label_path, lab, geometry)
    return WrittenCase(labels=label_path, npz=npz_path, pkl=pkl_path)
