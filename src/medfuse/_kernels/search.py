"""Kernels of the ensemble search: every subset of members scored in one pass, and weighted re-scoring.

No validation here: :mod:`medfuse.search` and :mod:`medfuse._search_weights` normalise dtypes and layouts.

Layouts
-------
``probs``  (M, C, N) members' class probabilities of one case, flattened over the voxels of one box;
           uint16 (the bits of float16, numba has no float16 arithmetic) or float32, C-contiguous.
``ref``    (N,) uint8 reference labels of the same voxels (all < C; checked by the caller).
``P``      (n, M, C) float32: the probabilities of the "contested" voxels (see below), voxel-major.

Sums of at most 8 float16 values are exact in float64 (every float16 in [0, 8] is a multiple of 2**-24
and the sum needs at most 27 significant bits), so the subset pass computes the exact mean and its argmax:
ties go to the lowest class index, exactly as ``argmax`` does.
"""

from __future__ import annotations

import numba
import numpy as np

from . import jit, parallel_jit


@jit
def _f16_value(x, lut):
    return lut[x]


@jit
def _f32_value(x, lut):
    return x


def _make_subset_pass(value):
    """Build the subset kernel for one storage type (``value`` turns a stored element into a float).

    Hot loop, per class c and member m, on the raw stored values (the bits of a non-negative float16
    order like the values, so no conversion is needed): ``lo[c] = min_m p[m, c]``, ``hi[c] = max_m p[m, c]``.
    A voxel is safe when the class c* with the largest ``lo`` has ``lo[c*] > max_{k != c*} hi[k]``: then
    every member's argmax is c* and no per-class weighting can change it: ``labels[v] = c*``. Every other
    voxel (``labels[v] = 255``) takes the slow path: members' argmaxes, and if they disagree the
    depth-first walk over all subsets.
    """

    @parallel_jit
    def kernel(probs, ref, level, member, chunk, keep, limit, lut, cm_sub, cm_unan, cm_safe, labels, n_bad):
        n_members = probs.shape[0]
        n_classes = probs.shape[1]
        n_vox = probs.shape[2]
        n_steps = level.shape[0]
        n_threads = cm_sub.shape[0]
        n_chunks = (n_vox + chunk - 1) // chunk
        per_thread = (n_chunks + n_threads - 1) // n_threads
        for t in numba.prange(n_threads):
            lo = np.empty(chunk, probs.dtype)
            hi = np.empty(chunk, probs.dtype)
            best_lo = np.empty(chunk, probs.dtype)
            best_arg = np.empty(chunk, np.int32)
            hi1 = np.empty(chunk, probs.dtype)
            hi1_arg = np.empty(chunk, np.int32)
            hi2 = np.empty(chunk, probs.dtype)
            low = np.empty(chunk, probs.dtype)
            vals = np.empty((n_members, n_classes), np.float64)
            sums = np.zeros((n_members + 1, n_classes), np.float64)
            for k in range(t * per_thread, min(n_chunks, (t + 1) * per_thread)):
                s0 = k * chunk
                n = min(chunk, n_vox - s0)
                for c in range(n_classes):
                    _min_max(probs, c, s0, n, lo, hi)
                    if c == 0:
                        for i in range(n):
                            best_lo[i] = lo[i]
                            best_arg[i] = 0
                            hi1[i] = hi[i]
                            hi1_arg[i] = 0
                            hi2[i] = hi[i]  # placeholder: "no other class yet" is handled at c == 1
                            low[i] = lo[i]
                    elif c == 1:
                        _first_update(lo, hi, n, best_lo, best_arg, hi1, hi1_arg, hi2, low)
                    else:
                        _update(c, lo, hi, n, best_lo, best_arg, hi1, hi1_arg, hi2, low)
                for i in range(n):
                    v = s0 + i
                    r = ref[v]
                    a = best_arg[i]
                    other = hi2[i] if hi1_arg[i] == a else hi1[i]
                    if not (hi1[i] <= limit and low[i] >= 0):
                        n_bad[t] += 1
                    if value(best_lo[i], lut) * keep > value(other, lut):
                        cm_unan[t, r, a] += 1
                        cm_safe[t, r, a] += 1
                        labels[v] = a
                        continue
                    labels[v] = 255
                    unanimous = True
                    a0 = 0
                    for m in range(n_members):
                        am = 0
                        bm = -np.inf
                        for c in range(n_classes):
                            x = value(probs[m, c, v], lut)
                            vals[m, c] = x
                            if x > bm:
                                bm = x
                                am = c
                        if m == 0:
                            a0 = am
                        elif am != a0:
                            unanimous = False
                    if unanimous:
                        cm_unan[t, r, a0] += 1
                        continue
                    for s in range(n_steps):
                        d = level[s]
                        m = member[s]
                        bs = -np.inf
                        lab = 0
                        for c in range(n_classes):
                            x = sums[d - 1, c] + vals[m, c]
                            sums[d, c] = x
                            if x > bs:
                                bs = x
                                lab = c
                        cm_sub[t, s, r, lab] += 1

    return kernel


@jit
def _min_max(probs, c, s0, n, lo, hi):
    row = probs[0, c, s0:s0 + n]
    for i in range(n):
        lo[i] = row[i]
        hi[i] = row[i]
    for m in range(1, probs.shape[0]):
        row = probs[m, c, s0:s0 + n]
        for i in range(n):
            x = row[i]
            lo[i] = min(lo[i], x)
            hi[i] = max(hi[i], x)


