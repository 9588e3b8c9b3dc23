"""One case's pass of the ensemble search: every subset's confusion counts and the contested voxels.

The members of a case are loaded once into one (M, C, N) stack (float16 or float32, cropped to the box
where any member has probabilities). One kernel pass then

- scores every non-empty subset of members (equal weights): per voxel, when every member's argmax is
  the same class, every subset's mean has that argmax too, so the voxel is counted once for all subsets;
  otherwise the subsets are walked depth-first, each subset's float64 sum made from its parent's by adding
  one member (one add per subset, like a Gray-code walk, but in member order, so sums are exact);
- marks the "contested" voxels: those whose fused label could change under SOME non-negative per-class
  weights. A voxel is safe when every member picks the same class and that class's smallest probability
  over members beats every other class's largest one (any per-class convex combination then keeps it).

Only the contested voxels (typically a few per cent, near boundaries) are kept for the weight search, so
every weighted candidate is scored exactly on all voxels, not on a surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.validation import native_byteorder
from ..errors import ValidationError

__all__ = ["CONTESTED", "SAFE_MARGIN", "CasePass", "run_case_pass", "subset_masks", "subset_steps"]

#: relative margin by which a safe voxel's winning probability must beat the others (covers float32
#: rounding of a weighted mean of up to a few dozen members)
SAFE_MARGIN = 2.0**-16

#: largest probability accepted (float16 rounding of softmax outputs can exceed 1 slightly)
_LIMIT = 1.001

#: value of :attr:`CasePass.safe_labels` at contested voxels (so at most 255 classes)
CONTESTED = 255

#: float32 values per chunk and thread (members x classes x voxels): stays in the L2 cache
_CHUNK = 16384

#: room for contested voxels gathered in the kernel: 1 in _ROOM voxels (beyond it numpy gathers them)
_ROOM = 16


@lru_cache(maxsize=16)
def subset_steps(n_members: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Depth-first walk over the non-empty subsets of ``n_members`` members.

    Returns ``(level, member, mask)``, each of shape (2**M - 1,): step ``s`` builds subset ``mask[s]``
    (bit m = member m) at depth ``level[s]`` by adding ``member[s]`` to the subset built at depth
    ``level[s] - 1`` just before. Members are always added in increasing order.
    """
    level: list[int] = []
    member: list[int] = []
    mask: list[int] = []

    def walk(start: int, depth: int, current: int) -> None:
        for m in range(start, n_members):
            bits = current | (1 << m)
            level.append(depth + 1)
            member.append(m)
            mask.append(bits)
            walk(m + 1, depth + 1, bits)

    walk(0, 0, 0)
    out = tuple(np.asarray(x, dtype=np.int64) for x in (level, member, mask))
    for a in out:
        a.setflags(write=False)
    return out  # type: ignore[return-value]


def subset_masks(n_members: int) -> NDArray[np.int64]:
    """The subsets in the order :func:`run_case_pass` reports them: by size, then lexicographically."""
    masks = list(range(1, 1 << n_members))
    masks.sort(key=lambda b: (bin(b).count("1"), [m for m in range(n_members) if b >> m & 1]))
    return np.asarray(masks, dtype=np.int64)


@dataclass(frozen=True)
class CasePass:
    """What one case contributes to the search (all counts over the voxels of the stack only).

    Attributes
    ----------
    subset_confusion : ndarray of shape (S, C, C), int64
        Confusion matrix (rows = reference) of each subset's fused labels, subsets in
        :func:`subset_masks` order.
    safe_confusion : ndarray of shape (C, C), int64
        Confusion matrix of the voxels no weighting can change.
    contested : ndarray of shape (n,), int64
        Flat indices (into the stack's voxels) of the other voxels, increasing.
    contested_values : ndarray of shape (n, M, C)
        The members' probabilities at those voxels (the stack's dtype).
    safe_labels : ndarray of shape (N,), uint8
        The label of every safe voxel (whatever the weights); 255 at contested voxels.
    n_invalid : int
        Probabilities outside [0, 1.001] or NaN.
    """

    subset_confusion: NDArray[np.int64]
    safe_confusion: NDArray[np.int64]
    contested: NDArray[np.int64]
    contested_values: NDArray[Any]
    safe_labels: NDArray[np.uint8]
    n_invalid: int


