"""STAPLE kernels (private; the public wrappers are :func:`medfuse.fusion.staple` / ``staple_binary``).

STAPLE's expectation-maximisation sees a voxel only through the tuple of its M rater labels: two voxels
with the same tuple get the same posterior and add the same amount to every rater's confusion matrix.
So the work is split in three:

1. one pass over the voxels counts the distinct tuples (:func:`_histogram_dense`, a table indexed by the
   tuple's code ``((l_0 * R + l_1) * R + ...) * R + l_{M-1}`` with ``R`` the label count; or
   :func:`_codes` when that table would be too large, and the caller counts the codes with numpy);
2. EM runs on the U distinct tuples, each weighted by its count (:func:`_init_confusion`, :func:`_em`,
   :func:`_decide`, and :func:`_em_binary` for binary STAPLE): U x M x L work per iteration instead of
   N x M x L;
3. one pass writes each voxel the decision of its tuple (:func:`_label_dense`).

Members are passed by address like the vote kernel's (see :mod:`medfuse._kernels.raw`), all of one dtype.
Everything is float64 (SimpleITK's multi-label filter computes in float32, its binary filter in float64).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .raw import _view

__all__ = ["CHUNK", "_codes", "_decide", "_em", "_em_binary", "_histogram_dense", "_init_confusion",
           "_label_dense"]

#: voxels per chunk of the counting and labelling passes
CHUNK = 16384


@jit
def _chunk_codes(addrs, label_dtype, label_size, s0, n, radix, code):
    """``code[:n]`` = the tuple codes of voxels ``s0 .. s0 + n`` (member 0 most significant)."""
    for i in range(n):
        code[i] = 0
    for m in range(addrs.size):
        r = _view(addrs[m] + label_size * s0, n, label_dtype)
        for i in range(n):
            code[i] = code[i] * radix + np.int64(r[i])


@jit
def _histogram_dense(k0, k1, t, addrs, label_dtype, label_size, n_voxels, chunk, radix, counts):
    """Add the tuple codes of chunks ``k0 .. k1`` to ``counts[t]`` (shape (T, radix ** M), int64)."""
    code = np.empty(chunk, np.int64)
    row = counts[t]
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        _chunk_codes(addrs, label_dtype, label_size, s0, n, radix, code)
        for i in range(n):
            row[code[i]] += 1


@jit
def _codes(k0, k1, t, addrs, label_dtype, label_size, n_voxels, chunk, radix, codes):
    """``codes[s]`` = the tuple code of voxel ``s`` for the voxels of chunks ``k0 .. k1``."""
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        _chunk_codes(addrs, label_dtype, label_size, s0, n, radix, codes[s0:s0 + n])


@jit
def _label_dense(k0, k1, t, addrs, label_dtype, label_size, n_voxels, chunk, radix, table, out):
    """``out[s] = table[code of voxel s]`` for the voxels of chunks ``k0 .. k1``."""
    code = np.empty(chunk, np.int64)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        _chunk_codes(addrs, label_dtype, label_size, s0, n, radix, code)
        for i in range(n):
            out[s0 + i] = table[code[i]]


@jit
def _vote_of(tuple_, n_labels, votes):
    """SimpleITK ``LabelVoting`` of one tuple: the most frequent label, ``n_labels`` on a tie."""
    for c in range(n_labels):
        votes[c] = 0
    for m in range(tuple_.size):
        votes[tuple_[m]] += 1
    best = 0
    top = votes[0]
    for c in range(1, n_labels):
        if votes[c] > top:
            top = votes[c]
            best = c
        elif votes[c] == top:
            best = n_labels
    return best


@jit
def _init_confusion(tuples, counts, n_labels):
    """Initial confusion matrices, shape (M, L + 1, L), from the majority vote, as ITK builds them.

    ``conf[m, j, c]`` counts the voxels where rater ``m`` says ``j`` and the vote says ``c``; rows are
    then normalised to sum 1. ITK stores each matrix as a row-major block of L + 1 rows of L columns
    and counts an undecided vote (``c == L``, one past the last column) at flat position ``j * L + L``,
    which is ``conf[m, j + 1, 0]``: reproduced here.
    """
    n_tuples, n_members = tuples.shape
    conf = np.zeros((n_members, n_labels + 1, n_labels))
    votes = np.zeros(n_labels, np.int64)
    for u in range(n_tuples):
        c = _vote_of(tuples[u], n_labels, votes)
        for m in range(n_members):
            j = tuples[u, m]
            if c < n_labels:
                conf[m, j, c] += counts[u]
            else:
                conf[m, j + 1, 0] += counts[u]
    for m in range(n_members):
        for j in range(n_labels + 1):
            s = 0.0
            for c in range(n_labels):
                s += conf[m, j, c]
            if s > 0:
                for c in range(n_labels):
                    conf[m, j, c] /= s
    return conf


@jit
def _posterior(tuple_, prior, conf, w):
    """``w[c] = prior[c] * prod_m conf[m, tuple[m], c]`` (unnormalised)."""
    n_labels = w.size
    for c in range(n_labels):
        w[c] = prior[c]
    for m in range(tuple_.size):
        j = tuple_[m]
        for c in range(n_labels):
            w[c] *= conf[m, j, c]


@jit
def _em(tuples, counts, prior, conf, threshold, max_iterations):
    """Run STAPLE's EM on the tuple histogram; updates ``conf`` in place, returns the iterations run.

    Each iteration: E step per tuple (posterior ``w``, normalised when its sum is not 0), M step
    ``new[m, j, c] += count * w[c]`` at ``j = tuple[m]``, columns of ``new`` normalised over ``j`` (when
    not all 0); stop when no entry changed by ``threshold`` or more, or after ``max_iterations``
    (``<= 0``: no cap).
    """
    n_tuples, n_members = tuples.shape
    n_labels = prior.size
    w = np.empty(n_labels)
    new = np.empty_like(conf)
    iteration = 0
    while max_iterations <= 0 or iteration < max_iterations:
        iteration += 1
        new[:] = 0.0
        for u in range(n_tuples):
            _posterior(tuples[u], prior, conf, w)
            s = 0.0
            for c in range(n_labels):
                s += w[c]
            scale = counts[u] / s if s != 0 else counts[u]
            for m in range(n_members):
                j = tuples[u, m]
                for c in range(n_labels):
                    new[m, j, c] += w[c] * scale
        change = 0.0
        for m in range(n_members):
            for c in range(n_labels):
                s = 0.0
                for j in range(n_labels + 1):
                    s += new[m, j, c]
                if s != 0:
                    for j in range(n_labels + 1):
                        new[m, j, c] /= s
            for j in range(n_labels + 1):
                for c in range(n_labels):
                    change = max(change, abs(new[m, j, c] - conf[m, j, c]))
                    conf[m, j, c] = new[m, j, c]
        if change < threshold:
            break
    return iteration


@jit
def _decide(tuples, prior, conf, majority, undecided):
    """Label of each tuple: the largest posterior; on a tie (or all 0) ``undecided``, or, when
    ``undecided < 0``, the tuple's majority vote with ties to the lowest label (``majority`` scratch)."""
    n_tuples, n_members = tuples.shape
    n_labels = prior.size
    w = np.empty(n_labels)
    out = np.empty(n_tuples, np.int64)
    for u in range(n_tuples):
        _posterior(tuples[u], prior, conf, w)
        best = -1
        top = 0.0
        for c in range(n_labels):
            if w[c] > top:
                top = w[c]
                best = c
            elif not w[c] < top:
                best = -1
        if best < 0:
            if undecided >= 0:
                best = undecided
            else:
                for c in range(n_labels):
                    majority[c] = 0
                for m in range(n_members):
                    majority[tuples[u, m]] += 1
                best = 0
                for c in range(1, n_labels):
                    if majority[c] > majority[best]:
                        best = c
        out[u] = best
    return out


