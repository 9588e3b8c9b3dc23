"""Learned ensemble weights: exact scoring on the contested voxels, coordinate ascent over a grid.

Why this method
---------------
Dice is a ratio of counts of an argmax: piecewise constant in the weights, so gradients are zero almost
everywhere and surrogates (soft Dice on probabilities) optimise something else. But the argmax can only
change at "contested" voxels (see :mod:`medfuse.search.scoring`): everywhere else every member agrees with a
margin no per-class weighting can overturn. Those voxels are a few per cent of a case, so the search keeps
them in memory and scores any weighting *exactly* — the counts of all other voxels are fixed.

On that exact objective, coordinate ascent over a small grid of weights is simple, deterministic and
cheap: changing one member's weight only needs one update of the running sums (``O(n C)``), and changing
one member's weight for one class only changes that class's value (``O(n)`` against the precomputed best
other class). It starts from the best equal-weight subset, so it never scores below it on the data it was
fitted on, and it only moves when the score strictly improves — equal weights win ties. Nelder-Mead or
CMA-ES would add tuning knobs for no exactness gain on a piecewise-constant objective.

Fitted weights can overfit (the objective is the same data): :mod:`medfuse.search` therefore reports an
honest score with weights fitted on the other folds and scored on each held-out fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .stats import case_dice, label_means, mean_score

__all__ = [
    "CLASS_GRID",
    "MEMBER_GRID",
    "ContestedBuilder",
    "ContestedSet",
    "fit_class_weights",
    "fit_member_weights",
    "select_per_class",
]

#: weights tried for one member (relative: only ratios matter)
MEMBER_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
#: weights tried for one member and one class
CLASS_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)

#: smallest score gain that moves a weight (keeps equal weights on ties and rounding noise)
_MIN_GAIN = 1e-9

#: rows converted to float32 at once when scoring a float16 store
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ContestedSet:
    """The contested voxels of some cases, and the counts of every other voxel of those cases.

    Attributes
    ----------
    probabilities : ndarray of shape (n, M, C), float16 or float32
        Members' probabilities at each contested voxel.
    reference : ndarray of shape (n,), uint8
    case : ndarray of shape (n,), int64
        Index of the voxel's case (0 .. N-1).
    count : ndarray of shape (n,), float64
        Voxels each row stands for: 1, or a power of two when the set was thinned to fit in memory.
    fixed : ndarray of shape (3, N, C), float64
        ``(tp, fp, fn)`` per case and class of the voxels whose label no weighting changes.
    """

    probabilities: NDArray[Any]
    reference: NDArray[np.uint8]
    case: NDArray[np.int64]
    count: NDArray[np.float64]
    fixed: NDArray[np.float64]

    @property
    def n_cases(self) -> int:
        return int(self.fixed.shape[1])

    @property
    def n_members(self) -> int:
        return int(self.probabilities.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.fixed.shape[2])

    @property
    def exact(self) -> bool:
        """Whether every row stands for exactly one voxel (no thinning)."""
        return bool(np.all(self.count == 1.0))

    def restrict(self, cases: NDArray[np.int64]) -> ContestedSet:
        """The set for some cases only, re-indexed ``0 .. len(cases) - 1`` in the given order."""
        cases = np.asarray(cases, dtype=np.int64)
        new_index = np.full(self.n_cases, -1, np.int64)
        new_index[cases] = np.arange(cases.size)
        rows = new_index[self.case] >= 0
        return ContestedSet(
            probabilities=self.probabilities[rows], reference=self.reference[rows],
            case=new_index[self.case[rows]], count=self.count[rows], fixed=self.fixed[:, cases],
        )

    def sample(self, max_rows: int, *, seed: int) -> ContestedSet:
        """At most about ``max_rows`` rows, drawn uniformly; counts scaled so totals stay unbiased."""
        n = self.reference.size
        if n <= max_rows:
            return self
        rng = np.random.default_rng(seed)
        keep = rng.random(n) < max_rows / n
        return replace(
            self, probabilities=self.probabilities[keep], reference=self.reference[keep],
            case=self.case[keep], count=self.count[keep] * (n / max_rows),
        )

    def class_major(self) -> NDArray[np.float32]:
        """The probabilities as float32 (M, C, n): rows of one member and class are contiguous."""
        out = np.empty((self.n_members, self.n_classes, self.reference.size), np.float32)
        for m in range(self.n_members):
            out[m] = self.probabilities[:, m, :].T
        return out

    def counts(self, weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(tp, fp, fn)`` of shape (3, N, C) of the fused labels for member-by-class ``weights`` (M, C)."""
        return self.counts_of(self.labels(weights))

    def counts_of(self, labels: NDArray[Any]) -> NDArray[np.float64]:
        """``(tp, fp, fn)`` (3, N, C) when the rows have the given labels (and the rest their fixed ones)."""
        from .._kernels import search as kernels

        out: NDArray[np.float64] = self.fixed.copy()
        kernels._label_counts(labels, self.reference, self.case, self.count, out[0], out[1], out[2])
        return out

    def labels(self, weights: NDArray[np.float64]) -> NDArray[np.int64]:
        """Fused label of every row for member-by-class ``weights`` (M, C)."""
        from .._kernels import search as kernels

        w, inv_total = _normalised(weights)
        out = np.empty(self.reference.size, np.int64)
        for s0 in range(0, self.reference.size, _BLOCK):
            block = slice(s0, s0 + _BLOCK)
            kernels._weighted_labels(np.ascontiguousarray(self.probabilities[block], dtype=np.float32), w,
                                     inv_total, out[block])
        return out


