"""Input of a cascade full-resolution network: the low-resolution segmentation as extra channels.

The full-res network of an nnU-Net v1 cascade reads the image channels followed by a one-hot encoding of
labels ``1..K`` (no background channel) of the low-res stage's segmentation, on the full-res network grid.
The segmentation is a label map in the ORIGINAL image geometry; the image was cropped to its nonzero box
before resampling, so the segmentation must be cropped to the same box before it is resized onto that grid.

PaddleSeg MedicalSeg's (and nnU-Net v1's) test-time code resizes the whole, uncropped map onto the cropped
grid: whenever the crop box is not the whole image, the network sees the low-res organs shifted and
stretched. :func:`cascade_channels` crops first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.validation import as_label_map, describe
from ..errors import GeometryMismatchError, ValidationError
from ..geometry import crop_to_box
from .resample import resize_labels

__all__ = ["cascade_channels"]


def cascade_channels(
    lowres_labels: NDArray[Any],
    *,
    crop_bbox: Sequence[Sequence[int]],
    grid_shape: Sequence[int],
    num_classes: int,
    transpose_forward: Sequence[int] = (0, 1, 2),
    out: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """One-hot channels of labels ``1..num_classes`` of the low-res segmentation on the network grid.

    Parameters
    ----------
    lowres_labels : ndarray of shape (Z, Y, X), integer
        The low-res stage's label map in the original image geometry (same shape as the image).
    crop_bbox : sequence of (start, stop)
        The image's nonzero crop box (array order, half-open), from preprocessing.
    grid_shape : sequence of 3 int
        Spatial shape of the preprocessed image (transposed order).
    num_classes : int
        Foreground labels ``K``; the result has K channels.
    transpose_forward : sequence of 3 int
        The plans' axis permutation.
    out : ndarray of shape (K, *grid_shape), float32, optional
        Where to write (e.g. the trailing channels of the network input).

    Returns
    -------
    ndarray of shape (K, *grid_shape), float32 of zeros and ones
    """
    labels = as_label_map(lowres_labels, name="lowres_labels", ndim=3)
    if num_classes < 1:
        raise ValidationError(f"`num_classes` must be >= 1; got {num_classes}.")
    if labels.size:
        top = int(labels.max())
        if top > num_classes or int(labels.min()) < 0:
            raise ValidationError(
                f"`lowres_labels` must hold labels 0..{num_classes} (the plans' classes); got values up to "
                f"{top}. Is it the low-res prediction of the same task?"
            )
    cropped = crop_to_box(labels, crop_bbox)
    tf = tuple(int(a) for a in transpose_forward)
    resized = resize_labels(cropped.transpose(tf), grid_shape, label_values=range(1, num_classes + 1))
    shape = (num_classes, *(int(s) for s in grid_shape))
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise GeometryMismatchError(f"`out` must be a float32 array of shape {shape}; got {describe(out)}.")
    for k in range(num_classes):
        np.equal(resized, k + 1, out=out[k], casting="unsafe")
    return out
