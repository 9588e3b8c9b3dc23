"""Validation and conversion of fusion inputs into kernel arguments (private; see :mod:`medfuse.fusion`).

The fusion kernels read members by address (:mod:`medfuse._kernels.raw`). Everything that could make
such a read wrong is settled here, before any kernel runs: dtypes, byte order, layout, shapes, weights.
No member is copied unless it has to be, and the copies are listed here:

* a probability member whose spatial block is not C-contiguous (Fortran order, a strided crop, ...) is
  copied to C order (one member-sized allocation, freed after the call); a channel-strided view such as
  ``stack[m]`` or ``probs[:, ...]`` of a C-contiguous array is *not* copied;
* big-endian data is converted to native byte order (a copy);
* float64 (and other non-float16/float32) probabilities are converted to float32 (a copy);
* label maps of 4- or 8-byte integer dtypes are range-checked and converted to uint8 (uint16 above 256
  classes); int8 / int16 maps are range-checked and viewed as uint8 / uint16 (no copy); bool maps are
  viewed as uint8.
Read-only arrays are read in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.validation import as_int, describe, native_byteorder
from .._kernels.kinds import KIND_F16, KIND_F32, KIND_U8, KIND_U16, ONE_BITS
from ..errors import ValidationError

__all__ = [
    "MAX_CLASSES",
    "RANGE_TOLERANCE",
    "SUM_TOLERANCE",
    "Members",
    "as_member_weights",
    "check_probability_values",
    "label_dtype_for",
    "prepare_label_maps",
    "prepare_members",
    "raise_for_unnormalised",
    "raise_for_zero_weight_classes",
    "range_limit_bits",
]

#: largest number of classes (labels are written as uint16)
MAX_CLASSES = 65536
#: probabilities may stray this far outside ``[0, 1]`` (rounding of stored float16/float32 values)
RANGE_TOLERANCE = 1e-3
#: class probabilities of a voxel may sum to ``1 +- SUM_TOLERANCE`` (float16 storage rounds each value)
SUM_TOLERANCE = 1e-2

_SOFTMAX_HINT = "apply `medfuse.softmax(logits, axis=0)` first"


def label_dtype_for(largest_label: int) -> type[np.unsignedinteger[Any]]:
    """uint8 when every label fits in it, else uint16."""
    return np.uint8 if largest_label <= 255 else np.uint16


def range_limit_bits(itemsize: int) -> int:
    """Largest raw bit pattern of a float of ``itemsize`` bytes whose value is ``<= 1 + RANGE_TOLERANCE``."""
    ftype = np.float16 if itemsize == 2 else np.float32
    utype = np.uint16 if itemsize == 2 else np.uint32
    limit = np.asarray(1.0 + RANGE_TOLERANCE, dtype=ftype)
    bits = int(limit.view(utype))
    if float(limit) > 1.0 + RANGE_TOLERANCE:
        bits -= 1
    return max(bits, ONE_BITS[8 * itemsize])


@dataclass
class Members:
    """Members ready for the fusion kernel; ``keep`` holds every array whose address is passed."""

    keep: list[NDArray[Any]]
    addrs: NDArray[np.int64]
    kinds: NDArray[np.int64]
    cstrides: NDArray[np.int64]
    spatial_shape: tuple[int, ...]
    n_classes: int
    names: list[str]
    signed: list[bool] = field(default_factory=list)

    @property
    def n_members(self) -> int:
        return len(self.keep)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.spatial_shape, dtype=np.int64))


def _as_members_list(members: object, *, name: str) -> list[tuple[str, NDArray[Any]]]:
    """``members`` as (name, array) pairs: a sequence of arrays, or the leading axis of one array."""
    if isinstance(members, np.ndarray):
        if members.ndim < 2:
            raise ValidationError(
                f"`{name}` given as one array must be a stack of shape (M, C, ...) (probabilities) or "
                f"(M, ...) (label maps); got {describe(members)}. Pass a list of members instead."
            )
        return [(f"{name}[{m}]", members[m]) for m in range(members.shape[0])] or _empty(name)
    if isinstance(members, (str, bytes)) or not isinstance(members, Sequence):
        raise ValidationError(
            f"`{name}` must be a sequence of arrays (or one stacked array); got {describe(members)}."
        )
    out = []
    for m, x in enumerate(members):
        a = np.asarray(x)
        if a.dtype == object:
            raise ValidationError(f"`{name}[{m}]` must be a numeric array; got {describe(x)}.")
        out.append((f"{name}[{m}]", a))
    return out or _empty(name)


def _empty(name: str) -> list[tuple[str, NDArray[Any]]]:
    raise ValidationError(f"`{name}` must hold at least one member; got none.")


def _c_contiguous_spatial(a: NDArray[Any]) -> bool:
    """Whether every channel of a (C, ...) array is one C-contiguous block (channel stride free)."""
    if a.shape[0] == 0 or a[0].size <= 1:
        return True
    return bool(a[0].flags.c_contiguous)


def _hard_member(a: NDArray[Any], name: str, n_classes: int | None) -> tuple[NDArray[Any], bool]:
    """A label map as uint8/uint16 (view or checked copy); returns (array, was_signed)."""
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    a = native_byteorder(a)
    signed = a.dtype.kind == "i"
    if a.dtype.itemsize <= 2:
        if signed and a.size and int(a.min()) < 0:
            raise ValidationError(
                f"`{name}` holds negative labels (smallest {int(a.min())}); labels must be in "
                f"[0, {n_classes if n_classes is not None else 'num_classes'})."
            )
        a = a.view(np.uint8 if a.dtype.itemsize == 1 else np.uint16)
    else:
        lo = int(a.min()) if a.size else 0
        hi = int(a.max()) if a.size else 0
        limit = n_classes if n_classes is not None else MAX_CLASSES
        if lo < 0 or hi >= limit:
            raise ValidationError(
                f"`{name}` holds labels in [{lo}, {hi}]; labels must be in [0, {limit}). "
                + ("Pass the right `num_classes`, or remap the labels." if n_classes is not None else
                   "Remap the labels.")
            )
        a = a.astype(label_dtype_for(max(hi, (n_classes or 1) - 1)))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a, signed


def prepare_members(members: object, *, num_classes: int | None, name: str = "members") -> Members:
    """Validate probability members (and hard label-map members) for the fusion kernel."""
    pairs = _as_members_list(members, name=name)
    n_cls = None if num_classes is None else as_int(num_classes, name="num_classes", minimum=1)
    if n_cls is not None and n_cls > MAX_CLASSES:
        raise ValidationError(f"`num_classes` must be at most {MAX_CLASSES}; got {n_cls}.")

    probs = [(nm, a) for nm, a in pairs if a.dtype.kind in "fc"]
    for nm, a in probs:
        if a.dtype.kind == "c":
            raise ValidationError(f"`{nm}` must hold real probabilities; got {describe(a)}.")
        if a.ndim < 2:
            raise ValidationError(
                f"`{nm}` is a probability member and must have shape (C, Z, Y, X) (a class axis first, then "
                f"at least one spatial axis); got {describe(a)}."
            )
    for nm, a in pairs:
        if a.dtype.kind not in "fcbiu":
            raise ValidationError(
                f"`{nm}` must be class probabilities (float16/float32) or an integer label map; got "
                f"{describe(a)}."
            )

    if probs:
        ref_name, ref = probs[0]
        spatial = tuple(ref.shape[1:])
        n_prob_classes = ref.shape[0]
        if n_prob_classes < 1:
            raise ValidationError(f"`{ref_name}` has no class channel (shape {ref.shape}); C must be >= 1.")
        for nm, a in probs[1:]:
            if a.shape[0] != n_prob_classes:
                raise ValidationError(
                    f"`{nm}` has {a.shape[0]} classes (shape {a.shape}), but `{ref_name}` has {n_prob_classes}: "
                    "every probability member must have the same number of classes."
                )
        if n_cls is not None and n_cls != n_prob_classes:
            raise ValidationError(
                f"`num_classes` ({n_cls}) does not match the probability members, which have "
                f"{n_prob_classes} classes (`{ref_name}` has shape {ref.shape})."
            )
        n_cls = n_prob_classes
    else:
        ref_name, ref = pairs[0]
        spatial = tuple(ref.shape)
    if n_cls is not None and n_cls > MAX_CLASSES:
        raise ValidationError(f"at most {MAX_CLASSES} classes are supported; got {n_cls}.")

    for nm, a in pairs:
        got = tuple(a.shape[1:]) if a.dtype.kind == "f" else tuple(a.shape)
        if got != spatial:
            what = "probability member (C, ...)" if a.dtype.kind == "f" else "label map"
            raise ValidationError(
                f"`{nm}` ({what}) has shape {a.shape}, but `{ref_name}` has spatial shape {spatial}: every "
                "member must cover the same voxels. Resample or crop the members onto one grid (a label map "
                "has no class axis)."
            )

    if n_cls is None:  # hard members only: classes from the largest label
        tops = [int(a.max()) for _, a in pairs if a.size]
        n_cls = max(tops, default=0) + 1
        if n_cls > MAX_CLASSES:
            raise ValidationError(f"labels must be below {MAX_CLASSES}; the largest is {n_cls - 1}.")

    keep: list[NDArray[Any]] = []
    kinds: list[int] = []
    cstrides: list[int] = []
    signed: list[bool] = []
    for nm, a in pairs:
        if a.dtype.kind == "f":
            if a.dtype not in (np.float16, np.float32) or not a.dtype.isnative:
                a = native_byteorder(a)
                if a.dtype != np.float16:
                    a = a.astype(np.float32)
            if not _c_contiguous_spatial(a):
                a = np.ascontiguousarray(a)
            kinds.append(KIND_F16 if a.dtype == np.float16 else KIND_F32)
            cstrides.append(a.strides[0] // a.itemsize if a.shape[0] > 1 else 0)
            signed.append(False)
        else:
            a, was_signed = _hard_member(a, nm, n_cls)
            kinds.append(KIND_U8 if a.dtype == np.uint8 else KIND_U16)
            cstrides.append(0)
            signed.append(was_signed)
        keep.append(a)
    addrs = np.array([a.ctypes.data for a in keep], dtype=np.int64)
    return Members(keep, addrs, np.array(kinds, dtype=np.int64), np.array(cstrides, dtype=np.int64), spatial,
                   int(n_cls), [nm for nm, _ in pairs], signed)


def as_member_weights(weights: ArrayLike | None, *, n_members: int, n_classes: int,
                      name: str = "weights") -> NDArray[np.float64]:
    """Non-negative ``(M, C)`` weights (``(M,)`` broadcast over classes), validated, not normalised."""
    if weights is None:
        return np.ones((n_members, n_classes))
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(
            f"`{name}` must be numbers of shape ({n_members},) or ({n_members}, {n_classes}); got "
            f"{describe(weights)}."
        ) from None
    if w.ndim == 1 and w.shape[0] == n_members:
        w = np.repeat(w[:, None], n_classes, axis=1)
    elif w.ndim != 2 or w.shape != (n_members, n_classes):
        raise ValidationError(
            f"`{name}` must have one entry per member, shape ({n_members},), or one per member and class, "
            f"shape ({n_members}, {n_classes}); got shape {w.shape}."
        )
    if not np.all(np.isfinite(w)):
        raise ValidationError(f"`{name}` must be finite; got {w.tolist()}.")
    if np.any(w < 0):
        raise ValidationError(f"`{name}` must be non-negative; got {w.tolist()}.")
    if not np.any(w > 0):
        raise ValidationError(f"`{name}` must not be all zero; got {w.tolist()}.")
    raise_for_zero_weight_classes(w.sum(axis=0), name=name)
    return w


def raise_for_zero_weight_classes(totals: NDArray[Any], *, name: str = "weights") -> None:
    """Refuse classes whose weight is zero in every member (``totals``: the per-class weight sums)."""
    zero = np.flatnonzero(np.asarray(totals) <= 0)
    if zero.size:
        raise ValidationError(
            f"`{name}` gives class(es) {zero.tolist()} zero weight in every member, so their mean is "
            "undefined; give each class a positive weight in at least one member."
        )


def _first_where(mask: NDArray[np.bool_], a: NDArray[Any]) -> str:
    """``value at index (i, j, ...)`` of the first True of ``mask``, for error messages."""
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(mask.reshape(-1))), mask.shape))
    return f"{a[index]!r} at index {index}" if index else f"{a[()]!r}"


def check_probability_values(a: NDArray[Any], name: str, *, subject: str | None = None) -> None:
    """Exact check of one flagged member: finite and within ``[0, 1]`` (tolerance :data:`RANGE_TOLERANCE`).

    ``subject`` replaces the backquoted ``name`` at the start of the message (folder paths name the case and file).
    """
    who = f"`{name}`" if subject is None else subject
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(a.size - np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(a)))
        raise ValidationError(
            f"{who} holds {bad} non-finite value(s) (NaN or infinity: {n_nan} NaN, {bad - n_nan} infinite; the "
            f"first is {_first_where(~finite, a)}); probabilities must be finite. Check the model output or the "
            "file it came from."
        )
    lo = float(a.min()) if a.size else 0.0
    hi = float(a.max()) if a.size else 0.0
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise ValidationError(
            f"{who} does not hold probabilities: its values range over [{lo:.4g}, {hi:.4g}], but "
            f"probabilities lie in [0, 1]. If these are logits, {_SOFTMAX_HINT}."
        )


def raise_for_unnormalised(a: NDArray[Any] | None, name: str, n_bad: int, n_checked: int, *,
                           subject: str | None = None, sums: NDArray[Any] | None = None) -> None:
    """Error for a member whose class probabilities do not sum to 1 on ``n_bad`` of ``n_checked`` voxels.

    The range of the sums is computed over the whole member ``a``, or given as the sampled ``sums`` (streamed
    members, whose whole array is never held).
    """
    who = f"`{name}`" if subject is None else subject
    if sums is None:
        if a is None:  # pragma: no cover - callers pass one of them
            raise ValueError("raise_for_unnormalised needs the member or the sampled sums")
        sums = np.asarray(a, dtype=np.float32).reshape(a.shape[0], -1).sum(axis=0, dtype=np.float32)
        where = "on the whole member"
    else:
        where = "on the sampled voxels"
    lo, hi = (float(sums.min()), float(sums.max())) if sums.size else (1.0, 1.0)
    raise ValidationError(
        f"{who}: class probabilities must sum to 1 at every voxel (within {SUM_TOLERANCE}); they do not on "
        f"{n_bad} of {n_checked} sampled voxels, and range over [{lo:.4g}, {hi:.4g}] {where}. For unnormalised "
        f"scores or logits, {_SOFTMAX_HINT}; per-class sigmoid outputs (regions) cannot be averaged as class "
        "probabilities."
    )


@dataclass
class LabelMaps:
    """Label maps ready for the vote kernel (one dtype for all); ``keep`` holds the arrays."""

    keep: list[NDArray[Any]]
    addrs: NDArray[np.int64]
    dtype: type[np.unsignedinteger[Any]]
    shape: tuple[int, ...]
    names: list[str]
    largest: int | None  # largest label when it was computed during preparation


def prepare_label_maps(label_maps: object, *, num_classes: int | None, name: str = "label_maps") -> LabelMaps:
    """Validate M label maps of one shape and bring them to one unsigned dtype (uint8 or uint16)."""
    pairs = _as_members_list(label_maps, name=name)
    ref_name, ref = pairs[0]
    for nm, a in pairs:
        if a.dtype.kind not in "biu":
            raise ValidationError(
                f"`{nm}` must be an integer or boolean label map; got {describe(a)}. Convert probabilities "
                "to labels first (e.g. `probs.argmax(0)`), or fuse them with `fuse_probabilities`."
            )
        if a.shape != ref.shape:
            raise ValidationError(
                f"`{nm}` has shape {a.shape}, but `{ref_name}` has {ref.shape}: every label map must have the "
                "same shape. Resample or crop them onto one grid."
            )
    small = (np.dtype(np.bool_), np.dtype(np.uint8))
    largest: int | None = None
    if all(a.dtype in small for _, a in pairs):
        dtype: type[np.unsignedinteger[Any]] = np.uint8  # labels checked by the kernel
    elif all(a.dtype in small or a.dtype == np.uint16 for _, a in pairs):
        dtype = np.uint16  # labels checked by the kernel; the largest is needed now only to size the output
        if num_classes is None:
            largest = max((int(a.max()) for _, a in pairs if a.size), default=0)
    else:  # other integer dtypes: one numpy range pass, then a conversion
        los = [int(a.min()) if a.size else 0 for _, a in pairs]
        his = [int(a.max()) if a.size else 0 for _, a in pairs]
        if min(los) < 0:
            culprit = pairs[int(np.argmin(los))][0]
            raise ValidationError(f"`{culprit}` holds negative labels (smallest {min(los)}); labels must be >= 0.")
        largest = max(his)
        limit = num_classes if num_classes is not None else MAX_CLASSES
        if largest >= limit:
            culprit = pairs[int(np.argmax(his))][0]
            raise ValidationError(
                f"`{culprit}` holds label {largest}, but labels must be in [0, {limit}). "
                + ("Pass the right `num_classes`, or remap the labels." if num_classes is not None else
                   "Remap the labels.")
            )
        dtype = label_dtype_for(largest)
    keep = []
    for _, a in pairs:
        if a.dtype == np.bool_:
            a = a.view(np.uint8)
        if a.dtype != dtype:
            a = a.astype(dtype)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        keep.append(a)
    addrs = np.array([a.ctypes.data for a in keep], dtype=np.int64)
    return LabelMaps(keep, addrs, dtype, tuple(ref.shape), [nm for nm, _ in pairs], largest)
