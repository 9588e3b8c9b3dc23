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

Chunks where many voxels are contested (at least one in :data:`PAIRWISE_FROM`: a poor member, shifted
models) take a branch-free path instead (integer votes only: with float64 weights the pairwise passes were
no faster than the table, measured), :func:`_pairwise_block`, on blocks of :data:`PAIR_BLOCK` voxels: member
by member, the score of its label ``s_j = w[j] + sum_{k != j} (w[k] if label_k == label_j)`` in one row,
folded at once into the best so far by the tie rule. Member 0's score is ``d``. A strict majority label is
held by one of the first ``ceil(M / 2)`` members and wins under every tie rule, so once those are folded in,
a block where every voxel has a strict majority is done: ``(M - 1) ceil(M / 2)`` short passes at most for
such blocks, ``M (M - 1)`` otherwise, where the table path costs a few mispredicted branches and scattered
table updates per contested voxel. Measured (``medfuse bench --only vote``, 5 members, 14 labels,
256 x 512 x 512, quiet machine): 19 ms at 100% unanimous voxels, 36 ms at 75%, 28 ms at 45%, against
SimpleITK's LabelVoting at 49x, 26x and 27x; the shortcut and table alone were 7x at 45%.

The score loop (four members, or one), the copy of member 0 (to a uint8 or uint16 output) and the
pairwise block are each written once, as helpers numba pastes into the kernel
(:func:`medfuse._kernels.raw.inline`).

Tie rules (``tie``): 0 ``lowest`` label; 1 ``undecided`` (write ``undecided`` when two labels share the
best score, like SimpleITK's LabelVoting); 2 ``first`` (the label of the earliest member among the
tied labels). Scores are sums in member order in the weights' dtype (uint8 / int32 counts for a plain
vote, float64 for a weighted one), compared exactly; the numpy twin sums in the same order.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .raw import _view, inline

__all__ = ["BLOCK", "PAIRWISE_FROM", "PAIR_BLOCK", "TIE_FIRST", "TIE_LOWEST", "TIE_UNDECIDED", "_vote_chunks"]

#: voxels per slow-path block
BLOCK = 64
#: a chunk takes the pairwise path when at least one voxel in PAIRWISE_FROM is contested (member 0 has no
#: strict majority there)
PAIRWISE_FROM = 64
#: voxels per pairwise block (the (M, PAIR_BLOCK) scores stay in L1)
PAIR_BLOCK = 512
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
    params : (3,) same dtype as weights
        ``[half, 0, pairwise]``: member 0's label wins outright where its score is ``> half``; a chunk
        takes the pairwise path when ``contested * pairwise >= voxels`` (``pairwise == 0``: never).
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
    pairwise = np.int64(params[2])
    n_cand = np.int64(params[3])
    d = np.empty(chunk, weights.dtype)
    g = np.empty((n_members, BLOCK), label_dtype)
    cnt = np.zeros(table_size, weights.dtype)
    sc = np.empty(PAIR_BLOCK, weights.dtype)  # pairwise path: the score row of one member's label
    td = np.empty(PAIR_BLOCK, weights.dtype)  # pairwise path: undecided flags
    bs = np.empty(PAIR_BLOCK, weights.dtype)
    bl = np.empty(PAIR_BLOCK, label_dtype)
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

        # ---- contested voxels (member 0 has no strict majority there), and member 0's largest label
        contested = 0
        for i in range(n):
            contested += 1 if d[i] <= half else 0
            top = max(top, r0[i])
        if contested > 0 and pairwise > 0 and contested * pairwise >= n:  # many: pairwise, branch-free
            slow += contested
            for b0 in range(0, n, PAIR_BLOCK):
                nb = min(PAIR_BLOCK, n - b0)
                if out_kind == 0:
                    _pairwise_block(addrs, label_size, label_dtype, weights, zero, s0 + b0, nb, d[b0:b0 + nb], half,
                                    n_cand, sc, td, bs, bl, tie, undecided, _view(out_addr + s0 + b0, nb, np.uint8))
                else:
                    _pairwise_block(addrs, label_size, label_dtype, weights, zero, s0 + b0, nb, d[b0:b0 + nb], half,
                                    n_cand, sc, td, bs, bl, tie, undecided,
                                    _view(out_addr + 2 * (s0 + b0), nb, np.uint16))
            continue

        # ---- member 0's label everywhere (right wherever it holds a strict majority); then the few
        # contested voxels, if any, by the table, 64 at a time
        if out_kind == 0:
            _copy_labels(r0, _view(out_addr + s0, n, np.uint8), n)
        else:
            _copy_labels(r0, _view(out_addr + 2 * s0, n, np.uint16), n)
        if contested == 0:
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
def _copy_labels(src, dst, n):
    """``dst[:n] = src[:n]`` (uint8 or uint16 labels into a uint8 or uint16 output)."""
    for i in range(n):
        dst[i] = src[i]


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