@jit
def _first_update(lo, hi, n, best_lo, best_arg, hi1, hi1_arg, hi2, low):
    """Class 1 against class 0 (the runners hold class 0)."""
    for i in range(n):
        gt = np.int32(lo[i] > best_lo[i])
        best_lo[i] = max(best_lo[i], lo[i])
        best_arg[i] = gt
        h0 = hi1[i]
        h = hi[i]
        hgt = np.int32(h > h0)
        hi1[i] = max(h0, h)
        hi2[i] = min(h0, h)
        hi1_arg[i] = hgt
        low[i] = min(low[i], lo[i])


@jit
def _update(c, lo, hi, n, best_lo, best_arg, hi1, hi1_arg, hi2, low):
    ci = np.int32(c)
    for i in range(n):
        gt = np.int32(lo[i] > best_lo[i])
        best_lo[i] = max(best_lo[i], lo[i])
        best_arg[i] += (ci - best_arg[i]) * gt
        h1 = hi1[i]
        h = hi[i]
        hgt = np.int32(h > h1)
        hi2[i] = max(hi2[i], min(h, h1))
        hi1[i] = max(h1, h)
        hi1_arg[i] += (ci - hi1_arg[i]) * hgt
        low[i] = min(low[i], lo[i])


_subset_pass_f16 = _make_subset_pass(_f16_value)
_subset_pass_f32 = _make_subset_pass(_f32_value)


@jit
def _weighted_labels(P, W, inv_total, out):
    """Argmax of the per-class-normalised weighted sum ``sum_m W[m, c] * P[i, m, c] * inv_total[c]``.

    Ties go to the lowest class.
    """
    n = P.shape[0]
    n_members = P.shape[1]
    n_classes = P.shape[2]
    for i in range(n):
        best = -np.inf
        lab = 0
        for c in range(n_classes):
            v = 0.0
            for m in range(n_members):
                v += W[m, c] * P[i, m, c]
            v *= inv_total[c]
            if v > best:
                best = v
                lab = c
        out[i] = lab


@jit
def _label_counts(lab, ref, case, count, tp, fp, fn):
    """Add each row's ``count`` to the tp / fp / fn of its case (a loop of its own: kept apart from the
    label computation, which then vectorises, this runs several times faster)."""
    for i in range(lab.shape[0]):
        r = ref[i]
        q = lab[i]
        k = case[i]
        w = count[i]
        if q == r:
            tp[k, r] += w
        else:
            fp[k, q] += w
            fn[k, r] += w


@jit
def _changed_counts(new, old, ref, case, count, tp, fp, fn):
    """Move the rows whose label changes from ``old`` to ``new`` in the tp / fp / fn counts."""
    for i in range(new.shape[0]):
        q = new[i]
        o = old[i]
        if q == o:
            continue
        r = ref[i]
        k = case[i]
        w = count[i]
        if o == r:
            tp[k, r] -= w
        else:
            fp[k, o] -= w
            fn[k, r] -= w
        if q == r:
            tp[k, r] += w
        else:
            fp[k, q] += w
            fn[k, r] += w


@jit
def _weighted_sums(P, W, out):
    """``out[i, c] = sum_m W[m, c] * P[i, m, c]`` (float64)."""
    n = P.shape[0]
    n_members = P.shape[1]
    n_classes = P.shape[2]
    for i in range(n):
        for c in range(n_classes):
            v = 0.0
            for m in range(n_members):
                v += W[m, c] * P[i, m, c]
            out[i, c] = v


@jit
def _member_delta_labels(P, S, member, delta, out):
    """Labels when member ``member``'s weight (the same for every class) changes by ``delta``.

    ``S`` holds the current unnormalised sums; with one weight per member, normalising by the total
    weight is a common positive factor and does not change the argmax.
    """
    n = P.shape[0]
    n_classes = P.shape[2]
    for i in range(n):
        best = -np.inf
        lab = 0
        for c in range(n_classes):
            v = S[i, c] + delta * P[i, member, c]
            if v > best:
                best = v
                lab = c
        out[i] = lab


@jit
def _best_other(S, inv_total, column, val, idx):
    """Per row: largest normalised value among classes other than ``column`` and its first index."""
    n = S.shape[0]
    n_classes = S.shape[1]
    for i in range(n):
        best = -np.inf
        lab = 0
        for c in range(n_classes):
            if c == column:
                continue
            v = S[i, c] * inv_total[c]
            if v > best:
                best = v
                lab = c
        val[i] = best
        idx[i] = lab


@jit
def _class_delta_labels(p_col, s_col, column, delta, inv_new, other_val, other_idx, out):
    """Labels when one member's weight for class ``column`` changes by ``delta``.

    ``p_col`` (n,) is that member's class-``column`` probabilities, ``s_col`` (n,) the current unnormalised
    sums of class ``column``; the class's new total weight is ``1 / inv_new``.
    """
    n = p_col.shape[0]
    for i in range(n):
        v = (s_col[i] + delta * p_col[i]) * inv_new
        o = other_val[i]
        out[i] = column if (v > o or (v == o and column < other_idx[i])) else other_idx[i]
