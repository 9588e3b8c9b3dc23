"""The confusion matrix of two label maps, counted in a single parallel numba pass (:func:`confusion_matrix`).

Every overlap metric (:mod:`.measures`) is derived from it: Dice and friends of any label or merged region
then cost nothing more.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, NDArray

from .._core.validation import as_int, check_same_shape, describe
from ..errors import ValidationError

__all__ = ["MAX_CLASSES", "confusion_matrix"]

#: Largest ``num_classes`` :func:`confusion_matrix` accepts (the matrix alone is then 134 MB).
MAX_CLASSES = 4096
#: Classes counted in the first pass when ``num_classes`` is not given (labels 0..127: one pass; a map
#: with a larger label needs a second look). Small enough that the per-range tables stay cheap.
_GUESS_CLASSES = 128
#: Below this many voxels the map is counted on the calling thread (handing out work costs more).
_MIN_PARALLEL_VOXELS = 1 << 20
#: Memory the partial tables of one call may take; bounds how many ranges the work is split into.
_PARTIAL_BUDGET_BYTES = 4 << 20
_EMPTY_RULES = ("nan", "one", "zero")


# ------------------------------------------------------------------------------------------ input views
class _Labels:
    """A label map as the kernels see it: an unsigned, read-only view of the caller's memory (no copy).

    ``int16`` is viewed as ``uint16`` and so on (negative labels become huge values and land in the
    kernel's out-of-range bin); bool as ``uint8``; a big-endian array keeps its bytes and sets ``swapped``.
    """

    __slots__ = ("array", "is_bool", "name", "original", "swapped")

    def __init__(self, x: ArrayLike, name: str) -> None:
        a = np.asarray(x)
        if a.dtype.kind not in "biu":
            raise ValidationError(
                f"`{name}` must be an integer or boolean label map; got {describe(a)}. Convert probabilities "
                "to labels first (e.g. `probs.argmax(0)`), or cast with `.astype(np.uint8)`."
            )
        self.name = name
        self.original = a
        self.is_bool = a.dtype.kind == "b"
        self.swapped = a.dtype.itemsize > 1 and not a.dtype.isnative
        self.array = a.view(np.dtype(f"u{a.dtype.itemsize}"))

    def wraps_below(self, k: int) -> int | None:
        """First row of a ``k``-class table that holds negative labels of this map (int8 with ``k > 128``)."""
        if self.original.dtype.kind != "i":
            return None
        limit = 1 << (8 * self.original.dtype.itemsize - 1)
        return limit if k > limit else None

    def culprit(self, k: int) -> str:
        """Why this map has a value outside ``[0, k)`` (only called once the kernel found one)."""
        a = self.original
        if a.dtype.kind == "i":
            low = int(a.min())
            if low < 0:
                return (f"`{self.name}` holds the negative label {low}; labels are class indices >= 0. "
                        "Remap negative values (e.g. an ignore value of -1) before scoring.")
        high = int(a.max())
        return (f"`{self.name}` holds label {high}, outside [0, {k}) for `num_classes`={k}. "
                f"Pass num_classes={high + 1} (or leave it unset to infer it), or fix the label mapping.")


def _readonly(a: NDArray[Any]) -> NDArray[Any]:
    view: NDArray[Any] = a.view()
    view.flags.writeable = False
    return view


def _kernel_layout(a: NDArray[Any], b: NDArray[Any]
                   ) -> tuple[NDArray[Any], NDArray[Any]] | list[tuple[NDArray[Any], NDArray[Any]]]:
    """Views of two same-shape arrays for the kernels, without copying.

    Counting does not depend on the order voxels are visited, only on pairing them, so both arrays are
    re-ordered alike: axes flipped where ``a`` has negative strides and sorted by ``a``'s strides.
    Returns a pair of 1-D contiguous views when both are then C-contiguous (the fast kernel), else a list
    of pairs of 3-D strided views (size-1 axes dropped, axes merged where both arrays allow; more than
    3 axes left: one pair per leading index).
    """
    if a.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    flips = tuple(i for i in range(a.ndim) if a.strides[i] < 0)
    if flips:
        a, b = np.flip(a, flips), np.flip(b, flips)
    order = sorted(range(a.ndim), key=lambda i: (-a.strides[i], -abs(b.strides[i])))
    a, b = a.transpose(order), b.transpose(order)
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return _readonly(a.reshape(-1)), _readonly(b.reshape(-1))
    # merge axes that are contiguous with their neighbour in both arrays; drop size-1 axes
    shape: list[int] = []
    sa: list[int] = []
    sb: list[int] = []
    for n, s_a, s_b in zip(a.shape, a.strides, b.strides, strict=True):
        if n == 1:
            continue
        if shape and sa[-1] == s_a * n and sb[-1] == s_b * n:
            shape[-1] *= n
            sa[-1], sb[-1] = s_a, s_b
        else:
            shape.append(n)
            sa.append(s_a)
            sb.append(s_b)
    while len(shape) < 3:
        shape.insert(0, 1)
        sa.insert(0, 0)
        sb.insert(0, 0)
    va = as_strided(a, tuple(shape), tuple(sa), writeable=False)
    vb = as_strided(b, tuple(shape), tuple(sb), writeable=False)
    if va.ndim == 3:
        return [(va, vb)]
    return [(va[idx], vb[idx]) for idx in np.ndindex(*va.shape[:-3])]


def _threads() -> int:
    """Threads a large map is counted on (numba's setting: ``NUMBA_NUM_THREADS``, ``numba.set_num_threads``)."""
    from .._kernels.threads import n_threads

    return n_threads()


def _count(ref: _Labels, pred: _Labels, k: int) -> NDArray[np.int64]:
    """``(k + 1, k + 1)`` table; row/column ``k`` collects every value outside ``[0, k)``.

    Large maps are cut into contiguous ranges (several per thread, as many as the table budget allows),
    taken by the threads as they free up, each range counted into its own partial table.
    """
    from .._kernels import metrics as kernels
    from .._kernels.threads import run_ranges, split

    kk = k + 1
    size = ref.array.size
    if size == 0:
        return np.zeros((kk, kk), dtype=np.int64)
    threads = 1 if size < _MIN_PARALLEL_VOXELS else _threads()
    per_thread = max(1, min(8, _PARTIAL_BUDGET_BYTES // (8 * kk * kk * threads)))
    if threads == 1:
        # one contiguous copy at most (small maps only): the strided kernel is then never compiled for them
        views: tuple[NDArray[Any], NDArray[Any]] | list[tuple[NDArray[Any], NDArray[Any]]] = (
            _readonly(np.ascontiguousarray(ref.array).reshape(-1)),
            _readonly(np.ascontiguousarray(pred.array).reshape(-1)))
    else:
        views = _kernel_layout(ref.array, pred.array)
    total = np.zeros(kk * kk, dtype=np.int64)
    jobs: list[tuple[Any, list[tuple[int, int]], tuple[NDArray[Any], NDArray[Any]], tuple[int, ...]]]
    if isinstance(views, tuple):
        jobs = [(kernels._count_flat, split(-(-size // kernels.BLOCK), threads, per_thread=per_thread), views,
                 (kernels.BLOCK,))]
    else:
        jobs = [(kernels._count_strided, split(va.shape[0] * va.shape[1], threads, per_thread=per_thread),
                 (va, vb), ()) for va, vb in views]
    for kernel, ranges, (va, vb), extra in jobs:
        partial = np.zeros((len(ranges), kk * kk), dtype=np.int64)
        scratch = np.zeros((len(ranges), kernels.SCRATCH_BYTES), dtype=np.uint8)
        run_ranges(kernel, ranges, threads, va, vb, partial, k, ref.swapped, pred.swapped, *extra, scratch)
        total += partial.sum(axis=0)
    return total.reshape(kk, kk)


def _out_of_range(table: NDArray[np.int64], ref: _Labels, pred: _Labels, k: int) -> _Labels | None:
    """The map with a label outside ``[0, k)`` in a ``(k + 1, k + 1)`` table, if any."""
    for lab, counts in ((ref, table.sum(axis=1)), (pred, table.sum(axis=0))):
        first_negative = lab.wraps_below(k)
        if counts[k] or (first_negative is not None and counts[first_negative:k].any()):
            return lab
    return None


def _check_num_classes(k: int, *, what: str) -> None:
    if k > MAX_CLASSES:
        raise ValidationError(
            f"{what} {k} classes: a {k} x {k} confusion matrix is more than medfuse supports "
            f"({MAX_CLASSES} classes). Relabel the maps to consecutive class indices first."
        )


# ---------------------------------------------------------------------------------------- public API
def confusion_matrix(reference: ArrayLike, prediction: ArrayLike, *,
                     num_classes: int | None = None) -> NDArray[np.int64]:
    """Voxel counts of every (reference label, prediction label) pair, in one parallel pass.

    Parameters
    ----------
    reference : array_like of shape (Z, Y, X) or any shape
        Reference label map: any integer dtype (either byte order, any strides) or bool.
    prediction : array_like of the same shape
        Predicted label map, likewise.
    num_classes : int, optional
        ``K``, the number of classes. By default ``max(label) + 1`` over both maps (2 for two bool masks,
        1 for empty maps).

    Returns
    -------
    ndarray of shape (K, K), int64
        ``cm[r, p]`` = number of voxels with reference label ``r`` and predicted label ``p`` (rows are the
        reference).

    Raises
    ------
    ValidationError
        Shapes differ, a map is not integer/bool, a label is negative or ``>= num_classes`` (the message
        names the map and the label), or ``num_classes`` is not an integer in ``[1, 4096]``.

    Notes
    -----
    Large maps are never copied: every integer dtype is viewed as the unsigned type of its width, and any
    memory layout is read in place (a kernel is compiled on first use per pair of widths and per layout,
    contiguous or strided; small non-contiguous maps are copied instead). Out-of-range labels are detected in the
    same pass; only then does a second look at the offending map find the label to report. Without
    ``num_classes``, large maps are counted for 128 classes first; a map holding a larger label needs
    a second pass.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([0, 1, 1, 2], dtype=np.uint8)
    >>> pred = np.array([0, 1, 2, 2], dtype=np.uint8)
    >>> confusion_matrix(ref, pred)
    array([[1, 0, 0],
           [0, 1, 1],
           [0, 0, 1]])
    """
    ref = _Labels(reference, "reference")
    pred = _Labels(prediction, "prediction")
    check_same_shape(ref.array, pred.array, names=("reference", "prediction"))
    if num_classes is not None:
        k = as_int(num_classes, name="num_classes", minimum=1)
        _check_num_classes(k, what="`num_classes` asks for")
        table = _count(ref, pred, k)
        bad = _out_of_range(table, ref, pred, k)
        if bad is not None:
            raise ValidationError(bad.culprit(k))
        return np.ascontiguousarray(table[:k, :k])

    min_classes = 2 if ref.is_bool and pred.is_bool else 1
    if ref.array.size >= _MIN_PARALLEL_VOXELS:
        # count with room for 128 classes: one pass unless a label falls outside
        table = _count(ref, pred, _GUESS_CLASSES)
        if _out_of_range(table, ref, pred, _GUESS_CLASSES) is None:
            counted = table[:_GUESS_CLASSES, :_GUESS_CLASSES]
            used = np.flatnonzero(counted.sum(axis=0) + counted.sum(axis=1))
            k = max(int(used[-1]) + 1 if used.size else 1, min_classes)
            return np.ascontiguousarray(table[:k, :k])
    # small maps (looking first is cheap), or labels outside [0, 128): find K, then count
    k = max(_largest_label(ref, pred) + 1, min_classes)
    return np.ascontiguousarray(_count(ref, pred, k)[:k, :k])


def _largest_label(ref: _Labels, pred: _Labels) -> int:
    """Largest label of two maps (0 when empty); raises on a negative label or too many classes."""
    high = 0
    for lab in (ref, pred):
        a = lab.original
        if a.size == 0:
            continue
        if a.dtype.kind == "i" and int(a.min()) < 0:
            raise ValidationError(lab.culprit(_GUESS_CLASSES))
        high = max(high, int(a.max()))
    _check_num_classes(high + 1, what=f"the label maps hold labels up to {high}, i.e.")
    return high