@inline
def _pairwise_block(addrs, label_size, label_dtype, weights, zero, v0, nb, d0, half, n_cand, sc, td, bs, bl, tie,
                    undecided, out):
    """The vote on voxels ``v0 .. v0 + nb`` without branches, one member at a time: the score of member
    ``j``'s label, ``s = w[j] + sum_{k != j} (w[k] if l_k == l_j)`` (member 0's is ``d0``, already computed),
    folded at once into the best so far by the tie rule; written to ``out``.

    A strict majority label is held by one of the first ``n_cand`` members (``ceil(M / 2)``: the others are
    fewer than a majority), and where one holds it, it wins under every tie rule. So once the first
    ``n_cand`` members are folded in and every voxel of the block has a best score above ``half``, the
    remaining members cannot change the result and are skipped (at most ``(M - 1) n_cand`` passes instead of
    ``M (M - 1)``). ``undecided`` is tracked as a flag set when a different label reaches the best score and
    cleared when a better one appears (a strict majority has no tie). One score row in L1, no ``(M, block)``
    table (whose rows could alias and keep LLVM's vectorised loops behind runtime checks).
    """
    n_members = addrs.size
    s = sc[:nb]
    tied = td[:nb]
    b = bs[:nb]
    lab = bl[:nb]
    l0 = _view(addrs[0] + label_size * v0, nb, label_dtype)
    for i in range(nb):
        b[i] = d0[i]
        lab[i] = l0[i]
        tied[i] = zero
    for j in range(1, n_members):
        if j >= n_cand:  # the candidates are in: done where every voxel has a strict majority
            lo = b[0]
            for i in range(nb):
                lo = min(lo, b[i])
            if lo > half:
                break
        lj = _view(addrs[j] + label_size * v0, nb, label_dtype)
        wj = weights[j]
        for i in range(nb):
            s[i] = wj
        for k in range(n_members):
            if k == j:
                continue
            lk = _view(addrs[k] + label_size * v0, nb, label_dtype)
            wk = weights[k]
            for i in range(nb):
                s[i] += wk if lk[i] == lj[i] else zero
        if tie == TIE_FIRST:  # strict: the earliest member among the best-scored labels
            for i in range(nb):
                v = s[i]
                gt = v > b[i]
                b[i] = v if gt else b[i]
                lab[i] = lj[i] if gt else lab[i]
        else:  # the lowest label among the best-scored; undecided: another label at the best score
            for i in range(nb):
                v = s[i]
                u = lj[i]
                gt = v > b[i]
                eq = (v == b[i]) & (u != lab[i])
                better = gt | (eq & (u < lab[i]))
                b[i] = v if better else b[i]
                lab[i] = u if better else lab[i]
                tied[i] = zero if gt else (wj if eq else tied[i])  # wj: 1 (plain votes only)
    if tie == TIE_UNDECIDED:
        for i in range(nb):
            out[i] = undecided if tied[i] != zero else lab[i]
    else:
        for i in range(nb):
            out[i] = lab[i]