def run_case_pass(stack: NDArray[Any], reference: NDArray[np.uint8], *, threads: int | None = None) -> CasePass:
    """Run the subset kernel on one case.

    Parameters
    ----------
    stack : ndarray of shape (M, C, N), float16 or float32, C-contiguous
        Members' probabilities over N voxels.
    reference : ndarray of shape (N,), uint8
        Reference labels, all < C.
    threads : int, optional
        Worker threads (default: numba's current thread count).
    """
    from .._kernels import search as kernels
    from .._kernels.threads import n_threads, run_chunked

    stack = native_byteorder(np.asarray(stack))
    if stack.ndim != 3 or reference.shape != (stack.shape[2],):
        raise ValidationError(
            f"`stack` must have shape (M, C, N) and `reference` shape (N,); got {stack.shape} and "
            f"{reference.shape}."
        )
    n_members, n_classes, n_vox = stack.shape
    if not 1 <= n_members <= 16:
        raise ValidationError(f"the search handles 1 to 16 members; got {n_members}.")
    if not 1 <= n_classes <= CONTESTED:
        raise ValidationError(f"the search handles 1 to {CONTESTED} classes; got {n_classes}.")
    if stack.dtype == np.float16:
        data = np.ascontiguousarray(stack).view(np.uint16)
        limit: Any = np.uint16(np.float16(_LIMIT).view(np.uint16))
    elif stack.dtype == np.float32:
        data = np.ascontiguousarray(stack).view(np.uint32)
        limit = np.uint32(np.float32(_LIMIT).view(np.uint32))
    else:
        raise ValidationError(f"`stack` must be float16 or float32; got {stack.dtype}.")
    level, member, mask = subset_steps(n_members)
    n_chunks = -(-n_vox // _CHUNK)
    threads = max(1, min(threads or n_threads(), n_chunks))
    cm_sub = np.zeros((threads, level.size, n_classes, n_classes), np.int64)
    cm_unan = np.zeros((threads, n_classes, n_classes), np.int64)
    cm_safe = np.zeros((threads, n_classes, n_classes), np.int64)
    labels = np.empty(n_vox, np.uint8)
    n_bad = np.zeros(threads, np.int64)
    ref = np.ascontiguousarray(reference, dtype=np.uint8)
    if n_classes == 1:  # background only: nothing to decide (the kernel assumes a second class)
        cm_unan[0, 0, 0] = n_vox
        cm_safe[0, 0, 0] = n_vox
        labels[:] = 0
        n_bad[0] = int(np.count_nonzero(data > limit))
    contested = np.zeros(0, np.int64)
    values = np.zeros((0, n_members, n_classes), stack.dtype)
    if n_classes > 1 and n_vox:
        per = -(-n_chunks // threads) * _CHUNK
        capacity = min(per, per // _ROOM + 1024)
        rows = [np.empty(capacity, np.int64) for _ in range(threads)]
        out = [np.empty((capacity, n_members, n_classes), data.dtype) for _ in range(threads)]
        counts = np.zeros(threads, np.int64)

        def call(k0: int, k1: int, t: int, *args: Any) -> None:  # the kernel returns its contested count
            counts[t] = kernels._subset_chunks(k0, k1, t, *args, rows[t], out[t])

        run_chunked(call, n_chunks, threads, data, ref, level, member, _CHUNK, np.float32(1.0 - SAFE_MARGIN),
                    limit, cm_sub, cm_unan, cm_safe, labels, n_bad)
        if all(k <= capacity for k in counts):
            contested = np.concatenate([r[:k] for r, k in zip(rows, counts, strict=True)])  # copies
            values = np.concatenate([o[:k] for o, k in zip(out, counts, strict=True)]).view(stack.dtype)
        else:  # more contested voxels than room: gather them here (exact, a little slower)
            contested = np.flatnonzero(labels == CONTESTED)
            values = np.ascontiguousarray(np.moveaxis(stack[:, :, contested], 2, 0))
        del rows, out
    unanimous = cm_unan.sum(axis=0)
    by_step = cm_sub.sum(axis=0) + unanimous
    # reorder from walk order to the reported order
    position = {int(b): s for s, b in enumerate(mask)}
    order = np.asarray([position[int(b)] for b in subset_masks(n_members)], dtype=np.int64)
    return CasePass(
        subset_confusion=by_step[order],
        safe_confusion=cm_safe.sum(axis=0),
        contested=contested,
        contested_values=values,
        safe_labels=labels,
        n_invalid=int(n_bad.sum()),
    )
