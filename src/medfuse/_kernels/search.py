"""Kernels of the ensemble search: every subset of members scored in one pass, and weighted re-scoring.

No validation here: :mod:`medfuse.search` and :mod:`medfuse.search.weights` normalise dtypes and layouts.

Layouts
-------
``probs``  (M, C, N) members' class probabilities of one case, flattened over the voxels of one box, as
           raw bits: uint16 for float16, uint32 for float32; C-contiguous.
``ref``    (N,) uint8 reference labels of the same voxels (all < C; checked by the caller).
``P``      (n, M, C) float32: the probabilities of the "contested" voxels (see below), voxel-major.

Sums of at most 8 float16 values are exact in float64 (every float16 in [0, 8] is a multiple of 2**-24
and the sum needs at most 27 significant bits), so the subset pass computes the exact mean and its argmax:
ties go to the lowest class index, exactly as ``argmax`` does.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32


@jit
def _argmax_rows(rows, n, best, arg):
    """``arg[j]`` = argmax over the rows of ``rows[:, j]`` for ``j < n`` (ties: lowest row), ``best[j]`` its value."""
    for j in range(n):
        best[j] = rows[0, j]
        arg[j] = 0
    for c in range(1, rows.shape[0]):
        src = rows[c]
        ci = np.int32(c)
        for j in range(n):
            x = src[j]
            gt = x > best[j]
            best[j] = x if gt else best[j]
            arg[j] = ci if gt else arg[j]


@jit
def _subset_chunks(k0, k1, t, probs, ref, level, member, chunk, keep, limit, cm_sub, cm_unan, cm_safe,
                   labels, n_bad, rows, out):
    """Chunks ``k0 .. k1`` of the subset pass (thread ``t``); see :func:`medfuse.search.scoring.run_case_pass`.

    The flat indices of the contested voxels of these chunks go to ``rows`` (in order) and their raw
    values to ``out`` (n, M, C), gathered while the chunk is in cache, as long as there is room; returns
    how many there are (more than ``rows.size``: the caller gathers them itself). The buffers come from
    the caller: an array grown inside the kernel slows the whole kernel down (allocation in the loop).

    ``probs`` (M, C, N) holds raw bits: uint16 for float16, uint32 for float32. For non-negative finite
    floats the order of the bits is the order of the values, and every negative value, infinity and NaN
    has larger bits than ``limit`` (the bits of the largest accepted value), so the hot loop is integer
    min / max only.

    Hot loop, per class c and voxel: ``lo = min_m p[m, c]``, ``hi = max_m p[m, c]`` (members four, two or
    one at a time; a group of three reads one row twice), folded into per-voxel runners: the class with the
    largest ``lo`` (c*), and the two largest ``hi`` with the first one's class. A voxel is safe when
    ``lo[c*] * keep > max_{k != c*} hi[k]``: then every member's argmax is c* and no per-class weighting can
    change it (``labels[v] = c*``). Every other voxel (``labels[v] = 255``) takes the slow path: members'
    argmaxes and, when they disagree, the depth-first walk over every subset, each subset's float64 sum made
    from its parent's by adding one member (exact for float16 inputs); both vectorised over blocks of
    contested voxels. Class indices are kept in the data's integer type so that the runner updates use the
    same vector lanes as the data.
    """
    n_members = probs.shape[0]
    n_classes = probs.shape[1]
    n_vox = probs.shape[2]
    n_steps = level.shape[0]
    zero = probs.dtype.type(0)
    lo = np.empty(chunk, probs.dtype)
    hi = np.empty(chunk, probs.dtype)
    best_lo = np.empty(chunk, probs.dtype)
    best_arg = np.empty(chunk, probs.dtype)  # class indices in the data's integer type: same vector lanes
    hi1 = np.empty(chunk, probs.dtype)
    hi1_arg = np.empty(chunk, probs.dtype)
    hi2 = np.empty(chunk, probs.dtype)
    block = 256
    idx = np.empty(chunk, np.int64)
    vals = np.empty((n_members, n_classes, block), np.float64)
    sums = np.empty((n_members + 1, n_classes, block), np.float64)
    best_v = np.empty(block, np.float64)
    arg_b = np.empty(block, np.int32)
    arg0 = np.empty(block, np.int32)
    agree = np.empty(block, np.int32)
    r_b = np.empty(block, np.int64)
    safe = np.zeros((n_classes, n_classes), np.int64)
    unan = np.zeros((n_classes, n_classes), np.int64)
    bad = 0
    n_out = 0
    capacity = rows.size
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_vox - s0)
        for i in range(n):  # the smallest pattern everywhere: class 0 then folds in like any other
            best_lo[i] = zero
            best_arg[i] = zero
            hi1[i] = zero
            hi1_arg[i] = zero
            hi2[i] = zero
        for c in range(n_classes):
            ci = probs.dtype.type(c)
            m = 0
            while m < n_members:
                left = n_members - m
                run = 4 if left >= 4 else (2 if left >= 2 else 1)
                first = m == 0
                last = m + run == n_members
                r0 = probs[m, c, s0:s0 + n]
                r1 = probs[m + run - 1, c, s0:s0 + n]  # = r0 when run == 1
                r2 = probs[m + min(2, run - 1), c, s0:s0 + n]
                r3 = probs[m + min(1, run - 1), c, s0:s0 + n]
                if not last:  # lo / hi of the members so far
                    for i in range(n):
                        a = min(min(r0[i], r1[i]), min(r2[i], r3[i]))
                        b = max(max(r0[i], r1[i]), max(r2[i], r3[i]))
                        lo[i] = a if first else min(lo[i], a)
                        hi[i] = b if first else max(hi[i], b)
                else:  # the last group: fold lo / hi straight into the runners
                    for i in range(n):
                        a = min(min(r0[i], r1[i]), min(r2[i], r3[i]))
                        b = max(max(r0[i], r1[i]), max(r2[i], r3[i]))
                        if not first:
                            a = min(lo[i], a)
                            b = max(hi[i], b)
                        x = best_lo[i]
                        h = hi1[i]
                        best_arg[i] = ci if a > x else best_arg[i]
                        best_lo[i] = max(x, a)
                        hi1_arg[i] = ci if b > h else hi1_arg[i]
                        hi2[i] = max(hi2[i], min(b, h))
                        hi1[i] = max(h, b)
                m += run
        # ---- per voxel: decide (vectorised), count the safe ones by runs, slow path for the others
        lab = labels[s0:s0 + n]
        ref_c = ref[s0:s0 + n]
        for i in range(n):
            a = best_arg[i]
            h = hi1[i]
            other = hi2[i] if hi1_arg[i] == a else h
            ok = _bits_to_float32(best_lo[i]) * keep > _bits_to_float32(other)
            lab[i] = np.uint8(a) if ok else np.uint8(255)
            bad += np.int64(h > limit)
        # label maps are spatially coherent: most neighbours share (reference, label); count runs
        prev = -1
        run_len = 0
        for i in range(n):
            key = np.int64(ref_c[i]) * 256 + np.int64(lab[i])
            if key == prev:
                run_len += 1
            else:
                if prev >= 0 and (prev & 255) != 255:
                    safe[prev >> 8, prev & 255] += run_len
                prev = key
                run_len = 1
        if prev >= 0 and (prev & 255) != 255:
            safe[prev >> 8, prev & 255] += run_len
        # slow path, in blocks of contested voxels: gather row by row (cache friendly), then members'
        # argmaxes and the subset walk vectorised over the block
        nb = 0
        for i in range(n):
            if lab[i] == 255:
                idx[nb] = i
                nb += 1
        for b0 in range(0, nb, block):
            nbb = min(block, nb - b0)
            room = n_out + nbb <= capacity
            for j in range(nbb):
                r_b[j] = ref_c[idx[b0 + j]]
                if room:
                    rows[n_out + j] = s0 + idx[b0 + j]
            for m in range(n_members):
                for c in range(n_classes):
                    row = probs[m, c, s0:s0 + n]
                    dst = vals[m, c]
                    for j in range(nbb):
                        raw = row[idx[b0 + j]]
                        dst[j] = _bits_to_float32(raw)
                        if room:
                            out[n_out + j, m, c] = raw
            n_out += nbb
            for j in range(nbb):
                agree[j] = 1
            for m in range(n_members):
                _argmax_rows(vals[m], nbb, best_v, arg_b)
                if m == 0:
                    for j in range(nbb):
                        arg0[j] = arg_b[j]
                else:
                    for j in range(nbb):
                        agree[j] &= np.int32(arg_b[j] == arg0[j])
            n_disputed = 0
            for j in range(nbb):
                if agree[j]:
                    unan[r_b[j], arg0[j]] += 1
                else:
                    n_disputed += 1
            if n_disputed == 0:
                continue
            for s in range(n_steps):
                d = level[s]
                m = member[s]
                for c in range(n_classes):
                    prev_row = sums[d - 1, c]
                    this_row = sums[d, c]
                    add = vals[m, c]
                    if d == 1:
                        for j in range(nbb):
                            this_row[j] = add[j]
                    else:
                        for j in range(nbb):
                            this_row[j] = prev_row[j] + add[j]
                _argmax_rows(sums[d], nbb, best_v, arg_b)
                for j in range(nbb):
                    if not agree[j]:
                        cm_sub[t, s, r_b[j], arg_b[j]] += 1
    for a in range(n_classes):
        for b in range(n_classes):
            cm_safe[t, a, b] += safe[a, b]
            cm_unan[t, a, b] += unan[a, b] + safe[a, b]
    n_bad[t] += bad
    return n_out


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
    """Add each row's ``count`` to the tp / fp / fn of its case (a loop of its own, kept apart from the
    label computation so that the latter vectorises)."""
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


# Remove, then add: each half is the update of _add_counts, written out so that this loop (run for every
# changed row of every search step) stays one flat loop; tests/_reference/twin_search.py checks both.
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


# ---- coordinate ascent (class-major layout: P (M, C, n) float32, S (C, n) float64; loops over rows vectorise)


@jit
def _sums_cm(P, W, out):
    """``out[c, i] = sum_m W[m, c] * P[m, c, i]``."""
    n_members, n_classes, n = P.shape
    for c in range(n_classes):
        o = out[c]
        for i in range(n):
            o[i] = 0.0
        for m in range(n_members):
            w = W[m, c]
            row = P[m, c]
            for i in range(n):
                o[i] += w * row[i]


@jit
def _member_trial(P, S, member, delta, best, lab):
    """Labels (into ``lab``) of ``S + delta * P[member]``: one member's weight changed for every class (a
    common normalisation does not change the argmax). Ties go to the lowest class."""
    n_classes, n = S.shape
    row = P[member, 0]
    s = S[0]
    for i in range(n):
        best[i] = s[i] + delta * row[i]
        lab[i] = 0
    for c in range(1, n_classes):
        row = P[member, c]
        s = S[c]
        for i in range(n):
            v = s[i] + delta * row[i]
            gt = v > best[i]
            best[i] = v if gt else best[i]
            lab[i] = c if gt else lab[i]


@jit
def _best_other_cm(S, inv_total, column, val, idx):
    """Per row: the largest normalised value among classes other than ``column``, and its first class."""
    n_classes, n = S.shape
    first = 1 if column == 0 else 0
    s = S[first]
    f = inv_total[first]
    for i in range(n):
        val[i] = s[i] * f
        idx[i] = first
    for c in range(first + 1, n_classes):
        if c == column:
            continue
        s = S[c]
        f = inv_total[c]
        for i in range(n):
            v = s[i] * f
            gt = v > val[i]
            val[i] = v if gt else val[i]
            idx[i] = c if gt else idx[i]


@jit
def _class_trial(p_row, s_row, column, delta, inv_new, other_val, other_idx, lab):
    """Labels when one member's weight for class ``column`` changes by ``delta``.

    ``p_row`` (n,) is that member's class-``column`` probabilities, ``s_row`` (n,) the current unnormalised
    sums of class ``column``; the class's new total weight is ``1 / inv_new``.
    """
    n = p_row.shape[0]
    for i in range(n):
        v = (s_row[i] + delta * p_row[i]) * inv_new
        o = other_val[i]
        lab[i] = column if (v > o or (v == o and column < other_idx[i])) else other_idx[i]


@jit
def _fg_score(tp, fp, fn, labels):
    """nnU-Net's foreground mean Dice of counts (N, C) over ``labels``: per label the mean over cases where
    it is present in reference or prediction, then the mean over labels present somewhere (NaN if none)."""
    n_cases = tp.shape[0]
    total = 0.0
    n_labels = 0
    for j in range(labels.shape[0]):
        c = labels[j]
        acc = 0.0
        k = 0
        for i in range(n_cases):
            den = 2.0 * tp[i, c] + fp[i, c] + fn[i, c]
            if den > 0:
                acc += 2.0 * tp[i, c] / den
                k += 1
        if k > 0:
            total += acc / k
            n_labels += 1
    return total / n_labels if n_labels > 0 else np.nan
