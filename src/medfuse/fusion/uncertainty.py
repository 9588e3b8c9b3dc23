"""What the ensemble knows about itself: voxel-wise uncertainty maps of a fusion, and per-member counts.

Definitions (``W[m, c]``: the weights normalised per class, as fusion uses them; ``omega[m] = mean_c W[m, c]``:
member ``m``'s share, the shares summing to 1):

* ``entropy``: ``-sum_c pbar[c] ln pbar[c]`` (nats, ``0 ln 0 = 0``) of the weighted mean distribution
  ``pbar[c] = sum_m W[m, c] p_m[c]`` (the linear mean in either fusion space; renormalised to sum 1 where
  per-class weights make it differ). 0 where every member is certain and agrees; ``ln C`` at most.
* ``mutual_information``: ``entropy - sum_m omega[m] H(p_m)``, the part of the uncertainty that comes from
  members disagreeing rather than from each being unsure (clamped at 0 against float32 rounding).
* ``disagreement``: ``sum_m omega[m] [argmax p_m != fused]``, the weight share of members whose own label
  (lowest class on ties) differs from the fused label.

A hard (label map) member is its one-hot: entropy 0, its label as its argmax. The per-member counts
(``member_volumes``, ``member_overlap``, ``fused_volumes``) come from the same pass and give each member's
Dice against the fused result (:meth:`UncertaintyMaps.member_dice`) without keeping any member's labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.labels import label_dtype
from .._core.typing import ProbMembers
from ..errors import ValidationError
from .inputs import SUM_TOLERANCE, Members, as_member_weights, prepare_members
from .run import (
    CHECK_EVERY,
    CHECK_SIZE,
    DEFAULT_EPS,
    FUSION_CHUNK,
    Space,
    _raise_for_bad_members,
    check_space,
    log_table,
    product_form,
)

__all__ = ["UncertaintyMaps", "fusion_uncertainty"]

#: per-thread scratch of the uncertainty kernel (bytes): the chunk is the largest power of two (MIN_CHUNK ..
#: MAX_CHUNK voxels) whose rows (a few per voxel, three per member) fit in it, so that they stay in L2
#: (4096 voxels for 5 members: measured faster than 1024 or 2048, and than 8192 which spills)
SCRATCH_BYTES = 512 * 1024
MIN_CHUNK = 1024
MAX_CHUNK = 8192


@dataclass(frozen=True)
class UncertaintyMaps:
    """Uncertainty maps of one fusion and the per-member counts behind the QA score.

    Attributes
    ----------
    entropy : ndarray, float32, spatial shape
        Entropy (nats) of the weighted mean distribution.
    mutual_information : ndarray, float32, spatial shape
        ``entropy`` minus the weighted mean of the members' own entropies (>= 0).
    disagreement : ndarray, float32, spatial shape
        Weight share (in [0, 1]) of members whose own argmax differs from the fused label.
    member_volumes : ndarray of shape (M, C), int64
        Voxels whose member argmax is class c.
    member_overlap : ndarray of shape (M, C), int64
        Voxels where the member argmax and the fused label are both class c.
    fused_volumes : ndarray of shape (C,), int64
        Voxels of each fused class.
    member_shares : ndarray of shape (M,), float64
        Each member's share ``omega`` (sums to 1) in the member entropies and the disagreement.
    """

    entropy: NDArray[np.float32]
    mutual_information: NDArray[np.float32]
    disagreement: NDArray[np.float32]
    member_volumes: NDArray[np.int64]
    member_overlap: NDArray[np.int64]
    fused_volumes: NDArray[np.int64]
    member_shares: NDArray[np.float64]

    #: the names of the voxel-wise maps, in the order files and tables list them
    MAP_NAMES: ClassVar[tuple[str, ...]] = ("entropy", "mutual_information", "disagreement")

    @property
    def num_members(self) -> int:
        return int(self.member_volumes.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.fused_volumes.shape[0])

    def map(self, name: str) -> NDArray[np.float32]:
        """The map called ``name`` (one of :attr:`MAP_NAMES`)."""
        if name not in self.MAP_NAMES:
            raise ValidationError(
                f"unknown uncertainty map {name!r}; choose one of {', '.join(self.MAP_NAMES)}."
            )
        value: NDArray[np.float32] = getattr(self, name)
        return value

    def member_dice(self) -> NDArray[np.float64]:
        """``(M, C)`` Dice of each member's labels against the fused labels, per class (NaN where both
        are empty)."""
        denom = (self.member_volumes + self.fused_volumes[None, :]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out: NDArray[np.float64] = np.where(denom > 0, 2.0 * self.member_overlap / denom, np.nan)
        return out

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.entropy.shape)
        return (f"UncertaintyMaps({shape}, {self.num_members} members, {self.num_classes} classes, "
                f"mean entropy {float(self.entropy.mean()) if self.entropy.size else 0.0:.4f} nats)")


def uncertainty_chunk(n_classes: int, n_members: int, *, log: bool) -> int:
    """Voxels per chunk of the uncertainty kernel (a power of two dividing ``FUSION_CHUNK``)."""
    per_voxel = 25 + (4 if log else 0) + 12 * n_members
    chunk = MAX_CHUNK
    while chunk > MIN_CHUNK and chunk * per_voxel > SCRATCH_BYTES:
        chunk //= 2
    return min(chunk, FUSION_CHUNK)


def member_shares(w_norm: NDArray[np.float64]) -> NDArray[np.float64]:
    """``omega[m] = mean_c W[m, c]`` of weights normalised per class (sums to 1)."""
    shares: NDArray[np.float64] = w_norm.mean(axis=1)
    return shares


def empty_maps(shape: tuple[int, ...], n_members: int, n_classes: int,
               shares: NDArray[np.float64]) -> UncertaintyMaps:
    """Zero maps and counts of ``shape`` (the result for an empty volume)."""
    zeros = np.zeros((n_members, n_classes), dtype=np.int64)
    return UncertaintyMaps(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32),
                           zeros, zeros.copy(), np.zeros(n_classes, dtype=np.int64), shares)


def run_uncertainty(prep: Members, weights: ArrayLike | None, *, check: bool, space: Space = "probability",
                    eps: float = DEFAULT_EPS) -> tuple[NDArray[Any], UncertaintyMaps]:
    """Run the uncertainty kernel on prepared members: (fused labels, maps), after the fusion's checks."""
    from .._kernels.threads import n_threads, run_ranges, split
    from .._kernels.uncertainty import _uncertainty_chunks

    n_members, n_classes = prep.n_members, prep.n_classes
    log, eps32 = check_space(space, eps)
    w = as_member_weights(weights, n_members=n_members, n_classes=n_classes)
    w_norm = w / w.sum(axis=0, keepdims=True)
    shares = member_shares(w_norm)
    shape = prep.spatial_shape
    labels = np.empty(shape, dtype=label_dtype(n_classes - 1))
    n_voxels = prep.n_voxels
    if n_voxels == 0:
        return labels, empty_maps(shape, n_members, n_classes, shares)
    maps = [np.empty(shape, dtype=np.float32) for _ in range(3)]
    chunk = uncertainty_chunk(n_classes, n_members, log=log)
    threads = n_threads()
    ranges = split(-(-n_voxels // chunk), threads)
    n_ranges = len(ranges)
    maxbits = np.zeros((n_ranges, n_members), dtype=np.uint64)
    sum_bad = np.zeros((n_ranges, n_members), dtype=np.int64)
    sum_checked = np.zeros(n_ranges, dtype=np.int64)
    volumes = np.zeros((n_ranges, n_members, n_classes), dtype=np.int64)
    overlap = np.zeros_like(volumes)
    fused = np.zeros((n_ranges, n_classes), dtype=np.int64)
    w32 = w_norm.astype(np.float32)
    form = product_form(log, w32, eps32)  # equal weights: the labels of the product form, as fusion has them
    tab = log_table(float(eps32)) if form is None else np.array([2.0 ** form[0]], dtype=np.float32)
    run_ranges(
        _uncertainty_chunks, ranges, threads,
        prep.addrs, prep.kinds, prep.cstrides, w32, shares.astype(np.float32), n_voxels,
        chunk, log, form is not None, FUSION_CHUNK, CHECK_EVERY if check else 0, CHECK_SIZE,
        np.float32(SUM_TOLERANCE), labels.ctypes.data, 0 if labels.dtype == np.uint8 else 1,
        *(a.reshape(-1) for a in maps), maxbits, sum_bad, sum_checked, volumes, overlap, fused, tab, eps32,
    )
    _raise_for_bad_members(prep, maxbits.max(axis=0), sum_bad.sum(axis=0), int(sum_checked.sum()), check=check)
    return labels, UncertaintyMaps(maps[0], maps[1], maps[2], volumes.sum(axis=0), overlap.sum(axis=0),
                                   fused.sum(axis=0), shares)


def fusion_uncertainty(
    members: ProbMembers, *, weights: ArrayLike | None = None, num_classes: int | None = None,
    check: bool = True, space: Space = "probability", eps: float = DEFAULT_EPS,
) -> UncertaintyMaps:
    """Uncertainty maps of the fusion of ``members`` (entropy, mutual information, disagreement) and the
    per-member class counts, in one pass that also fuses.

    Parameters
    ----------
    members : sequence of ndarray of shape (C, Z, Y, X), or ndarray of shape (M, C, Z, Y, X)
        As for :func:`~medfuse.fusion.fuse_probabilities`: float16/float32 probabilities (float64 is
        converted), any layout; an integer or bool ``(Z, Y, X)`` array is a hard member (its one-hot).
    weights : array_like of shape (M,) or (M, C), optional
        Non-negative member (or member-by-class) weights, normalised per class; equal when omitted.
    num_classes : int, optional
        As for :func:`~medfuse.fusion.fuse_probabilities`.
    check : bool, default True
        The same checks as :func:`~medfuse.fusion.fuse_probabilities`: bad members are refused the same way.
    space : {"probability", "log"}, default "probability"
        The fusion space of the fused labels (the disagreement compares with them). The entropy is always
        that of the linear weighted mean.
    eps : float, default 1e-6
        Log space only: probabilities are clamped to ``eps`` before their log.

    Returns
    -------
    UncertaintyMaps
        float32 maps of the spatial shape and the ``(M, C)`` / ``(C,)`` counts (see the module docstring
        for the definitions). The fused labels are ``fuse_probabilities(members, ...)`` of the same
        arguments; ask :func:`~medfuse.fusion.fuse_probabilities` with ``return_uncertainty=True`` to get
        both from the one pass.

    Notes
    -----
    Extra memory is the three float32 maps (12 bytes a voxel) plus the label map (1 byte a voxel) and a few
    hundred KiB of scratch per thread, whatever the number of members. Logs are a short vectorised polynomial
    (no libm call, no table). Every member value is read once, but the pass does more arithmetic than fusion
    alone, which runs at memory speed (a ``p ln p``, the member argmax and the class sum per value): 5 float16
    members of 14x96x192x192 took 0.127 s against 0.019 s for the labels alone (6.8x; it was 0.32 s, 17.7x);
    in log space 0.21 s, less than log-space fusion alone (0.23 s; it was 0.67 s) (2 threads,
    ``benchmarks/bench_uncertainty.py``).
    """
    prep = prepare_members(members, num_classes=num_classes)
    _, maps = run_uncertainty(prep, weights, check=check, space=space, eps=eps)
    return maps