@jit
def _em_binary(patterns, counts, prior, max_iterations, tolerance):
    """Binary STAPLE (ITK ``STAPLEImageFilter``) on a histogram of foreground patterns.

    ``patterns`` (U, M) holds 1 where rater m marks the foreground. Starting from the fraction of raters
    marking each pattern, iterate: sensitivity ``p`` and specificity ``q`` of each rater, then the
    posterior ``prior * a / (prior * a + (1 - prior) * b)``; stop when every ``p`` and ``q`` moved by a
    squared amount ``<= tolerance`` since the previous iteration (never after the first), or after
    ``max_iterations`` (``<= 0``: no cap). Returns the posterior of each pattern and the iterations run.
    """
    n_tuples, n_members = patterns.shape
    w = np.empty(n_tuples)
    for u in range(n_tuples):
        s = 0
        for m in range(n_members):
            s += patterns[u, m]
        w[u] = s / n_members
    p = np.empty(n_members)
    q = np.empty(n_members)
    last_p = np.full(n_members, -10.0)
    last_q = np.full(n_members, -10.0)
    iteration = 0
    while max_iterations <= 0 or iteration < max_iterations:
        for m in range(n_members):
            p_num = 0.0
            p_den = 0.0
            q_num = 0.0
            q_den = 0.0
            for u in range(n_tuples):
                if patterns[u, m]:
                    p_num += counts[u] * w[u]
                else:
                    q_num += counts[u] * (1.0 - w[u])
                p_den += counts[u] * w[u]
                q_den += counts[u] * (1.0 - w[u])
            p[m] = p_num / p_den if p_den != 0 else np.nan
            q[m] = q_num / q_den if q_den != 0 else np.nan
        for u in range(n_tuples):
            a = 1.0
            b = 1.0
            for m in range(n_members):
                if patterns[u, m]:
                    a *= p[m]
                    b *= 1.0 - q[m]
                else:
                    a *= 1.0 - p[m]
                    b *= q[m]
            w[u] = prior * a / (prior * a + (1.0 - prior) * b)
        done = iteration != 0
        for m in range(n_members):
            if (p[m] - last_p[m]) ** 2 > tolerance or (q[m] - last_q[m]) ** 2 > tolerance:
                done = False
            last_p[m] = p[m]
            last_q[m] = q[m]
        iteration += 1
        if done:
            break
    return w, iteration
