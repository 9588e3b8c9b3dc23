"""The steps of one case around the network, for :class:`~medfuse.inference.Predictor`: check the image
(and the cascade's low-res map), read it from files, bring the predicted channels back to the original grid
and take their argmax.

Functions of arrays and plans only; the predictor holds the models and calls them in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .._core.validation import describe
from ..errors import GeometryMismatchError, ValidationError
from ..geometry import Geometry
from .plans import Plans
from .preprocess import PreprocessedCase
from .resample import iter_resampled, separate_z_axis

__all__ = ["channels_to_labels", "check_case", "check_lowres_given", "iter_original_channels", "read_case"]


def check_lowres_given(given: bool, *, is_cascade: bool, num_classes: int, image: str, what: str) -> None:
    """A cascade full-res model needs the low-res stage's output (``what``); other models refuse it."""
    if is_cascade and not given:
        raise ValidationError(
            f"these are cascade full-res models (input: {image} + {num_classes} low-res label "
            f"channels): give the low-res stage's {what} (`lowres=`, CLI `--lowres DIR`)."
        )
    if not is_cascade and given:
        raise ValidationError("`lowres` is only for cascade full-res models; these models take the image only.")


def _check_image(image: ArrayLike, plans: Plans) -> NDArray[Any]:
    arr = np.asarray(image)
    m = plans.num_modalities
    if arr.dtype.kind not in "biuf":
        raise ValidationError(f"`image` must be a real-valued array; got {describe(arr)}.")
    if arr.ndim == 3 and m == 1:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValidationError(
            f"`image` must be a 3D volume (Z, Y, X) or (M, Z, Y, X) with M = {m} modalities; got "
            f"{describe(arr)}. 2D images and time series are not supported."
        )
    if arr.shape[0] != m:
        raise ValidationError(
            f"`image` must have {m} modalities ({list(plans.modalities)}) on its first axis; got {describe(arr)}."
        )
    return arr


def _image_geometry(arr: NDArray[Any], geometry: Geometry | None, spacing: Sequence[float] | None) -> Geometry:
    if geometry is None:
        if spacing is None:
            raise ValidationError("give the image's `geometry` (or at least its `spacing`, z y x, in mm).")
        geometry = Geometry.default(arr.shape[1:], tuple(float(s) for s in spacing))
    elif spacing is not None:
        raise ValidationError("give `geometry` or `spacing`, not both.")
    if tuple(geometry.shape) != tuple(arr.shape[1:]):
        raise GeometryMismatchError(f"`geometry` has shape {geometry.shape} but the image has {arr.shape[1:]}.")
    return geometry


def _check_lowres(lowres: ArrayLike, lowres_geometry: Geometry | None, arr: NDArray[Any], geometry: Geometry
                  ) -> NDArray[Any]:
    low = np.asarray(lowres)
    if low.shape != arr.shape[1:]:
        raise GeometryMismatchError(
            f"the low-res segmentation has shape {low.shape} but the image has {arr.shape[1:]}; it must be "
            "the low-res stage's output in the image's original geometry (same file case name)."
        )
    if lowres_geometry is not None:
        diff = geometry.differences(lowres_geometry)
        if diff:
            raise GeometryMismatchError(
                f"the low-res segmentation's geometry differs from the image's: {'; '.join(diff)}."
            )
    return low


def check_case(
    image: ArrayLike, geometry: Geometry | None, spacing: Sequence[float] | None, lowres: ArrayLike | None,
    lowres_geometry: Geometry | None, *, plans: Plans, is_cascade: bool,
) -> tuple[NDArray[Any], Geometry, NDArray[Any] | None]:
    """``(image as (M, Z, Y, X), its geometry, the low-res map or None)``, every argument checked."""
    arr = _check_image(image, plans)
    geometry = _image_geometry(arr, geometry, spacing)
    check_lowres_given(lowres is not None, is_cascade=is_cascade, num_classes=plans.num_classes,
                       image=f"{plans.num_modalities} image", what="segmentation")
    low = None if lowres is None else _check_lowres(lowres, lowres_geometry, arr, geometry)
    return arr, geometry, low


def iter_original_channels(probs: NDArray[np.float32], pre: PreprocessedCase, plans: Plans
                           ) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """``(c, channel)`` of the network grid's probabilities, transposed back and resampled (one channel at a
    time) to the crop box at the original spacing."""
    tb = plans.transpose_backward
    back = probs.transpose((0, *(a + 1 for a in tb)))
    crop_shape = pre.shape_after_cropping
    if tuple(back.shape[1:]) == tuple(crop_shape):
        for c in range(back.shape[0]):
            yield c, back[c]
        return
    target_untransposed = tuple(pre.target_spacing[a] for a in tb)
    axis = separate_z_axis(pre.original_spacing, target_untransposed)
    yield from iter_resampled(back, crop_shape, order=1, separate_axis=axis, order_z=0)


def channels_to_labels(
    channels: Iterable[tuple[int, NDArray[np.float32]]], *, num_classes: int, shape: tuple[int, ...],
    probability_dtype: DTypeLike | None,
) -> tuple[NDArray[Any] | None, NDArray[Any]]:
    """``(probabilities or None, labels)`` from channels given one at a time: the argmax (ties to the lower
    class; uint8, uint16 above 256 classes) and, unless ``probability_dtype`` is None, the channels stored."""
    out = None if probability_dtype is None else np.empty((num_classes, *shape), dtype=probability_dtype)
    best = np.full(shape, -np.inf, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8 if num_classes <= 256 else np.uint16)
    better = np.empty(shape, dtype=bool)
    for c, ch in channels:
        if out is not None:
            out[c] = ch
        np.greater(ch, best, out=better)  # strict: ties keep the lower class
        np.copyto(best, ch, where=better)
        labels[better] = c
    return out, labels


def read_case(files: Sequence[str | os.PathLike[str]]) -> tuple[NDArray[Any], Geometry]:
    """``(image (M, Z, Y, X), geometry)`` of one case's NIfTI files, one per modality, sharing one geometry."""
    from ..io import read_nifti

    arrays: list[NDArray[Any]] = []
    geo: Geometry | None = None
    for f in files:
        arr, g = read_nifti(f)
        if arr.ndim != 3:
            raise ValidationError(f"image {str(f)!r} must be a 3D volume; it has shape {arr.shape}.")
        if geo is None:
            geo = g
        else:
            diff = geo.differences(g)
            if diff:
                raise GeometryMismatchError(
                    f"the modalities of one case must share a geometry; {str(f)!r} differs from "
                    f"{str(files[0])!r}: {'; '.join(diff)}."
                )
        arrays.append(arr)
    if geo is None:
        raise ValidationError("no image files given.")
    if len(arrays) == 1:
        return arrays[0][None], geo
    return np.stack(arrays), geo
