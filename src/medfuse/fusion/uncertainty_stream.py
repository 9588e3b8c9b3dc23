"""What the accumulators keep for :meth:`~medfuse.fusion.ProbabilityAccumulator.uncertainty` (private).

Members arrive one at a time, and the fused label is known only at the end, so the pass of
:func:`medfuse.fusion.fusion_uncertainty` is split in two:

* while adding: each member's argmax (lowest class on ties; a label map is its own argmax) is kept as one
  uint8 map (uint16 above 256 classes): **1 byte a voxel per member**, the one part of the memory that
  grows with the members (the disagreement and the member-vs-fused counts need each member's label next
  to the fused one). The members' entropies go into one running float32 map ``sum_m a_m H(p_m)`` when a
  member's weight is the same for every class (``omega_m = a_m * mean_c(1 / W_c)`` at the end); a member
  with class-varying weights keeps its own entropy map (4 more bytes a voxel for that member). A member
  added channel by channel also holds its running maximum and entropy (8 bytes a voxel) until its last
  class is in. In log space the accumulator's sums are logs, so the linear sums are kept as well
  (``C x voxels`` float32).
* at the end (:meth:`StreamingUncertainty.maps`): the entropy of the (renormalised) weighted mean from the
  sums, the mutual information, and the disagreement and counts from the argmax maps and the fused labels
  (kernels of :mod:`medfuse._kernels.uncertainty_stream`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.labels import label_dtype
from ..geometry import Box, outside_box
from .uncertainty import UncertaintyMaps, empty_maps

__all__ = ["StreamingUncertainty"]

#: voxels per chunk of the accumulators' uncertainty kernels
_CHUNK = 8192


def _xlogx(p: NDArray[np.float32]) -> NDArray[np.float32]:
    """``p ln p`` (0 where ``p <= 0``), float32, with numpy (channel-wise adds only)."""
    q = np.maximum(p, np.float32(0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        out: NDArray[np.float32] = np.where(q > 0, q * np.log(np.where(q > 0, q, np.float32(1.0))), np.float32(0.0))
    return out.astype(np.float32, copy=False)


class _Partial:
    """A member being added channel by channel: running maximum, argmax, entropy, class weights."""

    def __init__(self, n_classes: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.best = np.full(shape, -np.inf, dtype=np.float32)
        self.arg = np.zeros(shape, dtype=dtype)
        self.ent = np.zeros(shape, dtype=np.float32)
        self.weights = np.zeros(n_classes, dtype=np.float64)
        self.seen = np.zeros(n_classes, dtype=bool)


class StreamingUncertainty:
    """Per-member argmax maps, the running member entropy, and (log space) the linear sums."""

    def __init__(self, n_classes: int, shape: tuple[int, ...], *, linear_sums: bool = False) -> None:
        self._n_classes = n_classes
        self._shape = shape
        self._dtype = np.dtype(label_dtype(n_classes - 1))
        self._args: list[NDArray[Any]] = []
        self._weights: list[NDArray[np.float64]] = []
        self._scalar_ent: NDArray[np.float32] | None = None  # sum of a_m H_m over members with one weight
        self._own_ent: dict[int, NDArray[np.float32]] = {}  # member index -> H_m, class-varying weights
        self._partial: dict[int, _Partial] = {}
        self.lin: NDArray[np.float32] | None = (
            np.zeros((n_classes, *shape), dtype=np.float32) if linear_sums else None)

    @property
    def nbytes(self) -> int:
        """Bytes held (argmax maps, entropy maps, linear sums, members in progress)."""
        parts: list[NDArray[Any]] = [*self._args, *self._own_ent.values()]
        parts += [a for a in (self._scalar_ent, self.lin) if a is not None]
        parts += [a for p in self._partial.values() for a in (p.best, p.arg, p.ent)]
        return int(sum(a.nbytes for a in parts))

    # ---------------------------------------------------------------- adding
    def add_member(self, src: NDArray[Any], w: NDArray[np.float64], box: Box) -> None:
        """A whole member over ``box``: float16/float32 ``(C, *sizes)`` (rows C-contiguous) or a label map."""
        inner = tuple(slice(lo, hi) for lo, hi in box)
        arg = np.zeros(self._shape, dtype=self._dtype)  # outside the box: background, class 0
        if src.dtype.kind == "f":
            ent = np.zeros(self._shape, dtype=np.float32)
            if src[0].size:
                sub_arg = np.empty(src.shape[1:], dtype=self._dtype)
                sub_ent = np.empty(src.shape[1:], dtype=np.float32)
                self._member_stats(src, sub_arg, sub_ent)
                arg[inner] = sub_arg
                ent[inner] = sub_ent
            if self.lin is not None:
                for c in range(self._n_classes):
                    self.lin[c][inner] += np.float32(w[c]) * src[c].astype(np.float32)
        else:
            arg[inner] = src
            ent = None
            if self.lin is not None:
                for c in range(self._n_classes):
                    self.lin[c][inner] += np.where(src == c, np.float32(w[c]), np.float32(0.0))
        if self.lin is not None:
            for region in outside_box(self._shape, box):
                self.lin[0][region] += np.float32(w[0])
        self._keep(arg, ent, w)

    def add_channel(self, k: int, c: int, channel: NDArray[Any], w: float, box: Box) -> None:
        """Class ``c`` of member ``k`` (the k-th channel added for class ``c``) over ``box``."""
        part = self._partial.get(k)
        if part is None:
            part = self._partial[k] = _Partial(self._n_classes, self._shape, self._dtype)
        inner = tuple(slice(lo, hi) for lo, hi in box)
        p = channel.astype(np.float32)
        regions: list[tuple[tuple[slice, ...], NDArray[np.float32] | np.float32]] = [(inner, p)]
        regions += [(r, np.float32(1.0 if c == 0 else 0.0)) for r in outside_box(self._shape, box)]
        code = self._dtype.type(c)
        for region, value in regions:
            best, arg = part.best[region], part.arg[region]
            take = (value > best) | ((value == best) & (arg > code))  # lowest class on ties, any class order
            best[...] = np.where(take, value, best)
            arg[...] = np.where(take, code, arg)
            if self.lin is not None:
                self.lin[c][region] += np.float32(w) * value
        part.ent[inner] -= _xlogx(p)
        part.weights[c] = w
        part.seen[c] = True
        if part.seen.all():
            del self._partial[k]
            self._keep(part.arg, part.ent, part.weights)

    def add_labels(self, labels: NDArray[Any], w: float) -> None:
        """A vote member: its label map (copied) with weight ``w``."""
        self._args.append(np.array(labels, dtype=self._dtype, copy=True))
        self._weights.append(np.full(self._n_classes, w, dtype=np.float64))

    def _keep(self, arg: NDArray[Any], ent: NDArray[np.float32] | None, w: NDArray[np.float64]) -> None:
        self._args.append(arg)
        self._weights.append(np.asarray(w, dtype=np.float64).copy())
        if ent is None:
            return
        if np.all(w == w[0]):
            if self._scalar_ent is None:
                self._scalar_ent = np.zeros(self._shape, dtype=np.float32)
            self._scalar_ent += np.float32(w[0]) * ent
        else:
            self._own_ent[len(self._args) - 1] = ent

    def _member_stats(self, src: NDArray[Any], arg: NDArray[Any], ent: NDArray[np.float32]) -> None:
        from .._kernels.threads import n_threads, run_ranges, split
        from .._kernels.uncertainty_stream import _member_stats

        n_voxels = arg.size
        threads = n_threads()
        run_ranges(
            _member_stats, split(-(-n_voxels // _CHUNK), threads), threads,
            src.ctypes.data, 0 if src.dtype == np.float16 else 1, src.strides[0] // src.itemsize,
            self._n_classes, n_voxels, _CHUNK, arg.reshape(-1), ent.reshape(-1),
        )

    # ---------------------------------------------------------------- results
    def maps(self, labels: NDArray[Any], sums: NDArray[Any], scale: NDArray[np.float32],
             totals: NDArray[np.float64], *, one_hot: bool = False) -> UncertaintyMaps:
        """The maps of the members added so far, given the fused ``labels`` and the weighted class sums
        (``pbar[c] = sums[c] * scale[c]``; uint8 / uint16 / float32) and per-class weight totals.
        ``one_hot``: every member is a label map (vote), so the mutual information equals the entropy."""
        from .._kernels.threads import n_threads, run_ranges, split
        from .._kernels.uncertainty_stream import _compare_members, _mean_entropy

        n_members, n_classes = len(self._args), self._n_classes
        w_norm = np.array(self._weights).reshape(n_members, n_classes) / totals[None, :]
        shares = w_norm.mean(axis=1)
        n_voxels = int(np.prod(self._shape))
        if n_voxels == 0:
            return empty_maps(self._shape, n_members, n_classes, shares)
        threads = n_threads()
        ranges = split(-(-n_voxels // _CHUNK), threads)
        entropy = np.empty(self._shape, dtype=np.float32)
        kind = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1}.get(sums.dtype, 2)
        run_ranges(_mean_entropy, ranges, threads, sums.ctypes.data, kind, np.ascontiguousarray(scale, np.float32),
                   n_voxels, _CHUNK, entropy.reshape(-1))
        if one_hot:
            mutual = entropy.copy()
        else:
            members = np.zeros(self._shape, dtype=np.float32)
            if self._scalar_ent is not None:
                members += np.float32(np.mean(1.0 / totals)) * self._scalar_ent
            for m, ent in self._own_ent.items():
                members += np.float32(shares[m]) * ent
            mutual = np.maximum(entropy - members, np.float32(0.0))
        disagreement = np.empty(self._shape, dtype=np.float32)
        volumes = np.zeros((len(ranges), n_members, n_classes), dtype=np.int64)
        overlap = np.zeros_like(volumes)
        fused = np.zeros((len(ranges), n_classes), dtype=np.int64)
        fused_labels = np.ascontiguousarray(labels)
        run_ranges(
            _compare_members, ranges, threads,
            np.array([a.ctypes.data for a in self._args], dtype=np.int64), 0 if self._dtype == np.uint8 else 1,
            shares.astype(np.float32), fused_labels.ctypes.data, 0 if fused_labels.dtype == np.uint8 else 1,
            n_classes, n_voxels, _CHUNK, disagreement.reshape(-1), volumes, overlap, fused,
        )
        return UncertaintyMaps(entropy, mutual, disagreement, volumes.sum(axis=0), overlap.sum(axis=0),
                               fused.sum(axis=0), shares)