def _normalised(weights: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    total = w.sum(axis=0)
    inv = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    if np.all(w == w[:, :1]):  # one weight per member: normalising cannot change the argmax; skip it
        inv = np.ones_like(total)
    return w, inv


class ContestedBuilder:
    """Collects contested voxels case by case within a memory budget.

    When the rows exceed ``budget_bytes``, every stored row is kept with probability 1/2 and its count
    doubled, and later rows are sampled at the halved rate (bounded memory, unbiased counts).
    """

    def __init__(self, n_members: int, n_classes: int, *, budget_bytes: int, dtype: Any, seed: int) -> None:
        self.n_members = n_members
        self.n_classes = n_classes
        self.budget_bytes = budget_bytes
        self.dtype = np.dtype(dtype)
        self.rate = 1.0
        self._rng = np.random.default_rng(seed)
        self._parts: list[list[NDArray[Any]]] = []  # [probabilities, reference, case, count]
        self._bytes = 0
        self._row_bytes = n_members * n_classes * self.dtype.itemsize + 1 + 8 + 8

    def add(self, case: int, probabilities: NDArray[Any], reference: NDArray[np.uint8]) -> None:
        """Add one case's rows: ``probabilities`` (n, M, C), ``reference`` (n,)."""
        n = reference.size
        if self.rate < 1.0:
            keep = self._rng.random(n) < self.rate
            probabilities, reference, n = probabilities[keep], reference[keep], int(keep.sum())
        part = [
            np.ascontiguousarray(probabilities, dtype=self.dtype),
            np.ascontiguousarray(reference, dtype=np.uint8),
            np.full(n, case, np.int64),
            np.full(n, 1.0 / self.rate, np.float64),
        ]
        self._parts.append(part)
        self._bytes += n * self._row_bytes
        while self._bytes > self.budget_bytes and self.rate > 2.0**-30:
            self._thin()

    def _thin(self) -> None:
        self.rate /= 2.0
        total = 0
        for part in self._parts:
            keep = self._rng.random(part[1].size) < 0.5
            part[:] = [part[0][keep], part[1][keep], part[2][keep], part[3][keep] * 2.0]
            total += part[1].size
        self._bytes = total * self._row_bytes

    def build(self, fixed: NDArray[np.float64]) -> ContestedSet:
        if self._parts:
            probs, ref, case, count = (np.concatenate([p[i] for p in self._parts]) for i in range(4))
        else:
            probs = np.zeros((0, self.n_members, self.n_classes), self.dtype)
            ref, case, count = np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.float64)
        self._parts = []
        return ContestedSet(probabilities=probs, reference=ref, case=case, count=count, fixed=fixed)


