"""nnU-Net v2 prediction cases: properties files and writers.

A v2 case is ``<case><ending>`` (labels, full geometry), ``<case>.npz`` (key ``probabilities``,
``(C, Z, Y, X)`` in the FULL original geometry, crop reverted with channel 0 = 1 outside the crop box) and
``<case>.pkl`` (a dict with ``spacing``, ``shape_before_cropping``, ``bbox_used_for_cropping``,
``shape_after_cropping_and_before_resampling`` and ``sitk_stuff {spacing, origin, direction}``).

``shape_before_cropping`` and ``bbox_used_for_cropping`` are in the model's TRANSPOSED axis order
(``transpose_forward`` of its plans), while the npz and the label file are back in the image's own order:
medfuse takes the shape from the npz / label file, checks that ``shape_before_cropping`` is a permutation
of it, and takes spacing, origin and direction from ``sitk_stuff`` (what nnU-Net's SimpleITK writer uses).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._core.atomic import atomic_write
from .._core.validation import as_label_map, describe
from ..errors import FormatError, GeometryMismatchError, ValidationError
from ..geometry import Geometry, validate_box
from .nifti import IMAGE_ENDINGS, write_nifti
from .pickles import save_pickle
from .v1 import WrittenCase, argmax_labels, as_probabilities, check_case_name

__all__ = ["v2_geometry", "v2_properties", "write_v2_case"]


def v2_geometry(props: Any, shape: Sequence[int], *, source: str) -> Geometry:
    """Full geometry of a v2 case: ``shape`` (from the npz or label file, array order) with the
    ``sitk_stuff`` spacing/origin/direction of the properties.

    Raises
    ------
    FormatError
        Not a dict, ``sitk_stuff`` missing or malformed, or a 2D case (not supported).
    GeometryMismatchError
        ``shape_before_cropping`` is not a permutation of ``shape``.
    """
    if not isinstance(props, Mapping):
        raise FormatError(f"{source} holds {describe(props)}, not a v2 (nnU-Net v2) properties dict.")
    stuff = props.get("sitk_stuff")
    if not isinstance(stuff, Mapping) or not all(k in stuff for k in ("spacing", "origin", "direction")):
        raise FormatError(
            f"{source} has no `sitk_stuff` {{spacing, origin, direction}} (keys: {sorted(map(str, props))}); "
            "it was not written by nnU-Net v2's SimpleITK writer. Keep the label file beside it so medfuse "
            "can take the geometry from its header."
        )
    shape_t = tuple(int(s) for s in shape)
    try:
        spacing = tuple(float(v) for v in stuff["spacing"])
        origin = tuple(float(v) for v in stuff["origin"])
        direction = tuple(float(v) for v in stuff["direction"])
    except (TypeError, ValueError):
        raise FormatError(f"{source}: `sitk_stuff` must hold numbers; got {stuff!r}.") from None
    if len(spacing) != len(shape_t):
        raise FormatError(
            f"{source}: `sitk_stuff` describes a {len(spacing)}-D image but the array is {len(shape_t)}-D "
            f"{shape_t}; 2D nnU-Net v2 outputs are not supported."
        )
    before = props.get("shape_before_cropping")
    if before is not None and sorted(int(s) for s in before) != sorted(shape_t):
        raise GeometryMismatchError(
            f"{source}: `shape_before_cropping` {tuple(before)} is not a permutation of the case's shape "
            f"{shape_t}; the properties file and the prediction do not belong together."
        )
    try:
        return Geometry(shape_t, tuple(reversed(spacing)), origin, direction)
    except ValidationError as exc:
        raise FormatError(f"{source}: invalid geometry in `sitk_stuff`: {exc}") from exc


def v2_properties(geometry: Geometry, *, crop_bbox: Sequence[Sequence[int]] | None = None, **extra: Any
                  ) -> dict[str, Any]:
    """A v2 properties dict as nnU-Net v2 writes it (identity ``transpose_forward`` assumed).

    Parameters
    ----------
    geometry : Geometry
        Full image geometry.
    crop_bbox : sequence of [start, stop] pairs, optional
        The nonzero crop box the model used (full extent when omitted).
    **extra
        Keys to add or override.
    """
    if not isinstance(geometry, Geometry):
        raise ValidationError(f"`geometry` must be a medfuse.Geometry; got {describe(geometry)}.")
    box = validate_box(crop_bbox if crop_bbox is not None else [[0, s] for s in geometry.shape], geometry.shape)
    props: dict[str, Any] = {
        "sitk_stuff": {
            "spacing": tuple(geometry.itk_spacing),
            "origin": tuple(geometry.origin),
            "direction": tuple(geometry.direction),
        },
        "spacing": list(geometry.spacing),
        "shape_before_cropping": tuple(geometry.shape),
        "bbox_used_for_cropping": [[int(lo), int(hi)] for lo, hi in box],
        "shape_after_cropping_and_before_resampling": tuple(int(hi - lo) for lo, hi in box),
    }
    props.update(extra)
    return props


def write_v2_case(
    folder: str | os.PathLike[str], case: str, *,
    probabilities: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    geometry: Geometry,
    crop_bbox: Sequence[Sequence[int]] | None = None,
    extra_properties: Mapping[str, Any] | None = None,
    file_ending: str = ".nii.gz",
) -> WrittenCase:
    """Write one case in the nnU-Net v2 layout, atomically.

    Parameters
    ----------
    folder : path-like
        Output folder (created if missing).
    case : str
        Case name (file stem).
    probabilities : array_like of shape (C, Z, Y, X), optional
        Class probabilities in the FULL geometry; written as ``<case>.npz`` (``np.savez_compressed``, key
        ``probabilities``, float32) plus ``<case>.pkl`` (:func:`v2_properties`).
    labels : array_like of shape (Z, Y, X), optional
        Label map for ``<case><file_ending>``; the argmax of ``probabilities`` when omitted.
    geometry : Geometry
        Full image geometry.
    crop_bbox : sequence of [start, stop] pairs, optional
        Recorded as ``bbox_used_for_cropping`` (full extent when omitted).
    extra_properties : mapping, optional
        Extra/overriding keys for the ``.pkl``.
    file_ending : {".nii.gz", ".nii", ".nrrd", ".mha"}, default ".nii.gz"
        Label file ending.
    """
    check_case_name(case)
    if probabilities is None and labels is None:
        raise ValidationError("write_v2_case needs `probabilities`, `labels` or both; got neither.")
    if not isinstance(geometry, Geometry):
        raise ValidationError(f"`geometry` must be a medfuse.Geometry; got {describe(geometry)}.")
    if file_ending not in IMAGE_ENDINGS:
        raise ValidationError(f"`file_ending` must be one of {IMAGE_ENDINGS}; got {file_ending!r}.")
    if crop_bbox is not None:
        validate_box(crop_bbox, geometry.shape)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    probs = None if probabilities is None else as_probabilities(probabilities, spatial=geometry.shape)
    lab = None if labels is None else as_label_map(labels, name="labels", ndim=len(geometry.shape))
    if lab is not None and lab.shape != geometry.shape:
        raise GeometryMismatchError(f"`labels` has shape {lab.shape} but the geometry's shape is {geometry.shape}.")
    npz_path = pkl_path = None
    if probs is not None:
        npz_path, pkl_path = out / f"{case}.npz", out / f"{case}.pkl"
        with atomic_write(npz_path) as tmp:
            np.savez_compressed(tmp, probabilities=probs.astype(np.float32, copy=False))
        save_pickle(pkl_path, v2_properties(geometry, crop_bbox=crop_bbox, **dict(extra_properties or {})))
    if lab is None:
        if probs is None:  # pragma: no cover - excluded above
            raise ValidationError("nothing to write")
        lab = argmax_labels(probs, None, geometry.shape)
    label_path = out / f"{case}{file_ending}"
    write_nifti(label_path, lab, geometry)
    return WrittenCase(labels=label_path, npz=npz_path, pkl=pkl_path)
