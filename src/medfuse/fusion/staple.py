"""STAPLE label fusion (Warfield et al., 2004), in numba.

STAPLE estimates each rater's performance (a confusion matrix per rater for the multi-label version,
sensitivity/specificity for the binary one) and the most probable true label by
expectation-maximisation; raters that disagree with the consensus count less. :func:`staple` follows
SimpleITK's ``MultiLabelSTAPLEImageFilter`` step by step (initial confusion matrices from the majority vote,
prior from the label frequencies, EM until no confusion-matrix entry changes by ``termination_threshold``)
and :func:`staple_binary` its ``STAPLEImageFilter``. SimpleITK stays the test oracle.

The EM sees a voxel only through the tuple of its rater labels, so it runs on a histogram of the distinct
tuples (one counting pass over the voxels), and one more pass writes every voxel the decision of its tuple
(see :mod:`medfuse._kernels.staple`): 5 raters of 128 x 256 x 256 voxels take well under a second, against
41 s through SimpleITK.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.typing import LabelMembers
from .._core.validation import as_int, describe
from ..errors import ValidationError

__all__ = ["staple", "staple_binary"]

#: Largest class count (labels are read as uint16, and one more value marks undecided voxels).
_MAX_CLASSES = 65535
#: Largest tuple table counted in place (entries per thread, int64); larger ones are sorted instead.
_DENSE_LIMIT = 1 << 21
#: Largest tuple code kept in an int64; beyond it the tuples themselves are sorted.
_CODE_LIMIT = 1 << 62
#: Binary STAPLE stops when every sensitivity and specificity moved by a squared amount below this (ITK's).
_BINARY_TOLERANCE = 1.0e-14

_Labeler = Callable[[NDArray[Any], NDArray[Any]], None]


def _as_maps(label_maps: LabelMembers | Sequence[ArrayLike], *, name: str) -> list[NDArray[Any]]:
    """Validate M same-shape 2-D/3-D integer or bool maps (a sequence, or an (M, ...) array)."""
    if isinstance(label_maps, np.ndarray):
        if label_maps.ndim not in (3, 4):
            raise ValidationError(
                f"`{name}` as one array must have shape (M, Y, X) or (M, Z, Y, X); got {describe(label_maps)}."
            )
        maps = list(label_maps)
    elif isinstance(label_maps, (str, bytes)) or not isinstance(label_maps, Sequence):
        raise ValidationError(f"`{name}` must be a sequence of label maps or an (M, Z, Y, X) array; "
                              f"got {describe(label_maps)}.")
    else:
        maps = [np.asarray(m) for m in label_maps]
    if not maps:
        raise ValidationError(f"`{name}` must hold at least one label map; got none.")
    shape = maps[0].shape
    for i, m in enumerate(maps):
        if m.dtype.kind not in "biu":
            raise ValidationError(f"`{name}[{i}]` must be an integer or boolean label map; got {describe(m)}.")
        if m.ndim not in (2, 3):
            raise ValidationError(f"`{name}[{i}]` must be a 2-D or 3-D map; got {describe(m)}.")
        if m.shape != shape:
            raise ValidationError(
                f"every map of `{name}` must have the shape of the first {shape}; `{name}[{i}]` has {m.shape}."
            )
    return maps


def _decode(codes: NDArray[np.int64], radix: int, n_members: int) -> NDArray[np.int64]:
    """(U, M) tuples of the codes ``((l_0 * R + l_1) * R + ...)``."""
    tuples = np.empty((codes.size, n_members), dtype=np.int64)
    rest = codes.copy()
    for m in range(n_members - 1, -1, -1):
        tuples[:, m] = rest % radix
        rest //= radix
    return tuples


def _tally(arrays: Sequence[NDArray[Any]], radix: int) -> tuple[NDArray[np.int64], NDArray[np.float64], _Labeler]:
    """Distinct label tuples of M same-shape C-contiguous uint8/uint16 maps with labels in ``[0, radix)``.

    Returns the (U, M) tuples (sorted by code), their voxel counts, and ``label(decisions, out)`` that
    writes ``decisions[u]`` (shape (U,)) to every voxel of ``out`` whose tuple is ``u``.
    """
    from .._kernels.staple import CHUNK, _codes, _histogram_dense, _label_dense
    from .._kernels.threads import n_threads, run_chunked, run_ranges, split

    n_members, n_voxels = len(arrays), arrays[0].size
    addrs = np.array([a.ctypes.data for a in arrays], dtype=np.int64)
    dtype, itemsize = arrays[0].dtype.type, arrays[0].dtype.itemsize
    n_chunks, threads = -(-n_voxels // CHUNK), n_threads()
    size = radix ** n_members
    if size <= _DENSE_LIMIT:
        per_thread = np.zeros((threads, size), dtype=np.int64)
        run_chunked(_histogram_dense, n_chunks, threads, addrs, dtype, itemsize, n_voxels, CHUNK, radix, per_thread)
        total = per_thread.sum(axis=0)
        del per_thread
        codes = np.flatnonzero(total).astype(np.int64)

        def label_dense(decisions: NDArray[Any], out: NDArray[Any]) -> None:
            table = np.zeros(size, dtype=out.dtype)
            table[codes] = decisions
            run_ranges(_label_dense, split(n_chunks, threads), threads, addrs, dtype, itemsize, n_voxels, CHUNK,
                       radix, table, out.reshape(-1))

        return _decode(codes, radix, n_members), total[codes].astype(np.float64), label_dense
    if size < _CODE_LIMIT:  # one int64 code per voxel, counted by sorting
        all_codes = np.empty(n_voxels, dtype=np.int64)
        run_ranges(_codes, split(n_chunks, threads), threads, addrs, dtype, itemsize, n_voxels, CHUNK, radix,
                   all_codes)
        uniq, inverse, counts = np.unique(all_codes, return_inverse=True, return_counts=True)
        tuples = _decode(uniq.astype(np.int64), radix, n_members)
    else:  # codes would overflow: sort the rows themselves
        rows = np.stack([a.reshape(-1) for a in arrays], axis=1)
        urows, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        tuples = urows.astype(np.int64)

    def label_sorted(decisions: NDArray[Any], out: NDArray[Any]) -> None:
        out.reshape(-1)[:] = decisions[inverse.reshape(-1)]

    return tuples, counts.astype(np.float64), label_sorted


def staple(
    label_maps: LabelMembers | Sequence[ArrayLike],
    *,
    num_classes: int | None = None,
    undecided_label: int | None = None,
    max_iterations: int | None = None,
    termination_threshold: float = 1e-5,
    prior_probabilities: ArrayLike | None = None,
) -> NDArray[np.unsignedinteger[Any]]:
    """Multi-label STAPLE consensus of several label maps (as SimpleITK's ``MultiLabelSTAPLEImageFilter``).

    Parameters
    ----------
    label_maps : sequence of ndarray of shape (Z, Y, X) or (Y, X), or ndarray of shape (M, Z, Y, X)
        The raters' label maps (integer or bool, same shape).
    num_classes : int, optional
        ``K``; labels must lie in ``[0, K)``. By default the largest label + 1.
    undecided_label : int, optional
        Label written where STAPLE cannot decide (two labels with exactly the same posterior). By default
        those voxels get the majority vote of the raters instead (ties to the lowest label).
    max_iterations : int, optional
        Cap on EM iterations; by default EM iterates until convergence.
    termination_threshold : float, default 1e-5
        EM stops when no rater's confusion matrix changes by this much or more (SimpleITK's default).
    prior_probabilities : array_like of shape (K,), optional
        Prior probability of each label (normalised here); by default the frequency of each label over all
        raters and voxels.

    Returns
    -------
    ndarray of shape (Z, Y, X), uint8 (uint16 when a label or ``undecided_label`` exceeds 255)
        The consensus labels.

    Raises
    ------
    ValidationError
        Maps of different shapes or dtypes that are not integer, labels outside ``[0, K)``, bad options.

    Notes
    -----
    The steps are SimpleITK's: the true labels are ``0 .. L - 1`` with ``L`` the largest label present + 1;
    each rater's confusion matrix (``L + 1`` rows of rater labels, ``L`` columns of true labels) starts as
    the row-normalised counts against the majority vote (ties undecided, counted where ITK counts them);
    EM then alternates the posterior of every voxel with column-normalised expected counts. Computation is
    float64 on the histogram of label tuples; SimpleITK accumulates float32 voxel by voxel, so on large
    volumes a few voxels whose two best posteriors are nearly equal can differ (see docs/fusion.md).
    """
    maps = _as_maps(label_maps, name="label_maps")
    high = _largest_label(maps)
    if num_classes is None:
        k = high + 1
    else:
        k = as_int(num_classes, name="num_classes", minimum=1)
        if high >= k:
            raise ValidationError(
                f"`label_maps` hold label {high}, outside [0, {k}) for `num_classes`={k}; "
                f"pass num_classes={high + 1} or leave it unset."
            )
    if k > _MAX_CLASSES:
        raise ValidationError(f"`num_classes` must be at most {_MAX_CLASSES} for STAPLE; got {k}.")
    undecided = None if undecided_label is None else as_int(undecided_label, name="undecided_label", minimum=0)
    if undecided is not None and undecided > _MAX_CLASSES:
        raise ValidationError(f"`undecided_label` must be at most {_MAX_CLASSES}; got {undecided}.")
    if not np.isfinite(termination_threshold) or termination_threshold <= 0:
        raise ValidationError(f"`termination_threshold` must be positive; got {termination_threshold!r}.")
    cap = 0 if max_iterations is None else as_int(max_iterations, name="max_iterations", minimum=1)
    prior = None if prior_probabilities is None else _as_prior(prior_probabilities, k)
    out = np.zeros(maps[0].shape, dtype=np.uint8 if max(k - 1, undecided or 0) <= 255 else np.uint16)
    if out.size == 0:
        return out

    _run(maps, high, out, undecided=undecided, threshold=float(termination_threshold), cap=cap, prior=prior)
    return out


def _run(maps: Sequence[NDArray[Any]], high: int, out: NDArray[Any], *, undecided: int | None, threshold: float,
         cap: int, prior: NDArray[np.float64] | None, outside: int = 0) -> int:
    """STAPLE of validated, non-empty maps into ``out``; ``outside`` more voxels where every rater says 0
    count as if they were in the maps. Returns the label those voxels get."""
    from .._kernels.staple import _decide, _em, _init_confusion

    n_labels = high + 1
    arrays = [np.ascontiguousarray(m, dtype=np.uint8 if high <= 255 else np.uint16) for m in maps]
    tuples, counts, label = _tally(arrays, n_labels)
    background = len(tuples) > 0 and not tuples[0].any()  # tuples are sorted: (0, ..., 0) comes first
    if outside and not background:
        tuples = np.concatenate([np.zeros((1, len(maps)), np.int64), tuples])
        counts = np.concatenate([[0.0], counts])
    counts[0] += outside
    if prior is None:
        freq = np.bincount(tuples.reshape(-1), weights=np.repeat(counts, len(maps)), minlength=n_labels)
        prior = freq / freq.sum()
    else:
        prior = np.ascontiguousarray(prior[:n_labels])
    conf = _init_confusion(tuples, counts, n_labels)
    _em(tuples, counts, prior, conf, threshold, cap)
    decisions = _decide(tuples, prior, conf, np.zeros(n_labels, np.int64), -1 if undecided is None else undecided)
    label(decisions[1:] if outside and not background else decisions, out)
    return int(decisions[0])


def staple_in_box(label_maps: Sequence[NDArray[Any]], *, outside_voxels: int,
                  num_classes: int) -> tuple[NDArray[np.unsignedinteger[Any]], int]:
    """:func:`staple` of maps cropped to a box outside which every rater says 0 on ``outside_voxels`` voxels.

    The result inside the box equals that of the full maps (the voxels outside add to the counts of the
    all-background tuple); returns it and the label of the voxels outside (0 unless STAPLE decides
    otherwise). For the folder job, which crops every member to the union of their non-background boxes.
    """
    maps = _as_maps(label_maps, name="label_maps")
    high = _largest_label(maps)
    if high >= num_classes:
        raise ValidationError(f"`label_maps` hold label {high}, outside [0, {num_classes}) for `num_classes`.")
    out = np.zeros(maps[0].shape, dtype=np.uint8 if num_classes <= 256 else np.uint16)
    if out.size == 0:  # nothing inside the box: every voxel is outside, where all raters agree on 0
        return out, 0
    outside_label = _run(maps, high, out, undecided=None, threshold=1e-5, cap=0, prior=None, outside=outside_voxels)
    return out, outside_label


def _largest_label(maps: Sequence[NDArray[Any]]) -> int:
    high = 0
    for i, m in enumerate(maps):
        if m.size == 0:
            continue
        if m.dtype.kind == "i":
            low = int(m.min())
            if low < 0:
                raise ValidationError(f"`label_maps[{i}]` holds the negative label {low}; labels must be >= 0.")
        high = max(high, int(m.max()))
    if high > _MAX_CLASSES - 1:
        raise ValidationError(f"`label_maps` hold label {high}; STAPLE takes labels up to {_MAX_CLASSES - 1}. "
                              "Remap the labels to 0 .. K - 1.")
    return high


def _as_prior(prior_probabilities: ArrayLike, k: int) -> NDArray[np.float64]:
    try:
        prior = np.asarray(prior_probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        prior = np.full(0, np.nan)
    if prior.shape != (k,) or not np.all(np.isfinite(prior)) or np.any(prior < 0) or prior.sum() <= 0:
        raise ValidationError(
            f"`prior_probabilities` must hold {k} non-negative finite values (one per label), not all 0; "
            f"got {describe(prior_probabilities)}."
        )
    normalised: NDArray[np.float64] = prior / prior.sum()
    return normalised


def staple_binary(
    masks: LabelMembers | Sequence[ArrayLike],
    *,
    foreground_value: int = 1,
    max_iterations: int | None = None,
    confidence_weight: float = 1.0,
) -> NDArray[np.float32]:
    """Binary STAPLE (as SimpleITK's ``STAPLEImageFilter``): probability that each voxel is foreground.

    Parameters
    ----------
    masks : sequence of ndarray of shape (Z, Y, X) or (Y, X), or ndarray of shape (M, Z, Y, X)
        The raters' masks: bool, or integer maps where ``foreground_value`` marks the foreground.
    foreground_value : int, default 1
        Value of the foreground in integer maps (ignored for bool masks).
    max_iterations : int, optional
        Cap on EM iterations; by default EM iterates until convergence.
    confidence_weight : float, default 1.0
        SimpleITK's weight of the prior: values above 1 favour the estimated prior, below 1 the raters.

    Returns
    -------
    ndarray of shape (Z, Y, X), float32
        Estimated probability of foreground (computed in float64; threshold at 0.5 for a mask).

    Notes
    -----
    The prior is the mean fraction of raters marking a voxel, times ``confidence_weight``; EM alternates
    each rater's sensitivity and specificity with the posterior and stops when none of them moved by more
    than 1e-7 (ITK's rule). Where SimpleITK returns NaN (no rater marks any voxel, or every rater marks
    every voxel) this returns 0, respectively 1.
    """
    from .._kernels.staple import _em_binary

    maps = _as_maps(masks, name="masks")
    value = as_int(foreground_value, name="foreground_value")
    if not np.isfinite(confidence_weight) or confidence_weight <= 0:
        raise ValidationError(f"`confidence_weight` must be positive and finite; got {confidence_weight!r}.")
    cap = 0 if max_iterations is None else as_int(max_iterations, name="max_iterations", minimum=1)
    out = np.zeros(maps[0].shape, dtype=np.float32)
    if out.size == 0:
        return out
    arrays = [np.ascontiguousarray(m, dtype=np.uint8) if m.dtype == np.bool_ else (m == value).view(np.uint8)
              for m in maps]
    patterns, counts, label = _tally(arrays, 2)
    marked = float((patterns.sum(axis=1) * counts).sum())
    if marked == 0 or marked == counts.sum() * len(maps):  # SimpleITK: NaN (0 / 0 in the sensitivities)
        out[:] = 0.0 if marked == 0 else 1.0
        return out
    prior = marked / (counts.sum() * len(maps)) * float(confidence_weight)
    posterior, _ = _em_binary(patterns, counts, prior, cap, _BINARY_TOLERANCE)
    label(posterior.astype(np.float32), out)
    return out