def score_counts(counts: NDArray[np.float64], labels: Sequence[int]) -> float:
    """Foreground mean Dice of ``(tp, fp, fn)`` counts (3, N, C) over ``labels``."""
    idx = list(labels)
    dice = case_dice(counts[0][:, idx], counts[1][:, idx], counts[2][:, idx])
    score = mean_score(dice)
    return float(score)


class _Ascent:
    """State shared by the coordinate ascents: the (sampled) rows in class-major layout, the current labels
    and their counts; trial labels are scored by moving only the rows whose label changes."""

    def __init__(self, data: ContestedSet, labels: Sequence[int], class_major: NDArray[np.float32] | None
                 ) -> None:
        self.data = data
        self.P = class_major if class_major is not None else data.class_major()
        self.n = data.reference.size
        self.labels = np.asarray(list(labels), dtype=np.int64)
        self.current = np.zeros(self.n, np.int64)
        self.trial = np.zeros(self.n, np.int64)
        self.base = data.fixed.copy()
        self.score = math.nan

    def start(self, labels_now: NDArray[np.int64]) -> None:
        self.current = labels_now.astype(np.int64, copy=True)
        self.base = self.data.counts_of(self.current)
        self.score = self.score_of(self.base)

    def score_of(self, counts: NDArray[np.float64]) -> float:
        from .._kernels import search as kernels

        return float(kernels._fg_score(counts[0], counts[1], counts[2], self.labels))

    def moved(self) -> NDArray[np.float64]:
        """Counts when the rows take the labels in :attr:`trial`."""
        from .._kernels import search as kernels

        out: NDArray[np.float64] = self.base.copy()
        d = self.data
        kernels._changed_counts(self.trial, self.current, d.reference, d.case, d.count, out[0], out[1], out[2])
        return out

    def accept(self, counts: NDArray[np.float64], score: float) -> None:
        """Make :attr:`trial` (with its ``counts``) the current labels."""
        self.current, self.trial = self.trial, self.current
        self.base = counts
        self.score = score


def fit_member_weights(
    data: ContestedSet, start: NDArray[np.float64], *, labels: Sequence[int],
    grid: Sequence[float] = MEMBER_GRID, max_sweeps: int = 4, class_major: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float64], float]:
    """Coordinate ascent on one weight per member; returns ``(weights (M,), score on data)``.

    ``class_major`` is ``data.class_major()`` when the caller already has it.
    """
    from .._kernels import search as kernels

    state = _Ascent(data, labels, class_major)
    P = state.P
    n_classes = data.n_classes
    w = np.asarray(start, dtype=np.float64).copy()
    sums = np.empty((n_classes, state.n), np.float64)
    kernels._sums_cm(P, np.repeat(w[:, None], n_classes, axis=1), sums)
    best_v = np.empty(state.n, np.float64)
    kernels._member_trial(P, sums, 0, 0.0, best_v, state.trial)
    state.start(state.trial)
    for _ in range(max_sweeps):
        moved = False
        for m in range(w.size):
            best_g, best_score = w[m], state.score
            for g in grid:
                if g == w[m] or (g == 0.0 and np.count_nonzero(w) == 1 and w[m] > 0):
                    continue
                kernels._member_trial(P, sums, m, g - w[m], best_v, state.trial)
                score = state.score_of(state.moved())
                if score > best_score + _MIN_GAIN:
                    best_g, best_score = g, score
            if best_g != w[m]:
                kernels._member_trial(P, sums, m, best_g - w[m], best_v, state.trial)
                state.accept(state.moved(), best_score)
                sums += (best_g - w[m]) * P[m]
                w[m] = best_g
                moved = True
        if not moved:
            break
    return w, state.score


