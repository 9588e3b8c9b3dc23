"""Streaming accumulator kernels (private; used by :class:`medfuse.fusion.ProbabilityAccumulator` and
:class:`medfuse.fusion.VoteAccumulator`).

Both add one member (or one class channel of one member) into running per-class sums of the full
volume, so memory does not grow with the number of members. Sources are passed by address (see
:mod:`medfuse._kernels.raw`); work is split in contiguous ranges of rows / chunks handed out to the threads
(:func:`medfuse._kernels.threads.run_ranges`).

:func:`_add_rows`
    ``sums[c, box] += w[c] * member[c]`` for a probability member (float16 or float32, read as bits as
    in :mod:`medfuse._kernels.fusion`) or ``sums[label, box] += w[label]`` for a hard member (uint8 or
    uint16 labels), where the member covers a box of the volume: it is read as ``R`` rows of ``L``
    contiguous voxels and row ``r`` lands at flat offset ``row_offsets[r]`` of each class plane. Every
    rows range first adds class 0 of all its rows, then class 1, ... (long sequential streams). The
    largest bit pattern / label is tracked for the range and finiteness check, and every
    ``check_every``-th row has its class sums checked (probability members with all classes only).
:func:`_vote_add`
    ``counts[label, i] += w`` (uint8, uint16 or float32 counts) and, for the ``first`` tie rule, the
    index of the first member that voted for each label at each voxel.
:func:`_vote_labels`
    The label with the largest count per voxel under a tie rule (as in :mod:`medfuse._kernels.vote`).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .raw import _store_labels, _view
from .spaces import _load16, _load32, log_variant

__all__ = ["_add_rows", "_add_rows_log", "_vote_add", "_vote_labels"]

#: sentinel of the first-voter table: no member voted for this label here yet
NO_VOTER = 0xFFFF


@jit
def _add_rows(k0, k1, t, rows_per_chunk, dst_addr, dst_cstride, row_offsets, row_len, src_addr, src_kind,
              src_cstride, weights, check_every, tol, maxbits, sum_bad, sum_checked, tab, eps):
    """Add rows ``k0 * rows_per_chunk ..`` of a member into float32 class planes.

    Parameters
    ----------
    k0, k1, t : int
        Chunk range (of ``rows_per_chunk`` rows each) and its index.
    dst_addr, dst_cstride : int
        Address of class 0's plane of the float32 sums, and items between class planes.
    row_offsets : (R,) int64
        Flat offset (items) in a class plane of each member row.
    row_len : int
        Voxels per row (rows are contiguous in the member: row ``r`` of class ``c`` starts at item
        ``c * src_cstride + r * row_len``).
    src_kind : int
        0 float16, 1 float32 (probabilities, ``C = weights.size`` classes), 2 uint8, 3 uint16 (labels).
    weights : (C,) float32
        Weight of each class.
    check_every, tol :
        Check class sums on rows ``r % check_every == 0`` (0: never) against ``1 +- tol``.
    maxbits, sum_bad, sum_checked : (R,) uint64, int64, int64, zeroed
        Per range: largest bit pattern or label read; rows' voxels failing the sum check; checked.
    tab, eps :
        Log space (:data:`_add_rows_log`): probability members add ``w * log(max(p, eps))`` (see
        :mod:`medfuse._kernels.spaces`); hard members still add ``w[label]`` to their label's class only
        (the caller adds the rest). Unused by the linear kernel.
    """
    n_classes = weights.size
    n_rows = row_offsets.size
    r0 = k0 * rows_per_chunk
    r1 = min(n_rows, k1 * rows_per_chunk)
    if r0 >= r1:
        return
    top = np.uint64(0)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    if src_kind == 2 or src_kind == 3:
        planes = _view(dst_addr, n_classes * dst_cstride, np.float32)
        for r in range(r0, r1):
            off = row_offsets[r]
            if src_kind == 2:
                l8 = _view(src_addr + r * row_len, row_len, np.uint8)
                for i in range(row_len):
                    v = np.int64(l8[i])
                    if v < n_classes:
                        planes[v * dst_cstride + off + i] += weights[v]
                    top = max(top, np.uint64(v))
            else:
                l16 = _view(src_addr + 2 * r * row_len, row_len, np.uint16)
                for i in range(row_len):
                    v = np.int64(l16[i])
                    if v < n_classes:
                        planes[v * dst_cstride + off + i] += weights[v]
                    top = max(top, np.uint64(v))
        maxbits[t] = max(maxbits[t], top)
        return
    # One loop per stored type (uint8 / uint16 labels above, float16 / float32 bits below), as in the fusion
    # kernel: each inner loop reads one concrete type. Issue 10 item 3 folds such copies with inlined helpers
    # where the benchmark allows it.
    for c in range(n_classes):
        wc = weights[c]
        for r in range(r0, r1):
            dst = _view(dst_addr + 4 * (c * dst_cstride + row_offsets[r]), row_len, np.float32)
            if src_kind == 0:
                h = _view(src_addr + 2 * (c * src_cstride + r * row_len), row_len, np.uint16)
                x16 = np.uint16(0)
                for i in range(row_len):
                    b = h[i]
                    dst[i] += wc * _load16(b, tab, eps)
                    x16 = max(x16, b)
                top = max(top, np.uint64(x16))
            else:
                f = _view(src_addr + 4 * (c * src_cstride + r * row_len), row_len, np.uint32)
                x32 = np.uint32(0)
                for i in range(row_len):
                    e = f[i]
                    dst[i] += wc * _load32(e, tab, eps)
                    x32 = max(x32, e)
                top = max(top, np.uint64(x32))
    maxbits[t] = max(maxbits[t], top)
    if check_every <= 0:
        return
    s = np.empty(row_len, np.float32)
    bad = 0
    checked = 0
    for r in range(r0, r1):
        if r % check_every != 0:
            continue
        for i in range(row_len):
            s[i] = zero
        for c in range(n_classes):
            if src_kind == 0:
                h = _view(src_addr + 2 * (c * src_cstride + r * row_len), row_len, np.uint16)
                for i in range(row_len):
                    s[i] += _bits_to_float32(h[i])
            else:
                f = _view(src_addr + 4 * (c * src_cstride + r * row_len), row_len, np.uint32)
                for i in range(row_len):
                    s[i] += _bits_to_float32(f[i])
        for i in range(row_len):
            bad += 0 if abs(s[i] - one) <= tol else 1
        checked += row_len
    sum_bad[t] += bad
    sum_checked[t] += checked


@jit
def _vote_add(k0, k1, t, chunk, n_voxels, counts_addr, counts_kind, n_classes, labels_addr, label_size, weight,
              first_addr, member_index, max_label):
    """``counts[label, i] += weight`` on chunks ``k0 .. k1``; labels ``>= n_classes`` are only recorded.

    ``counts_kind``: 0 uint8, 1 uint16, 2 float32 (``(n_classes, n_voxels)``, C-contiguous).
    ``label_size``: 1 (uint8 labels) or 2 (uint16). ``first_addr`` (0: none) is a uint16
    ``(n_classes, n_voxels)`` table of the first member index that voted for each label, set to
    ``member_index`` where it still holds :data:`NO_VOTER` (zero-weight members count as voters, as in
    the ``first`` rule of :mod:`medfuse._kernels.vote`).
    """
    total = n_classes * n_voxels
    if counts_kind == 0:
        c8 = _view(counts_addr, total, np.uint8)
    elif counts_kind == 1:
        c16 = _view(counts_addr, total, np.uint16)
    else:
        c32 = _view(counts_addr, total, np.float32)
    track_first = first_addr != 0
    if track_first:
        voters = _view(first_addr, total, np.uint16)
    w8 = np.uint8(weight) if counts_kind == 0 else np.uint8(0)
    w16 = np.uint16(weight) if counts_kind == 1 else np.uint16(0)
    w32 = np.float32(weight)
    index = np.uint16(member_index)
    top = np.int64(0)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        if label_size == 1:
            l8 = _view(labels_addr + s0, n, np.uint8)
        else:
            l16 = _view(labels_addr + 2 * s0, n, np.uint16)
        for i in range(n):
            v = np.int64(l8[i]) if label_size == 1 else np.int64(l16[i])
            top = max(top, v)
            if v >= n_classes:
                continue
            j = v * n_voxels + s0 + i
            if counts_kind == 0:
                c8[j] += w8
            elif counts_kind == 1:
                c16[j] += w16
            else:
                c32[j] += w32
            if track_first and voters[j] == NO_VOTER:
                voters[j] = index
    max_label[t] = max(max_label[t], top)


@jit
def _vote_labels(k0, k1, t, chunk, n_voxels, counts_addr, counts_kind, n_classes, first_addr, tie, undecided,
                 out_addr, out_kind):
    """Per voxel, the label with the largest count (tie rule as in :mod:`medfuse._kernels.vote`)."""
    best = np.empty(chunk, np.float32)
    lab = np.empty(chunk, np.int64)
    tied = np.empty(chunk, np.uint8)
    first = np.empty(chunk, np.int64)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        for c in range(n_classes):
            j = c * n_voxels + s0
            if counts_kind == 0:
                c8 = _view(counts_addr + j, n, np.uint8)
            elif counts_kind == 1:
                c16 = _view(counts_addr + 2 * j, n, np.uint16)
            else:
                c32 = _view(counts_addr + 4 * j, n, np.float32)
            if first_addr != 0:
                fv = _view(first_addr + 2 * j, n, np.uint16)
            for i in range(n):
                if counts_kind == 0:
                    v = np.float32(c8[i])
                elif counts_kind == 1:
                    v = np.float32(c16[i])
                else:
                    v = c32[i]
                if c == 0:
                    best[i] = v
                    lab[i] = 0
                    tied[i] = 0
                    first[i] = np.int64(fv[i]) if first_addr != 0 else 0
                    continue
                b = best[i]
                if tie == 2:
                    f = np.int64(fv[i])
                    if v > b or (v == b and f < first[i]):
                        best[i] = v
                        lab[i] = c
                        first[i] = f
                elif v > b:
                    best[i] = v
                    lab[i] = c
                    tied[i] = 0
                elif v == b:
                    tied[i] = 1
        if tie == 1:
            for i in range(n):
                if tied[i] != 0:
                    lab[i] = undecided
        _store_labels(out_addr, out_kind, s0, lab, n)


#: :func:`_add_rows` in log space (see :mod:`medfuse._kernels.spaces`)
_add_rows_log = log_variant(_add_rows)
