"""nnU-Net v1 test-time preprocessing from the plans: crop, transpose, resample, normalise.

The steps and their order are nnU-Net v1's (``GenericPreprocessor.preprocess_test_case``):

1. crop every modality to the bounding box of the voxels that are nonzero in any modality (``crop_bbox``,
   half-open, array order);
2. transpose the spatial axes with ``transpose_forward``;
3. resample to the stage's ``current_spacing`` (cubic in-plane; the slice axis apart with nearest
   neighbour when the spacing is anisotropic); 2D stages keep the slice spacing;
4. normalise each modality by its scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from ..geometry import Box
from .plans import Plans, StagePlan
from .resample import resample_volume, resize_labels, separate_z_axis

__all__ = ["PreprocessedCase", "nonzero_bbox", "normalize", "preprocess", "target_shape"]


@dataclass(frozen=True)
class PreprocessedCase:
    """An image on the network's grid, and what is needed to go back.

    Attributes
    ----------
    data : ndarray of shape (M, Zn, Yn, Xn), float32
        Normalised modalities on the stage grid, transposed (``transpose_forward``).
    crop_bbox : tuple of (int, int)
        The nonzero box in the original array (array order, half-open).
    original_shape : tuple of int
        Full image shape ``(Z, Y, X)``.
    original_spacing : tuple of float
        Image spacing, array order.
    target_spacing : tuple of float
        Spacing of ``data``, transposed order (``spacing_after_resampling`` in the properties).
    """

    data: NDArray[np.float32]
    crop_bbox: Box
    original_shape: tuple[int, ...]
    original_spacing: tuple[float, ...]
    target_spacing: tuple[float, ...]

    @property
    def shape_after_cropping(self) -> tuple[int, ...]:
        """Crop box size, array order (``size_after_cropping``)."""
        return tuple(hi - lo for lo, hi in self.crop_bbox)


def nonzero_bbox(images: NDArray[Any]) -> Box:
    """Half-open bounding box of the voxels that are nonzero in any channel of ``(M, Z, Y, X)`` images.

    An image with no nonzero voxel keeps its full extent (nothing to crop to).
    """
    spatial = images.shape[1:]
    if images.shape[0] == 0 or 0 in spatial:
        return tuple((0, s) for s in spatial)
    mask = images[0] != 0
    for c in range(1, images.shape[0]):
        mask |= images[c] != 0
    box: list[tuple[int, int]] = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return tuple((0, s) for s in spatial)
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def target_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float],
) -> tuple[int, ...]:
    """Grid size after resampling ``shape`` at ``spacing`` to ``target_spacing`` (nnU-Net's rounding)."""
    return tuple(
        int(v) for v in np.round(np.asarray(spacing, np.float64) / np.asarray(target_spacing, np.float64)
                                 * np.asarray(shape, np.float64))
    )


def stage_target_spacing(
    stage: StagePlan, spacing_transposed: Sequence[float], *, plans: Plans,
) -> tuple[float, float, float]:
    """Spacing the stage's network expects, transposed order; 2D stages keep the image's slice spacing."""
    t = [float(v) for v in stage.spacing]
    if stage.dimension == 2 or plans.preprocessor_name == "PreprocessorFor2D":
        t[0] = float(spacing_transposed[0])
    return (t[0], t[1], t[2])


def normalize(
    channel: NDArray[np.float32], *, scheme: str, properties: Any = None, mask: NDArray[np.bool_] | None = None,
) -> None:
    """Normalise one modality in place (float32), by its nnU-Net v1 scheme.

    Parameters
    ----------
    channel : ndarray of shape (Z, Y, X), float32, modified in place
    scheme : {"CT", "CT2", "noNorm", "nonCT"}
    properties : IntensityProperties, optional
        Required by ``CT`` and ``CT2``.
    mask : ndarray of bool, optional
        Nonzero mask when the plans use it for this modality: statistics inside it, zeros outside.
    """
    if scheme == "noNorm":
        return
    if scheme in ("CT", "CT2"):
        if properties is None:
            raise ValidationError(f"`{scheme}` normalisation needs the dataset's intensity properties.")
        lo, hi = float(properties.percentile_00_5), float(properties.percentile_99_5)
        if scheme == "CT2":
            inside = (channel > lo) & (channel < hi)
        np.clip(channel, lo, hi, out=channel)
        if scheme == "CT":
            channel -= np.float32(properties.mean)
            channel /= np.float32(properties.sd)
        else:
            vals = channel[inside]
            mean, sd = (float(vals.mean()), float(vals.std())) if vals.size else (0.0, 1.0)
            channel -= np.float32(mean)
            channel /= np.float32(sd if sd > 0 else 1.0)
        if mask is not None:
            channel[~mask] = 0
        return
    if scheme == "nonCT":
        if mask is not None:
            vals = channel[mask]
            mean, sd = (float(vals.mean()), float(vals.std())) if vals.size else (0.0, 0.0)
            channel -= np.float32(mean)
            channel /= np.float32(sd + 1e-8)
            channel[~mask] = 0
        else:
            mean, sd = float(channel.mean(dtype=np.float64)), float(channel.std(dtype=np.float64))
            channel -= np.float32(mean)
            channel /= np.float32(sd + 1e-8)
        return
    raise ValidationError(f"unknown normalisation scheme {scheme!r}; expected one of CT, CT2, noNorm, nonCT.")


def preprocess(
    images: NDArray[Any], spacing: Sequence[float], *, plans: Plans, stage: int | StagePlan,
    extra_channels: int = 0,
) -> PreprocessedCase:
    """Crop, transpose, resample and normalise one case the way the stage's network was trained.

    Parameters
    ----------
    images : ndarray of shape (M, Z, Y, X)
        The case's modalities (``_0000``, ``_0001``, ...) in array order; any real dtype.
    spacing : sequence of 3 float
        Voxel size in mm, array order ``(z, y, x)``.
    plans : Plans
    stage : int or StagePlan
    extra_channels : int
        Room for this many more channels after the modalities in ``data`` (left uninitialised; the
        cascade fills them with the low-res segmentation), so the network input is built without a copy.

    Returns
    -------
    PreprocessedCase
    """
    st = stage if isinstance(stage, StagePlan) else plans.stage(stage)
    if images.ndim != 4:
        raise ValidationError(f"`images` must have shape (M, Z, Y, X); got {images.shape}.")
    if images.shape[0] != plans.num_modalities:
        raise ValidationError(
            f"`images` must hold one channel per modality of the plans ({plans.num_modalities}: "
            f"{list(plans.modalities)}); got {images.shape[0]}."
        )
    sp = tuple(float(s) for s in spacing)
    bbox = nonzero_bbox(images)
    crop_index = (slice(None), *(slice(lo, hi) for lo, hi in bbox))
    cropped = images[crop_index]
    tf = plans.transpose_forward
    sp_t = tuple(sp[i] for i in tf)
    target_sp = stage_target_spacing(st, sp_t, plans=plans)
    crop_shape_t = tuple(cropped.shape[1 + i] for i in tf)
    new_shape = target_shape(crop_shape_t, sp_t, target_sp)
    if any(s < 1 for s in new_shape):
        raise ValidationError(
            f"the image (crop {crop_shape_t} at spacing {sp_t}) resamples to an empty grid {new_shape} at the "
            f"stage's spacing {target_sp}; is the image spacing right?"
        )
    axis = separate_z_axis(sp_t, target_sp)
    data = np.empty((plans.num_modalities + extra_channels, *new_shape), dtype=np.float32)
    mask_t: NDArray[np.bool_] | None = None
    if any(plans.use_mask_for_norm):
        nonzero = np.any(cropped != 0, axis=0)
        from scipy import ndimage

        nonzero = ndimage.binary_fill_holes(nonzero).transpose(tf)
        mask_t = resize_labels(nonzero.view(np.uint8), new_shape, label_values=[1]).astype(bool)
    for c in range(plans.num_modalities):
        channel_t = cropped[c].transpose(tf)
        resample_volume(channel_t, new_shape, order=3, separate_axis=axis, order_z=0, out=data[c])
        normalize(data[c], scheme=plans.normalization_schemes[c], properties=plans.intensity_properties[c],
                  mask=mask_t if plans.use_mask_for_norm[c] else None)
    return PreprocessedCase(
        data=data, crop_bbox=bbox, original_shape=tuple(int(s) for s in images.shape[1:]), original_spacing=sp,
        target_spacing=target_sp,
    )
