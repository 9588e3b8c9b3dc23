"""Majority / weighted vote kernel (private; the public wrapper is :func:`medfuse.fusion.majority_vote`).

Members are M label maps of N voxels, passed by address (see :mod:`medfuse._kernels.raw`), all of one
dtype (``uint8`` or ``uint16``). Nothing of size M x N or C x N is allocated (no one-hot, no counts
volume).

Per chunk of a few thousand voxels, vectorised passes (four members per pass) compute the *score of
member 0's label*: ``d = w[0] + sum over m >= 1 of (w[m] if label_m == label_0 else 0)`` (and the largest label, for
validation). Where ``d`` exceeds half the total weight, member 0's label holds a strict majority and
wins under every tie rule; that covers the unanimous voxels and most boundary voxels, and the output
there is a plain copy of member 0. Only the remaining voxels, found 64 at a time with a vectorised
``min`` over ``d``, take the slow path: scores accumulated in a small per-range table indexed by label
(``cnt[label] += w[m]``, in member order), best label by the tie rule, table reset.

The score loop (four members, or one) and the copy of member 0 (to a uint8 or uint16 output) are each
written once, as helpers numba pastes into the kernel (:func:`medfuse._kernels.raw.inline`).

Tie rules (``tie``): 0 ``lowest`` label; 1 ``undecided`` (write ``undecided`` when two labels share the
best score, like SimpleITK's LabelVoting); 2 ``first`` (the label of the earliest member among the
tied labels). Scores are sums in member order in the weights' dtype (uint8 / int32 counts for a plain
vote, float64 for a weighted one), compared exactly; the numpy twin sums in the same order.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .raw import _view, inline

__all__ = ["BLOCK", "TIE_FIRST", "TIE_LOWEST", "TIE_UNDECIDED", "_vote_chunks"]

#: voxels per slow-path block
BLOCK = 64
TIE_LOWEST, TIE_UNDECIDED, TIE_FIRST = 0, 1, 2


@jit
def _vote_chunks(k0, k1, t, addrs, label_dtype, label_size, weights, params, table_size, n_voxels, chunk, tie,
                 undecided, out_addr, out_kind, max_label, n_slow):
    """Vote on chunks ``k0 .. k1`` of M label maps.

    Parameters
    ----------
    k0, k1, t : int
        Chunk range and its index (row of the per-range outputs).
    addrs : (M,) int64
        Base address of each label map (``n_voxels`` items of ``label_dtype``, contiguous).
    label_dtype, label_size : numpy integer type, int
        ``np.uint8`` (1 byte) or ``np.uint16`` (2 bytes).
    weights : (M,) uint8, int32 or float64
        Vote weight of each member.
    params : (2,) same dtype as weights
        ``[half, 0]``: member 0's label wins outright where its score is ``> half``.
    table_size : int
        Entries of the per-range score table (256 or 65536: every value of ``label_dtype``).
    tie, undecided : int
        Tie rule (``TIE_*``) and the label written for undecided voxels.
    out_addr, out_kind : int
        Output labels (uint8 if ``out_kind == 0`` else uint16).
    max_label, n_slow : (R,) int64, zeroed
        Per range: largest label seen; voxels that took the slow path.
    """
    n_members = addrs.size
    half = params[0]
    zero = params[1]
    d = np.empty(chunk, weights.dtype)
    g = np.empty((n_members, BLOCK), label_dtype)
    cnt = np.zeros(table_size, weights.dtype)
    top = label_dtype(0)
    slow = 0
    w0 = weights[0]
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        r0 = _view(addrs[0] + label_size * s0, n, label_dtype)

        # ---- score of member 0's label (members 1.. added four at a time), and the largest label
        if n_members == 1:
            for i in range(n):
                d[i] = w0
        m = 1
        while m < n_members:
            if m + 4 <= n_members:
                top = _add_agreement(d, r0, addrs, label_size, label_dtype, weights, w0, zero, m, s0, n, top, 4)
                m += 4
            else:
                top = _add_agreement(d, r0, addrs, label_size, label_dtype, weights, w0, zero, m, s0, n, top, 1)
                m += 1

        # ---- member 0's label everywhere (right wherever it holds a strict majority)
        if out_kind == 0:
            top = _copy_labels(r0, _view(out_addr + s0, n, np.uint8), n, top)
        else:
            top = _copy_labels(r0, _view(out_addr + 2 * s0, n, np.uint16), n, top)

        # ---- slow path, 64 voxels at a time (none in a chunk where member 0 wins everywhere)
        lo = d[0]
        for i in range(n):
            lo = min(lo, d[i])
        if lo > half:
            continue
        for b0 in range(0, n, BLOCK):
            nb = min(BLOCK, n - b0)
            db = d[b0:b0 + nb]
            lo = db[0]
            for i in range(nb):
                lo = min(lo, db[i])
            if lo > half:
                continue
            for m in range(n_members):
                rb = _view(addrs[m] + label_size * (s0 + b0), nb, label_dtype)
                for i in range(nb):
                    g[m, i] = rb[i]
            for i in range(nb):
                if db[i] > half:
                    continue
                slow += 1
                for m in range(n_members):
                    cnt[g[m, i]] += weights[m]
                best_label = g[0, i]
                best_score = cnt[best_label]
                for m in range(1, n_members):
                    lm = g[m, i]
                    sm = cnt[lm]
                    if sm > best_score or (tie == TIE_LOWEST and sm == best_score and lm < best_label):
                        best_label = lm
                        best_score = sm
                result = np.int64(best_label)
                if tie == TIE_UNDECIDED:
                    for m in range(n_members):
                        lm = g[m, i]
                        if lm != best_label and cnt[lm] == best_score:
                            result = undecided
                for m in range(n_members):
                    cnt[g[m, i]] = zero
                if out_kind == 0:
                    _view(out_addr + s0 + b0 + i, 1, np.uint8)[0] = result
                else:
                    _view(out_addr + 2 * (s0 + b0 + i), 1, np.uint16)[0] = result
    max_label[t] = max(max_label[t], np.int64(top))
    n_slow[t] += slow


@inline
def _copy_labels(src, dst, n, top):
    """``dst[:n] = src[:n]``; the largest of ``top`` and the labels copied."""
    for i in range(n):
        v = src[i]
        dst[i] = v
        top = max(top, v)
    return top


@inline
def _add_agreement(d, r0, addrs, label_size, label_dtype, weights, w0, zero, m, s0, n, top, size):
    """``d += w[j]`` where member ``j`` agrees with member 0, for members ``m .. m + size - 1`` (``size``, 1 or
    4, is a constant at each call site: numba prunes the other branch before typing); ``d = w0 + ...``
    when ``m == 1``. Returns the largest of ``top`` and their labels."""
    first = m == 1
    q1 = _view(addrs[m] + label_size * s0, n, label_dtype)
    u1 = weights[m]
    if size == 4:
        q2 = _view(addrs[m + 1] + label_size * s0, n, label_dtype)
        q3 = _view(addrs[m + 2] + label_size * s0, n, label_dtype)
        q4 = _view(addrs[m + 3] + label_size * s0, n, label_dtype)
        u2 = weights[m + 1]
        u3 = weights[m + 2]
        u4 = weights[m + 3]
    for i in range(n):
        v0 = r0[i]
        v1 = q1[i]
        e = w0 if first else d[i]
        e += u1 if v1 == v0 else zero
        if size == 4:
            v2 = q2[i]
            v3 = q3[i]
            v4 = q4[i]
            e += u2 if v2 == v0 else zero
            e += u3 if v3 == v0 else zero
            e += u4 if v4 == v0 else zero
            v1 = max(max(v1, v2), max(v3, v4))
        d[i] = e
        top = max(top, v1)
    return top
