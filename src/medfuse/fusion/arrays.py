"""Fusion of ensemble members: probability averaging, argmax fusion, majority / weighted vote.

* :func:`fuse_probabilities` — label map of the (weighted) mean of the members' class probabilities, in
  one parallel pass that reads each member once and allocates only the output (no ``(M, C, ...)`` stack,
  no float32 ``(C, ...)`` mean); float16 members are read as fast as float32 per byte.
* :func:`average_probabilities` — the (weighted) mean itself, float32 ``(C, ...)``.
* :func:`majority_vote` — plain or weighted vote of label maps in one pass, without one-hot counts.
* :class:`ProbabilityAccumulator`, :class:`VoteAccumulator` — the same, one member (or one class
  channel) at a time, for folders of cases: memory does not depend on the number of members.
* :func:`softmax` — logits to probabilities.

Members are given as a sequence of arrays (never stacked) or as one stacked array. A probability member
is ``(C, Z, Y, X)`` float16/float32 (any spatial rank works); an integer or bool ``(Z, Y, X)`` array in
the same sequence is a *hard* member: it counts as the one-hot of its labels (never materialised) with
its weight. Weights are ``(M,)`` per member or ``(M, C)`` per member and class, non-negative, and are
normalised per class: the fused probability of class ``c`` is ``sum_m w[m, c] p_m[c] / sum_m w[m, c]``.

Arithmetic and ties
    Sums run in float32 in member order: ``acc = 0; acc += (w[m, c] / W_c) * p_m[c]`` with the
    normalised weight rounded to float32 first. The argmax takes the lowest class index on exact ties
    (numpy's ``argmax`` rule). Averaging float16 data in float16 would flip voxels; medfuse never does.

What is checked (and what it costs)
    Every probability value is checked to be finite and within ``[0, 1]`` (tolerance
    :data:`RANGE_TOLERANCE`): the kernel keeps the maximum of the raw bit patterns, one integer ``max``
    per value, hidden by the memory-bound loop. Class sums (``1 +- SUM_TOLERANCE``) are checked on a
    sample: ``CHECK_SIZE`` voxels of every ``CHECK_EVERY``-th chunk of ``FUSION_CHUNK`` voxels (in
    :mod:`.run`; 3% of the voxels, at offsets that move through the volume), re-read after the chunk: 2-4%
    of the fusion time. Logits fail the range check (their error points to :func:`softmax`), as do NaN
    and infinity; unnormalised or sigmoid outputs fail the sum check. Pass
    ``check=False`` to skip both. Hard members' labels are checked exhaustively (``0 <= label < C``).

Log space
    ``space="log"`` fuses ``L[c] = sum_m (w[m, c] / W_c) * log(max(p_m[c], eps))`` instead: the argmax of
    the weighted geometric mean of the members' probabilities (a class must be likely in *every* member;
    one confident "no" vetoes it, down to ``eps``). For softmax members ``p_m = softmax(z_m)``,
    ``log p_m[c] = z_m[c] - logsumexp(z_m)`` and the second term is the same for every class, so (as long
    as no probability falls below ``eps``) the argmax equals that of ``sum_m w_m z_m``: averaging the
    members' logits, which is what nnU-Net v2 does across folds. ``log(max(p, eps))`` is numpy's float32
    log for float16 members (a 65536-entry table, exact) and, for float32 members, the log of the value
    cut to its top 16 bits (table) plus a cubic ``log1p`` of the rest (~1e-9 from numpy's float64 log;
    :mod:`medfuse._kernels.spaces`); sums run as in probability space.
    A hard member adds ``w * log(1) = 0`` for its label and ``w * log(eps)`` for the others.
    With equal weights (and at most 12 members at ``eps=1e-6``) the sum of logs is taken as the log of a
    product: the kernel multiplies ``max(p, eps) * 2**s`` in member order (``2**s`` keeps the product a
    normal float32; :func:`medfuse.fusion.run.product_form`), the labels are the product's argmax and the
    log mean ``w (log P - M s ln 2)``: no log per value, so log space runs at the linear mean's speed.
    It differs from the sum of logs in float32 rounding only.

Input layouts
    Any strides, Fortran order, big-endian and read-only arrays work; see :mod:`medfuse.fusion.inputs`
    for which ones are copied and which are read in place. Every copy is member-sized and all of them are
    held until the call returns: four Fortran-order members peaked at 4.3 member copies.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.labels import label_dtype
from .._core.typing import LabelArray, LabelMembers, ProbMembers
from .._core.validation import as_int, describe
from ..errors import ValidationError
from .inputs import (
    as_member_weights,
    prepare_label_maps,
    prepare_members,
)
from .run import _TIES, DEFAULT_EPS, Space, TieRule, _run_fusion, _tie_code, _undecided_label, softmax_in_place
from .uncertainty import UncertaintyMaps, run_uncertainty

# the package's other public names live in their own modules (medfuse.fusion exports them all)
__all__ = ["average_probabilities", "fuse_probabilities", "majority_vote", "softmax"]

#: voxels per chunk of the vote kernel
VOTE_CHUNK = 8192


@overload
def fuse_probabilities(
    members: ProbMembers, *, weights: ArrayLike | None = ..., num_classes: int | None = ..., check: bool = ...,
    space: Space = ..., eps: float = ..., return_uncertainty: Literal[False] = ...,
) -> LabelArray: ...


@overload
def fuse_probabilities(
    members: ProbMembers, *, weights: ArrayLike | None = ..., num_classes: int | None = ..., check: bool = ...,
    space: Space = ..., eps: float = ..., return_uncertainty: Literal[True],
) -> tuple[LabelArray, UncertaintyMaps]: ...


@overload
def fuse_probabilities(
    members: ProbMembers, *, weights: ArrayLike | None = ..., num_classes: int | None = ..., check: bool = ...,
    space: Space = ..., eps: float = ..., return_uncertainty: bool,
) -> LabelArray | tuple[LabelArray, UncertaintyMaps]: ...


def fuse_probabilities(
    members: ProbMembers, *, weights: ArrayLike | None = None, num_classes: int | None = None,
    check: bool = True, space: Space = "probability", eps: float = DEFAULT_EPS, return_uncertainty: bool = False,
) -> LabelArray | tuple[LabelArray, UncertaintyMaps]:
    """Label map of the (weighted) mean of the members' class probabilities, in one fused pass.

    Parameters
    ----------
    members : sequence of ndarray of shape (C, Z, Y, X), or ndarray of shape (M, C, Z, Y, X)
        Class probabilities of each member (float16 or float32; float64 is converted), same shape. An
        integer or bool array of shape (Z, Y, X) in the sequence is a hard member: the one-hot of its
        labels, with its weight. Any spatial rank works.
    weights : array_like of shape (M,) or (M, C), optional
        Non-negative member (or member-by-class) weights, normalised per class; equal when omitted.
    num_classes : int, optional
        Number of classes C; required only when every member is a label map (else the largest label
        + 1 is used); must equal the probability members' C when given.
    check : bool, default True
        Check the probabilities (finite, in [0, 1], summing to 1 on a sample of voxels; see the module
        docstring). Hard members' labels are always checked. The checks are the same in both spaces.
    space : {"probability", "log"}, default "probability"
        Fuse the weighted mean of the probabilities, or the weighted mean of ``log(max(p, eps))`` (the
        weighted geometric mean; see *Log space* in the module docstring).
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.
    return_uncertainty : bool, default False
        Also compute the uncertainty maps in the same pass and return ``(labels, maps)``
        (see :func:`~medfuse.fusion.fusion_uncertainty`; the labels are the same, bit for bit).

    Returns
    -------
    ndarray of shape (Z, Y, X), uint8 (uint16 above 256 classes)
        Index of the largest weighted mean; ties go to the lowest class index.
    UncertaintyMaps
        With ``return_uncertainty=True`` only: the maps and counts, second in a tuple.

    Raises
    ------
    ValidationError
        Empty ``members``, mismatched shapes or class counts, bad weights, labels out of range,
        values that are not probabilities (logits, NaN, unnormalised).

    Notes
    -----
    Extra memory is the output plus about 0.5 MiB per thread, whatever the number of members (members
    that need a layout or dtype conversion are copied first: see :mod:`medfuse.fusion.inputs`). With
    ``return_uncertainty=True``, add the three float32 maps (12 bytes a voxel).
    """
    if not isinstance(return_uncertainty, (bool, np.bool_)):
        raise ValidationError(f"`return_uncertainty` must be True or False; got {describe(return_uncertainty)}.")
    prep = prepare_members(members, num_classes=num_classes)
    if return_uncertainty:
        return run_uncertainty(prep, weights, check=check, space=space, eps=eps)
    labels, _ = _run_fusion(prep, weights, labels=True, mean=False, check=check, space=space, eps=eps)
    if labels is None:  # pragma: no cover - _run_fusion always returns them when asked
        raise RuntimeError("fusion kernel returned no labels")
    return labels


def average_probabilities(
    members: ProbMembers, *, weights: ArrayLike | None = None, num_classes: int | None = None,
    check: bool = True, space: Space = "probability", eps: float = DEFAULT_EPS,
) -> NDArray[np.float32]:
    """The (weighted, per-class normalised) mean of the members' class probabilities.

    Parameters
    ----------
    members : sequence of ndarray of shape (C, Z, Y, X), or ndarray of shape (M, C, Z, Y, X)
        As for :func:`fuse_probabilities` (hard members included).
    weights : array_like of shape (M,) or (M, C), optional
        Non-negative member (or member-by-class) weights, normalised per class; equal when omitted.
    num_classes : int, optional
        As for :func:`fuse_probabilities`.
    check : bool, default True
        Check the probabilities (see the module docstring).
    space : {"probability", "log"}, default "probability"
        As for :func:`fuse_probabilities`.
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.

    Returns
    -------
    ndarray of shape (C, Z, Y, X), float32
        Probability space: ``sum_m (w[m, c] / sum_k w[k, c]) * p_m[c]``, summed in float32 in member
        order. Log space: the *normalised* weighted geometric mean, ``softmax`` over classes of
        ``L[c] = sum_m (w[m, c] / sum_k w[k, c]) * log(max(p_m[c], eps))`` (a probability map again, each
        voxel summing to 1). ``average_probabilities(m, space=s).argmax(0)`` equals
        ``fuse_probabilities(m, space=s)`` (up to float32 rounding of the softmax in log space).
    """
    # the same three steps as fuse_probabilities, asking for the mean instead of the labels (kept apart: the two
    # results have different types)
    prep = prepare_members(members, num_classes=num_classes)
    _, mean = _run_fusion(prep, weights, labels=False, mean=True, check=check, space=space, eps=eps)
    if mean is None:  # pragma: no cover - _run_fusion always returns it when asked
        raise RuntimeError("fusion kernel returned no mean")
    if space == "log":
        softmax_in_place(mean)
    return mean



def majority_vote(
    label_maps: LabelMembers, *, weights: ArrayLike | None = None, num_classes: int | None = None,
    tie: TieRule = "lowest", undecided_label: int | None = None,
) -> LabelArray:
    """Plain or weighted majority vote of label maps, in one pass without one-hot counts.

    Parameters
    ----------
    label_maps : sequence of ndarray of shape (Z, Y, X), or ndarray of shape (M, Z, Y, X)
        Integer or bool label maps of the same shape (any spatial rank).
    weights : array_like of shape (M,), optional
        Non-negative vote weight of each member (not all zero); one vote each when omitted.
    num_classes : int, optional
        Labels must be in ``[0, num_classes)``; by default any label up to the largest present.
    tie : {"lowest", "undecided", "first"}, default "lowest"
        Rule when labels share the best (weighted) count: the lowest label (numpy ``argmax``,
        scipy, MONAI); ``undecided_label`` (SimpleITK ``LabelVoting``); or the label of the earliest
        member among the tied labels.
    undecided_label : int, optional
        Label written on ties with ``tie="undecided"``; default ``num_classes`` (or the largest
        label + 1), like SimpleITK.

    Returns
    -------
    ndarray of shape (Z, Y, X), uint8 (uint16 when a label or ``undecided_label`` exceeds 255)
        The voted label of each voxel.

    Notes
    -----
    Weighted counts are float64 sums in member order, compared exactly (two labels tie only when their
    summed weights are bit-identical). uint8 and bool maps are read in place; other dtypes cost one
    numpy range pass and a conversion (see :mod:`medfuse.fusion.inputs`).
    """
    from .._kernels.threads import n_threads, run_ranges, split
    from .._kernels.vote import PAIRWISE_FROM, _vote_chunks

    tie_code = _tie_code(tie)
    n_cls = None if num_classes is None else as_int(num_classes, name="num_classes", minimum=1)
    maps = prepare_label_maps(label_maps, num_classes=n_cls)
    n_members = len(maps.keep)
    undecided = _undecided_label(undecided_label, tie)
    if weights is None:
        w: NDArray[Any] = np.ones(n_members, dtype=np.uint8 if n_members <= 255 else np.int32)
        # [half, zero, pairwise threshold, candidates]: a strict majority is held by one of the first
        # ceil(M / 2) members (see medfuse._kernels.vote)
        params = np.array([n_members // 2, 0, PAIRWISE_FROM, n_members - n_members // 2], dtype=w.dtype)
    else:
        w1 = np.asarray(weights, dtype=object)
        if w1.ndim != 1:
            raise ValidationError(
                f"`weights` must have one entry per member, shape ({n_members},); got {describe(weights)}. "
                "Per-class weights are not defined for a vote."
            )
        w = as_member_weights(weights, n_members=n_members, n_classes=1)[:, 0]
        half = float(w.sum()) / 2.0
        # margin: float sums may round up; weighted votes never take the pairwise path
        params = np.array([half * (1.0 + 1e-9) + 1e-300, 0.0, 0.0, float(n_members)])
    known_top = n_cls - 1 if n_cls is not None else maps.largest
    if undecided is None and tie_code == _TIES["undecided"]:
        if known_top is None:  # uint8 maps, no num_classes: the largest label is needed now
            known_top = max((int(a.max()) for a in maps.keep if a.size), default=0)
        undecided = known_top + 1
    out_top = max(known_top if known_top is not None else 255, undecided or 0)
    out = np.empty(maps.shape, dtype=label_dtype(out_top))
    n_voxels = out.size
    if n_voxels == 0:
        return out
    n_chunks = -(-n_voxels // VOTE_CHUNK)
    threads = n_threads()
    ranges = split(n_chunks, threads)
    max_label = np.zeros(len(ranges), dtype=np.int64)
    n_slow = np.zeros(len(ranges), dtype=np.int64)
    itemsize = np.dtype(maps.dtype).itemsize
    run_ranges(
        _vote_chunks, ranges, threads,
        maps.addrs, maps.dtype, itemsize, w, params, 256 if itemsize == 1 else 65536, n_voxels, VOTE_CHUNK,
        tie_code, -1 if undecided is None else undecided, out.ctypes.data, 0 if out.dtype == np.uint8 else 1,
        max_label, n_slow,
    )
    top = int(max_label.max())
    if n_cls is not None and top >= n_cls:
        culprit = next(nm for nm, a in zip(maps.names, maps.keep, strict=True) if a.size and int(a.max()) == top)
        raise ValidationError(
            f"`{culprit}` holds label {top}, but labels must be in [0, {n_cls}). Pass the right "
            "`num_classes`, or remap the labels."
        )
    return out


def softmax(logits: ArrayLike, *, axis: int = 0) -> NDArray[np.float32]:
    """Softmax of logits along ``axis`` (the class axis), in float32.

    Parameters
    ----------
    logits : array_like of shape (C, Z, Y, X)
        Real-valued, finite scores (any float or integer dtype; computed in float32).
    axis : int, default 0
        The class axis.

    Returns
    -------
    ndarray of the same shape, float32
        ``exp(x - max) / sum(exp(x - max))`` along ``axis``: non-negative, summing to 1.
    """
    x = np.asarray(logits)
    if x.dtype.kind not in "fiub":
        raise ValidationError(f"`logits` must be a real-valued array; got {describe(logits)}.")
    ax = as_int(axis, name="axis")
    if not -x.ndim <= ax < x.ndim:
        raise ValidationError(f"`axis` must be in [{-x.ndim}, {x.ndim}) for `logits` of shape {x.shape}; got {ax}.")
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    if out.size == 0:
        return out
    if not np.isfinite(out).all():
        n_bad = int(out.size - np.isfinite(out).sum())
        raise ValidationError(f"`logits` must be finite; {n_bad} values are NaN or infinite.")
    out -= out.max(axis=ax, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=ax, keepdims=True, dtype=np.float32)
    return out
