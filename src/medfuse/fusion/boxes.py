"""Shapes, boxes, label maps and the shared base of the streaming accumulators (private; :mod:`.accumulators`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.labels import MAX_LABEL_CLASSES, label_dtype
from .._core.validation import as_int, as_label_map, describe, native_byteorder
from ..errors import ValidationError
from ..geometry import Box
from .uncertainty_stream import StreamingUncertainty

__all__ = ["_ROW_TARGET", "_Grid", "_as_num_classes", "_as_shape", "_box_rows", "_float_source", "_labels_checked"]

#: longest run of voxels handed to the kernel as one row (rows are split among threads)
_ROW_TARGET = 65536


def _as_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (Sequence, np.ndarray)) or isinstance(shape, (str, bytes)) or len(shape) == 0:
        raise ValidationError(f"`shape` must be a non-empty sequence of sizes, e.g. (Z, Y, X); got {describe(shape)}.")
    return tuple(as_int(s, name="shape", minimum=0) for s in shape)


def _as_num_classes(num_classes: object) -> int:
    n = as_int(num_classes, name="num_classes", minimum=1)
    if n > MAX_LABEL_CLASSES:
        raise ValidationError(f"`num_classes` must be at most {MAX_LABEL_CLASSES}; got {n}.")
    return n


def _box_rows(shape: tuple[int, ...], box: Box) -> tuple[NDArray[np.int64], int]:
    """Flat offsets of the runs of a box in a C-ordered volume, and the run length.

    A run spans axes ``j..`` of the box, where every axis after ``j`` is fully covered; ``j`` is the
    smallest such axis whose run is at most :data:`_ROW_TARGET` voxels (or the last axis).
    """
    nd = len(shape)
    sizes = [hi - lo for lo, hi in box]
    full_from = nd  # axes >= full_from are fully covered by the box
    while full_from > 0 and box[full_from - 1] == (0, shape[full_from - 1]):
        full_from -= 1
    j = nd - 1
    while j > 0 and j - 1 >= max(full_from - 1, 0) and int(np.prod(sizes[j - 1:])) <= _ROW_TARGET:
        j -= 1
    row_len = int(np.prod(sizes[j:]))
    lead = [np.arange(lo, hi) for lo, hi in box[:j]]
    if lead:
        grids = np.meshgrid(*lead, indexing="ij")
        index = [g.ravel() for g in grids]
    else:
        index = []
    n_rows = int(np.prod([len(r) for r in lead])) if lead else 1
    index.append(np.full(n_rows, box[j][0]))
    index.extend(np.zeros(n_rows, dtype=np.int64) for _ in range(j + 1, nd))
    offsets = np.ravel_multi_index(tuple(index), shape) if n_rows else np.zeros(0, dtype=np.int64)
    return np.ascontiguousarray(offsets, dtype=np.int64), row_len


def _labels_checked(label_map: ArrayLike, *, n_classes: int, name: str) -> NDArray[Any]:
    """A label map validated in full (range included) as contiguous uint8/uint16."""
    a = as_label_map(label_map, name=name)
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= n_classes:
            raise ValidationError(
                f"`{name}` holds labels in [{lo}, {hi}], but labels must be in [0, {n_classes}) "
                f"({n_classes} classes). Remap the labels, or create the accumulator with more classes."
            )
    target = label_dtype(n_classes - 1)
    if a.dtype != target:
        a = a.astype(target)
    return np.ascontiguousarray(a)


def _float_source(a: NDArray[Any]) -> NDArray[Any]:
    """A probability member as the accumulate kernel reads it: native float16/float32, C-contiguous rows."""
    a = native_byteorder(a)
    if a.dtype not in (np.float16, np.float32):
        a = a.astype(np.float32)
    if a.shape[0] and a[0].size > 1 and not a[0].flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


class _Grid:
    """What both accumulators share: the number of classes and the spatial shape they are built for."""

    _n_classes: int
    _shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return self._n_classes

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def _tracker(self, uncertainty: object, *, linear_sums: bool = False) -> StreamingUncertainty | None:
        if not isinstance(uncertainty, (bool, np.bool_)):
            raise ValidationError(f"`uncertainty` must be True or False; got {describe(uncertainty)}.")
        return StreamingUncertainty(self._n_classes, self._shape, linear_sums=linear_sums) if uncertainty else None

    def _require_tracker(self) -> StreamingUncertainty:
        unc: StreamingUncertainty | None = getattr(self, "_unc", None)
        if unc is None:
            raise ValidationError(
                f"this {type(self).__name__} keeps no uncertainty data; create it with uncertainty=True."
            )
        return unc
