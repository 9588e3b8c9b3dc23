"""Resampling between the image grid and the network grid, with nnU-Net v1's rules.

* Images go to the network spacing with cubic splines, label maps with a per-label linear resize
  thresholded at 0.5, probabilities come back with linear interpolation.
* When the spacing is anisotropic (largest / smallest > 3), the low-resolution axis is handled apart:
  slices are resized in-plane with the requested order and the slice axis with nearest neighbour
  (``order_z = 0``), which avoids smearing thick slices.
* Coordinates follow scikit-image's ``resize`` (pixel centres of the two grids aligned at the edges,
  ``grid_mode=True``; edge values repeated outside), as nnU-Net does.

Every function works one channel at a time, so no ``(C, ...)`` float64 temporary is ever built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "iter_resampled",
    "lowres_axis",
    "resample_volume",
    "resize_labels",
    "separate_z_axis",
]

#: nnU-Net v1's ``RESAMPLING_SEPARATE_Z_ANISO_THRESHOLD``.
ANISOTROPY_THRESHOLD = 3.0


def lowres_axis(spacing: Sequence[float]) -> int | None:
    """The single axis with the largest spacing, or None when two or three axes tie for it."""
    sp = np.asarray(spacing, dtype=np.float64)
    axes = np.flatnonzero(sp.max() / sp == 1)
    return int(axes[0]) if len(axes) == 1 else None


def separate_z_axis(
    spacing: Sequence[float], target_spacing: Sequence[float], *, threshold: float = ANISOTROPY_THRESHOLD,
) -> int | None:
    """Axis to resample apart (nearest neighbour), or None for a plain 3D resize.

    nnU-Net v1's rule: if the source spacing is anisotropic (largest / smallest > ``threshold``), its
    low-resolution axis; else if the target spacing is, that one's; a tie between two axes means no
    separate axis.
    """
    for sp in (spacing, target_spacing):
        arr = np.asarray(sp, dtype=np.float64)
        if arr.max() / arr.min() > threshold:
            return lowres_axis(tuple(float(v) for v in arr))
    return None


def _ndimage() -> Any:
    from scipy import ndimage

    return ndimage


def _zoom_factors(old: Sequence[int], new: Sequence[int]) -> tuple[float, ...]:
    return tuple(n / o for o, n in zip(old, new, strict=True))


def resample_volume(
    volume: NDArray[Any], new_shape: Sequence[int], *, order: int, separate_axis: int | None = None,
    order_z: int = 0, out: NDArray[Any] | None = None,
) -> NDArray[np.float32]:
    """Resample one 3D volume to ``new_shape`` (float32 result).

    Parameters
    ----------
    volume : ndarray of shape (Z, Y, X)
        Any real dtype; any memory layout.
    new_shape : sequence of 3 int
    order : int
        Spline order for the (in-plane) resize: 3 for images, 1 for probabilities.
    separate_axis : int, optional
        Axis resized on its own with ``order_z`` (see :func:`separate_z_axis`).
    order_z : int
        Interpolation order along ``separate_axis``.
    out : ndarray of shape new_shape, float32, optional
        Where to write the result.

    Returns
    -------
    ndarray of shape new_shape, float32
    """
    ndi = _ndimage()
    new_shape = tuple(int(s) for s in new_shape)
    if volume.ndim != 3 or len(new_shape) != 3:
        raise ValidationError(f"`volume` must be 3D and `new_shape` 3 values; got {volume.shape} -> {new_shape}.")
    if out is None:
        out = np.empty(new_shape, dtype=np.float32)
    src = volume if volume.dtype == np.float32 else volume.astype(np.float32)
    if tuple(src.shape) == new_shape:
        np.copyto(out, src)
        return out
    if order <= 1 and (separate_axis is None or order_z <= 1):
        return _resample_separable(src, new_shape, order=order, separate_axis=separate_axis, order_z=order_z,
                                   out=out)
    mode = "nearest"  # scikit-image's mode="edge"
    if separate_axis is None:
        ndi.zoom(src, _zoom_factors(src.shape, new_shape), output=out, order=order, mode=mode, grid_mode=True,
                 prefilter=order > 1)
        return out
    ax = int(separate_axis)
    # in-plane: slice by slice along `ax` (a 2D spline per slice, as nnU-Net)
    n_slices = src.shape[ax]
    inplane_new = tuple(s for i, s in enumerate(new_shape) if i != ax)
    inplane_old = tuple(s for i, s in enumerate(src.shape) if i != ax)
    mid_shape = list(new_shape)
    mid_shape[ax] = n_slices
    mid = out if n_slices == new_shape[ax] else np.empty(mid_shape, dtype=np.float32)
    factors = _zoom_factors(inplane_old, inplane_new)
    for k in range(n_slices):
        index = (slice(None),) * ax + (k,)
        sl, dst = src[index], mid[index]
        if inplane_old == inplane_new:
            dst[...] = sl
        else:
            ndi.zoom(sl, factors, output=dst, order=order, mode=mode, grid_mode=True, prefilter=order > 1)
    if mid is out:
        return out
    # along `ax`: a 1D resize with order_z (nearest neighbour by default)
    if order_z <= 1:
        np.copyto(out, _resample_axis(mid, ax, new_shape[ax], order=order_z))
        return out
    z_factors = tuple(new_shape[ax] / n_slices if i == ax else 1.0 for i in range(3))
    ndi.zoom(mid, z_factors, output=out, order=order_z, mode=mode, grid_mode=True, prefilter=order_z > 1)
    return out


def _resample_axis(src: NDArray[np.float32], axis: int, n_out: int, *, order: int) -> NDArray[np.float32]:
    """1D nearest (order 0) or linear (order 1) resize along ``axis``, edges repeated.

    The same sampling positions as ``scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")`` (pixel
    centres ``(i + 0.5) * n_in / n_out - 0.5``), computed as two gathers and a blend instead of a spline
    evaluation per voxel (2-5x faster than ``zoom`` for these orders).
    """
    n_in = src.shape[axis]
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if order == 0:
        # scipy rounds half up for order 0
        idx = np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.intp)
        nearest: NDArray[np.float32] = np.take(src, idx, axis=axis)
        return nearest
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1] * src.ndim
    shape[axis] = n_out
    w = (x - i0).astype(np.float32).reshape(shape)
    lo: NDArray[np.float32] = np.take(src, i0, axis=axis)
    hi: NDArray[np.float32] = np.take(src, i1, axis=axis)
    hi -= lo
    hi *= w
    lo += hi
    return lo


def _resample_separable(
    src: NDArray[np.float32], new_shape: tuple[int, ...], *, order: int, separate_axis: int | None, order_z: int,
    out: NDArray[np.float32],
) -> NDArray[np.float32]:
    """Orders 0/1 are separable: one 1D pass per axis that changes, shrinking axes first."""
    axes = [a for a in range(3) if src.shape[a] != new_shape[a]]
    axes.sort(key=lambda a: new_shape[a] / src.shape[a])
    cur = src
    for i, a in enumerate(axes):
        nxt = _resample_axis(cur, a, new_shape[a], order=order_z if a == separate_axis else order)
        if i == len(axes) - 1:
            np.copyto(out, nxt)
        cur = nxt
    if not axes:
        np.copyto(out, src)
    return out


def iter_resampled(
    channels: NDArray[Any], new_shape: Sequence[int], *, order: int, separate_axis: int | None = None,
    order_z: int = 0,
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Yield ``(c, channel c resampled to new_shape)`` for a ``(C, Z, Y, X)`` array, one at a time.

    The yielded float32 buffer is reused for the next channel: copy it if you keep it.
    """
    buf = np.empty(tuple(int(s) for s in new_shape), dtype=np.float32)
    for c in range(channels.shape[0]):
        resample_volume(channels[c], new_shape, order=order, separate_axis=separate_axis, order_z=order_z,
                        out=buf)
        yield c, buf


def resize_labels(
    labels: NDArray[Any], new_shape: Sequence[int], *, label_values: Sequence[int] | None = None,
) -> NDArray[np.uint8]:
    """Resize an integer label map the nnU-Net way: each label's mask linearly, kept where >= 0.5.

    Labels are written in increasing order, so where two resized masks both reach 0.5 the higher label
    wins (as ``resize_segmentation`` in nnU-Net v1). Background is 0.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), integer
    new_shape : sequence of 3 int
    label_values : sequence of int, optional
        Labels to resize (default: every nonzero label present).

    Returns
    -------
    ndarray of shape new_shape, uint8
    """
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(labels.shape) == new_shape:
        return labels.astype(np.uint8, copy=True)
    values = sorted(int(v) for v in (np.unique(labels) if label_values is None else label_values))
    out = np.zeros(new_shape, dtype=np.uint8)
    mask_f = np.empty(labels.shape, dtype=np.float32)
    resized = np.empty(new_shape, dtype=np.float32)
    for v in values:
        if v == 0:
            continue
        np.equal(labels, v, out=mask_f, casting="unsafe")
        resample_volume(mask_f, new_shape, order=1, out=resized)
        out[resized >= 0.5] = v
    return out
