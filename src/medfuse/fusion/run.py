"""What :mod:`.arrays` and :mod:`.accumulators` share: the tie rule of the vote, and one threaded run of the
fusion kernel with the checks of its results.

Kept out of :mod:`.arrays` so that the accumulators (which :mod:`.arrays` re-exports) do not import it back.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.labels import label_dtype
from .._core.validation import as_int
from ..errors import ValidationError
from .inputs import (
    SUM_TOLERANCE,
    Members,
    as_member_weights,
    check_probability_values,
    raise_for_unnormalised,
    range_limit_bits,
)

__all__ = ["CHECK_EVERY", "CHECK_SIZE", "DEFAULT_EPS", "FUSION_CHUNK", "Space", "TieRule", "product_form",
           "product_shift"]

#: How probabilities are fused: their weighted mean ("probability"), or the weighted mean of their logs
#: ("log": the weighted geometric mean; see :func:`medfuse.fusion.fuse_probabilities`).
Space = Literal["probability", "log"]
#: log space clamps every probability to at least eps before its log
DEFAULT_EPS = 1e-6

#: How :func:`majority_vote` breaks ties between labels with the same (weighted) count.
TieRule = Literal["lowest", "undecided", "first"]
_TIES: dict[str, int] = {"lowest": 0, "undecided": 1, "first": 2}

#: voxels per chunk of the fusion kernel (per thread: two float32 rows of this size, in L2)
FUSION_CHUNK = 65536
#: the class sums are checked on CHECK_SIZE voxels of every CHECK_EVERY-th chunk (3% of the voxels)
CHECK_EVERY = 2
CHECK_SIZE = 4096


def check_space(space: object, eps: object) -> tuple[bool, np.float32]:
    """Validate ``space=`` and ``eps=``; return (log space?, eps as float32)."""
    if space not in ("probability", "log"):
        raise ValidationError(
            f"`space` must be 'probability' (the weighted mean) or 'log' (the weighted geometric mean); "
            f"got {space!r}."
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise ValidationError(f"`eps` must be a number in (0, 1), e.g. eps=1e-6; got {eps!r}.")
    value = float(eps)
    if not (np.finfo(np.float32).tiny <= value < 1.0):
        raise ValidationError(
            f"`eps` must be in [{np.finfo(np.float32).tiny:.3g}, 1) (a normal float32: probabilities are "
            f"clamped to it before their log); got {eps!r}. The default is eps=1e-6."
        )
    return space == "log", np.float32(value)


@functools.lru_cache(maxsize=4)
def log_table(eps: float) -> NDArray[np.float32]:
    """The log-space table (:mod:`medfuse._kernels.spaces`): float32 ``log(max(p, eps))`` of every float16
    bit pattern ``p``, then ``log(h)`` and ``1 / h`` of every float32 ``h`` with zero low 16 bits (entries
    of non-finite values or zero: 0, unused: such members fail the range check or are clamped to eps)."""
    p = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        h = (np.arange(65536, dtype=np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
        parts = [np.log(np.maximum(p, np.float32(eps))), np.log(h).astype(np.float32), (1.0 / h).astype(np.float32)]
    tab: NDArray[np.float32] = np.concatenate(parts).astype(np.float32)
    tab[~np.isfinite(tab)] = 0.0
    tab.setflags(write=False)
    return tab


#: ln 2 in float64 (the product form's exponent shift is subtracted as ``M * s * LN2`` rounded to float32)
_LN2 = 0.6931471805599453


def product_shift(eps: float) -> tuple[int, int]:
    """The product form of log space: ``(s, K)``. A factor ``max(p, eps) * 2**s`` lies in
    ``[eps * 2**s, 2**s]``; ``s`` centres that range on 1 so that a product of up to ``K`` factors stays a
    normal float32 (no underflow, no overflow): ``s = 10``, ``K = 12`` for ``eps = 1e-6``."""
    span = -np.log2(np.float64(np.float32(eps)))
    s = int(np.round(span / 2))
    return s, int(126 // max(s, span - s, 1))


def product_form(log: bool, weights: NDArray[np.float32], eps32: np.float32) -> tuple[int, float] | None:
    """``(s, w)`` when log-space fusion takes its product form: every member has the same weight ``w`` for
    every class (after normalisation) and there are at most ``K`` members (:func:`product_shift`); else
    None. Then ``sum_m w log(max(p_m, eps)) = w (log P - M s ln 2)`` with ``P`` the float32 product of
    ``max(p_m, eps) * 2**s`` in member order, and the argmax over classes is that of ``P`` (``w > 0``)."""
    if not log or weights.size == 0:
        return None
    from .._kernels.fusion import _fuse_chunks
    from .._kernels.spaces import product_variant

    if product_variant(_fuse_chunks) is None:  # a frozen application without the kernels' sources
        return None
    s, most = product_shift(float(eps32))
    w = float(weights.flat[0])
    if weights.shape[0] > most or not w > 0 or not np.all(weights == weights.flat[0]):
        return None
    return s, w


def product_to_log_mean(mean: NDArray[np.float32], n_members: int, form: tuple[int, float]) -> None:
    """The log mean ``w (log P - M s ln 2)`` from the products ``P``, in place (float32)."""
    s, w = form
    np.log(mean, out=mean)
    mean -= np.float32(n_members * s * _LN2)
    mean *= np.float32(w)


def softmax_in_place(logs: NDArray[np.float32]) -> None:
    """``logs[:] = softmax(logs, axis=0)`` (float32), one class plane at a time (no (C, ...) temporaries)."""
    if logs.size == 0:
        return
    top = logs.max(axis=0)
    total = np.zeros_like(top)
    for plane in logs:
        plane -= top
        np.exp(plane, out=plane)
        total += plane
    logs /= total


def _run_fusion(prep: Members, weights: ArrayLike | None, *, labels: bool, mean: bool, check: bool,
                normalise: bool = True, space: Space = "probability",
                eps: float = DEFAULT_EPS) -> tuple[NDArray[Any] | None, NDArray[np.float32] | None]:
    """Run the fusion kernel; return (labels, mean) as requested, after the checks.

    ``normalise=False`` uses ``weights`` ((M, C), already valid) as they are, in float32. In log space
    the mean is the weighted mean of ``log(max(p, eps))`` (the caller turns it into probabilities).
    """
    from .._kernels.fusion import _fuse_chunks, _fuse_chunks_log
    from .._kernels.spaces import product_variant
    from .._kernels.threads import n_threads, run_ranges, split

    n_members, n_classes = prep.n_members, prep.n_classes
    log, eps32 = check_space(space, eps)
    if normalise:
        w = as_member_weights(weights, n_members=n_members, n_classes=n_classes)
        w_norm = (w / w.sum(axis=0, keepdims=True)).astype(np.float32)
    else:
        w_norm = np.ascontiguousarray(weights, dtype=np.float32)
    n_voxels = prep.n_voxels
    out = np.empty(prep.spatial_shape, dtype=label_dtype(n_classes - 1)) if labels else None
    avg = np.empty((n_classes, *prep.spatial_shape), dtype=np.float32) if mean else None
    if n_voxels == 0:
        return out, avg
    chunk = FUSION_CHUNK
    n_chunks = -(-n_voxels // chunk)
    threads = n_threads()
    ranges = split(n_chunks, threads)
    maxbits = np.zeros((len(ranges), n_members), dtype=np.uint64)
    sum_bad = np.zeros((len(ranges), n_members), dtype=np.int64)
    sum_checked = np.zeros(len(ranges), dtype=np.int64)
    form = product_form(log, w_norm, eps32)
    if form is not None:  # equal weights: the product of max(p, eps) * 2**s, no log per value
        kernel, tab = product_variant(_fuse_chunks), np.array([2.0 ** form[0]], dtype=np.float32)
        w_norm = np.ones_like(w_norm)
    else:
        kernel = _fuse_chunks_log if log else _fuse_chunks
        tab = log_table(float(eps32)) if log else np.zeros(1, np.float32)
    run_ranges(
        kernel, ranges, threads,
        prep.addrs, prep.kinds, prep.cstrides, w_norm, n_voxels, chunk, CHECK_EVERY if check else 0, CHECK_SIZE,
        np.float32(SUM_TOLERANCE),
        0 if out is None else out.ctypes.data, 0 if out is None or out.dtype == np.uint8 else 1,
        0 if avg is None else avg.ctypes.data,
        maxbits, sum_bad, sum_checked, tab, eps32,
    )
    _raise_for_bad_members(prep, maxbits.max(axis=0), sum_bad.sum(axis=0), int(sum_checked.sum()), check=check)
    if avg is not None and form is not None:
        product_to_log_mean(avg, n_members, form)
    return out, avg


def _raise_for_bad_members(prep: Members, maxbits: NDArray[np.uint64], sum_bad: NDArray[np.int64],
                           n_checked: int, *, check: bool) -> None:
    for m, a in enumerate(prep.keep):
        name = prep.names[m]
        if a.dtype.kind in "ui":  # hard member: largest label (negative labels read as huge values)
            top = int(maxbits[m])
            if top >= prep.n_classes:
                raise ValidationError(
                    f"`{name}` holds label {top}, but labels must be in [0, {prep.n_classes}) "
                    f"({prep.n_classes} classes). Pass the right `num_classes`, or remap the labels."
                )
            continue
        if not check:
            continue
        if int(maxbits[m]) > range_limit_bits(a.itemsize):
            check_probability_values(a, name)  # exact re-check; false alarms (-0.0, -1e-9) pass
        if sum_bad[m] > 0:
            raise_for_unnormalised(a, name, int(sum_bad[m]), n_checked)


def _tie_code(tie: object) -> int:
    if not isinstance(tie, str) or tie not in _TIES:
        raise ValidationError(f"`tie` must be one of {sorted(_TIES)}; got {tie!r}.")
    return _TIES[tie]


def _undecided_label(undecided_label: object, tie: object) -> int | None:
    if undecided_label is None:
        return None
    if tie != "undecided":
        raise ValidationError(
            f"`undecided_label` is only used with tie='undecided'; got tie={tie!r}. Drop it, or pass "
            "tie='undecided'."
        )
    value = as_int(undecided_label, name="undecided_label", minimum=0)
    if value > 65535:
        raise ValidationError(f"`undecided_label` must be at most 65535; got {value}.")
    return value