def fit_class_weights(
    data: ContestedSet, start: NDArray[np.float64], *, labels: Sequence[int],
    grid: Sequence[float] = CLASS_GRID, max_sweeps: int = 3, class_major: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float64], float]:
    """Coordinate ascent on a weight per member and class (M, C); returns ``(weights, score on data)``.

    Class c's fused value is the ``W[:, c]``-weighted mean of the members' class-c probabilities, so
    one cell only changes one class's value (compared with the best other class, computed once per
    class); every class, background included, is a coordinate.
    """
    from .._kernels import search as kernels

    state = _Ascent(data, labels, class_major)
    P = state.P
    n_classes = data.n_classes
    W = np.asarray(start, dtype=np.float64).copy()
    sums = np.empty((n_classes, state.n), np.float64)
    kernels._sums_cm(P, W, sums)
    totals = W.sum(axis=0)
    other_val = np.empty(state.n, np.float64)
    other_idx = np.empty(state.n, np.int64)
    state.start(data.labels(W))
    for _ in range(max_sweeps):
        moved = False
        for c in range(n_classes):
            inv = np.where(totals > 0, 1.0 / np.where(totals > 0, totals, 1.0), 0.0)
            kernels._best_other_cm(sums, inv, c, other_val, other_idx)
            for m in range(W.shape[0]):
                best_g, best_score = W[m, c], state.score
                for g in grid:
                    new_total = totals[c] + g - W[m, c]
                    if g == W[m, c] or new_total <= 0.0:
                        continue
                    kernels._class_trial(P[m, c], sums[c], c, g - W[m, c], 1.0 / new_total, other_val,
                                         other_idx, state.trial)
                    score = state.score_of(state.moved())
                    if score > best_score + _MIN_GAIN:
                        best_g, best_score = g, score
                if best_g != W[m, c]:
                    new_total = totals[c] + best_g - W[m, c]
                    kernels._class_trial(P[m, c], sums[c], c, best_g - W[m, c], 1.0 / new_total, other_val,
                                         other_idx, state.trial)
                    state.accept(state.moved(), best_score)
                    sums[c] += (best_g - W[m, c]) * P[m, c]
                    totals[c] = new_total
                    W[m, c] = best_g
                    moved = True
        if not moved:
            break
    return W, state.score


def select_per_class(
    subset_counts: NDArray[np.float64], masks: NDArray[np.int64], *, n_members: int, labels: Sequence[int],
) -> NDArray[np.float64]:
    """Per-class model selection: each label from the subset with the best mean Dice for that label.

    Parameters
    ----------
    subset_counts : ndarray of shape (3, S, N, C)
        ``(tp, fp, fn)`` of every subset on every case.
    masks : ndarray of shape (S,)
        Subsets as bit masks, simplest first (ties go to the first).

    Returns
    -------
    ndarray of shape (M, C)
        Indicator weights: column c = the members of the subset chosen for c. Background (and labels not
        scored) use the union of the chosen members.
    """
    n_classes = subset_counts.shape[-1]
    dice = case_dice(subset_counts[0], subset_counts[1], subset_counts[2])  # (S, N, C)
    means = label_means(dice)  # (S, C)
    W = np.zeros((n_members, n_classes), np.float64)
    union = 0
    for c in labels:
        column = np.where(np.isnan(means[:, c]), -np.inf, means[:, c])
        chosen = int(masks[int(np.argmax(column))])  # argmax: first of equal maxima = simplest
        union |= chosen
        W[:, c] = [(chosen >> m) & 1 for m in range(n_members)]
    if union == 0:
        union = int(masks[0])
    others = [c for c in range(n_classes) if c not in set(labels)]
    for c in others:
        W[:, c] = [(union >> m) & 1 for m in range(n_members)]
    return W
