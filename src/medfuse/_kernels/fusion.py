"""Probability fusion kernel (private; the public wrappers are in :mod:`medfuse.fusion`).

One pass reads every member once and writes the label map (argmax of the weighted mean) and/or the
weighted mean itself; nothing of size M x C x voxels (or, for labels, C x voxels) is ever allocated.

Layout
    Members are not stacked: the wrapper passes each member's base address, kind and channel stride
    (see :mod:`medfuse._kernels.raw`), so one compiled signature serves any member count and any mix of
    float16 / float32 probability members and uint8 / uint16 hard (label map) members. A probability
    member is ``(C, N)`` with contiguous rows (any channel stride); a hard member is ``(N,)``.
Chunks
    The N voxels are cut into chunks (:data:`medfuse.fusion.FUSION_CHUNK` voxels). :func:`_fuse_chunks`
    processes a contiguous range of chunks with two float32 rows of one chunk (the class sum, the running
    maximum) and one of ``check_size`` voxels (the sampled class sums); the wrapper hands out ranges to
    the threads (:func:`medfuse._kernels.threads.run_ranges`). Per chunk, classes are taken in order; per
    class, members are added in member order, four at a time when four consecutive members have the same
    kind (one load and store of the class sum per four members; five when five end a run of their kind,
    so a 5-fold ensemble makes one pass instead of two).
Argmax, class after class
    The label output is the running argmax: it starts at label 0 and maximum ``-inf``, and each class
    sum that beats the maximum (strict ``>``, so ties keep the lowest class) replaces it. When the last
    member group of a class is four or five probability members and the only output is uint8 labels,
    that loop does the comparison itself, so the class sum never leaves registers; otherwise a short
    loop over the class sum follows. No ``(C, chunk)`` accumulator exists: at a chunk of 64K voxels it
    would not fit in L2, while the two rows do, and long chunks give the hardware prefetcher long runs.
Software prefetch
    The 4- and 5-member loops that fold the argmax (the label-fusion hot path) run in steps of
    :data:`STEP_BYTES` per member; each step first asks for the cache lines :data:`PREFETCH_AHEAD` bytes
    further on in every member (``prefetcht0``, see :func:`medfuse._kernels.raw._prefetch`): the hardware
    prefetchers bring the streams into L2 but not far enough into L1 for five streams at once. The
    structure costs compile time, so the loops that write the class sum (the mean output) stay plain.
One flat function, on purpose
    The work on a range is one function, with near-copies of its member-group loop per kind (float16,
    float32), group size (1, 4, 5) and argmax (folded, plain). They are kept because numba compiles
    helpers slowly, not because they run faster: written once as ``numba.njit(inline="always")``
    helpers (one loop for every kind, size and argmax, 374 lines instead of 566, bit-identical), the
    kernel's first call took 2.3x as long (27.4-37.8 s against 11.7-16.6 s, 3 fresh processes each,
    alternating, on the loaded 2-core VM; numba deep-copies a helper's IR at every call site and types
    and lowers the whole group code before LLVM drops the dead members), while running as fast (0.93-1.01
    of the flat kernel's time for float16, 0.80-0.88 for float32, two runs). Pasting in only the cold parts
    (hard members, argmax step, label reset, sum check) still cost +20% (14.1 against 11.7 s, best of
    3). Ordinary ``@jit`` helpers are compiled on their own and re-optimised where inlined (three times
    the compile time). See "Kernel design notes" in ``docs/performance.md``. A reader's map: per chunk,
    per class, the loop over member groups branches to hard members, float16 groups (5, 4, 1) and float32
    groups (5, 4, 1), the 4- and 5-member groups each with a folded (argmax) and a plain loop; after the
    groups comes the argmax step unless a loop folded it; after the classes, the sampled sum check.
Arithmetic
    ``acc = 0; acc += w[m, c] * p_m[c]`` for m = 0, 1, ... in float32, never contracted to FMA (no
    fastmath); a hard member adds ``w[m, c]`` where its label is ``c`` and ``0`` elsewhere. The numpy
    twin in ``tests/_reference/twin_fusion.py`` does exactly the same operations, so results are bit-identical.
    float16 is read as uint16 and converted in registers (:mod:`medfuse._kernels.f16`). The log-space
    kernels run this body with other loads: :data:`_fuse_chunks_log` adds ``w * log(max(p, eps))``,
    ``product_variant(_fuse_chunks)`` multiplies ``max(p, eps) * 2**s`` (its source rewritten by
    :func:`medfuse._kernels.spaces.product_variant`; weights 1).
Checks, in the same pass
    * range and finiteness of every value: the maximum raw bit pattern per member. A float is finite
      and in ``[+0, 1]`` iff its pattern is ``<= bits(1.0)`` (:data:`medfuse._kernels.f16.ONE_BITS`);
      for a hard member the maximum is its largest label (a negative label, read unsigned, is huge).
      It costs one integer ``max`` per value, which the memory-bound loop hides.
    * sums over classes, on a sample: ``check_size`` voxels of every ``check_every``-th chunk, at an
      offset that moves from chunk to chunk (so the sample is not always the top rows of a slice), are
      re-read after the chunk and the voxels whose per-member class sum is off 1 by more than ``tol``
      are counted.
    The wrapper turns those numbers into errors (re-checking a flagged member exactly with numpy).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .kinds import KIND_F16, KIND_F32, KIND_U8, KIND_U16
from .raw import _prefetch, _view
from .spaces import _hard_values, _load16, _load32, log_variant

__all__ = ["ITEMSIZE", "KIND_F16", "KIND_F32", "KIND_U8", "KIND_U16", "_fuse_chunks", "_fuse_chunks_log"]

#: bytes per item of each kind
ITEMSIZE = (2, 4, 1, 2)
#: the 4- and 5-member loops that fold the argmax run in steps of STEP_BYTES per member (4 cache lines),
#: each step first prefetching into L1 the lines PREFETCH_AHEAD bytes further on in every member it reads
STEP_BYTES = 256
STEP_F16 = STEP_BYTES // 2
STEP_F32 = STEP_BYTES // 4
PREFETCH_AHEAD = 1024


@jit
def _fuse_chunks(k0, k1, t, addrs, kinds, cstrides, weights, n_voxels, chunk, check_every, check_size, tol,
                 out_addr, out_kind, mean_addr, maxbits, sum_bad, sum_checked, tab, eps):
    """Weighted mean of M members over C classes on chunks ``k0 .. k1``, as labels and/or probabilities.

    Parameters
    ----------
    k0, k1, t : int
        Chunk range and its index (row of the per-range outputs).
    addrs, kinds, cstrides : (M,) int64
        Base address, kind (``KIND_*``) and channel stride in items of each member.
    weights : (M, C) float32
        Weight of each member and class (the wrapper normalises them per class).
    n_voxels, chunk : int
        Voxels per channel; voxels per chunk.
    check_every, check_size : int
        Sum-check ``check_size`` voxels of the chunks ``k`` with ``k % check_every == 0`` (0: never).
    tol : float32
        Allowed deviation of a member's class sum from 1.
    out_addr, out_kind : int
        Label output (``n_voxels`` items, uint8 if ``out_kind == 0`` else uint16); 0: no labels.
    mean_addr : int
        float32 ``(C, n_voxels)`` C-contiguous output of the weighted mean, summed in place; 0: no mean.
    maxbits : (R, M) uint64, zeroed
        Per range and member: largest raw bit pattern (probability member) or label (hard member).
    sum_bad : (R, M) int64, zeroed; sum_checked : (R,) int64, zeroed
        Per range: voxels failing the sum check, per member; voxels checked.
    tab : (65536,) float32 (log space) or (1,) float32 (unused); eps : float32
        Log space (:data:`_fuse_chunks_log`): float16 members add ``w * tab[bits]``, float32 members
        ``w * log(max(p, eps))``. The linear kernel ignores both.
    """
    n_members = addrs.size
    n_classes = weights.shape[1]
    row = np.empty(chunk, np.float32)  # the class sum being accumulated (unless it goes to mean_addr)
    best = np.empty(chunk, np.float32)  # running maximum over the classes done so far
    s = np.empty(max(0, min(chunk, check_size)), np.float32)  # class sums of the sampled voxels
    zero = np.float32(0.0)
    one = np.float32(1.0)
    hot, cold = _hard_values(eps, tab)  # what a hard member adds where its label is / is not the class
    # the last group of a class folds the argmax into its loop when it is 4 or 5 probability members
    # and the only output is uint8 labels
    fold_ok = out_addr != 0 and out_kind == 0 and mean_addr == 0
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        if out_addr != 0:  # labels are written in place, class after class: start from -inf / label 0
            for i in range(n):
                best[i] = -np.inf
            if out_kind == 0:
                lab8 = _view(out_addr + s0, n, np.uint8)
                for i in range(n):
                    lab8[i] = 0
            else:
                lab16 = _view(out_addr + 2 * s0, n, np.uint16)
                for i in range(n):
                    lab16[i] = 0

        # ---- per class: a = sum over members, in order, of w[m, c] * member_m[c]; then the argmax step
        for c in range(n_classes):
            if mean_addr != 0:
                a = _view(mean_addr + 4 * (c * n_voxels + s0), n, np.float32)
            else:
                a = row[:n]
            folded = False
            m = 0
            while m < n_members:
                kind = kinds[m]
                first = m == 0
                run = 1  # consecutive members of this kind, from m
                while run < 4 and m + run < n_members and kinds[m + run] == kind:
                    run += 1
                if (run == 4 and kind != KIND_U8 and kind != KIND_U16 and m + 4 < n_members and kinds[m + 4] == kind
                        and (m + 5 == n_members or kinds[m + 5] != kind)):
                    run = 5  # five members that end their run (a 5-fold ensemble): one pass, not 4 + 1
                fold = fold_ok and run >= 4 and m + run == n_members
                if kind in (KIND_U8, KIND_U16):
                    # hard member: one-hot of its labels, never materialised
                    run = 1
                    wc = weights[m, c] * hot  # a hard member counts as its one-hot: hot / cold values
                    wl = weights[m, c] * cold
                    if kind == KIND_U8:
                        l8 = _view(addrs[m] + s0, n, np.uint8)
                        x8 = np.uint8(0)
                        for i in range(n):
                            v8 = l8[i]
                            u = zero if first else a[i]
                            u += wc if v8 == c else wl
                            a[i] = u
                            x8 = max(x8, v8)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(x8))
                    else:
                        l16 = _view(addrs[m] + 2 * s0, n, np.uint16)
                        x16 = np.uint16(0)
                        for i in range(n):
                            v16 = l16[i]
                            u = zero if first else a[i]
                            u += wc if v16 == c else wl
                            a[i] = u
                            x16 = max(x16, v16)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(x16))
                elif kind == KIND_F16:
                    if run == 5:
                        p0 = addrs[m] + 2 * (c * cstrides[m] + s0)
                        h0 = _view(p0, n, np.uint16)
                        p1 = addrs[m + 1] + 2 * (c * cstrides[m + 1] + s0)
                        h1 = _view(p1, n, np.uint16)
                        p2 = addrs[m + 2] + 2 * (c * cstrides[m + 2] + s0)
                        h2 = _view(p2, n, np.uint16)
                        p3 = addrs[m + 3] + 2 * (c * cstrides[m + 3] + s0)
                        h3 = _view(p3, n, np.uint16)
                        p4 = addrs[m + 4] + 2 * (c * cstrides[m + 4] + s0)
                        h4 = _view(p4, n, np.uint16)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        w4 = weights[m + 4, c]
                        y0 = y1 = y2 = y3 = y4 = np.uint16(0)
                        if fold:
                            lab8 = _view(out_addr + s0, n, np.uint8)
                            ci = np.uint8(c)
                            for j0 in range(0, n, STEP_F16):  # STEP_BYTES per member, prefetching
                                ahead = 2 * j0 + PREFETCH_AHEAD
                                for line in range(0, STEP_BYTES, 64):
                                    _prefetch(p0 + ahead + line)
                                    _prefetch(p1 + ahead + line)
                                    _prefetch(p2 + ahead + line)
                                    _prefetch(p3 + ahead + line)
                                    _prefetch(p4 + ahead + line)
                                j1 = min(j0 + STEP_F16, n)
                                g0 = h0[j0:j1]
                                g1 = h1[j0:j1]
                                g2 = h2[j0:j1]
                                g3 = h3[j0:j1]
                                g4 = h4[j0:j1]
                                bs = best[j0:j1]
                                ls = lab8[j0:j1]
                                as_ = a[j0:j1]
                                for i in range(j1 - j0):
                                    b0 = g0[i]
                                    b1 = g1[i]
                                    b2 = g2[i]
                                    b3 = g3[i]
                                    b4 = g4[i]
                                    u = zero if first else as_[i]
                                    u += w0 * _load16(b0, tab, eps)
                                    u += w1 * _load16(b1, tab, eps)
                                    u += w2 * _load16(b2, tab, eps)
                                    u += w3 * _load16(b3, tab, eps)
                                    u += w4 * _load16(b4, tab, eps)
                                    b = bs[i]
                                    gt = u > b
                                    bs[i] = u if gt else b
                                    ls[i] = ci if gt else ls[i]
                                    y0 = max(y0, b0)
                                    y1 = max(y1, b1)
                                    y2 = max(y2, b2)
                                    y3 = max(y3, b3)
                                    y4 = max(y4, b4)
                            folded = True
                        else:
                            for i in range(n):
                                b0 = h0[i]
                                b1 = h1[i]
                                b2 = h2[i]
                                b3 = h3[i]
                                b4 = h4[i]
                                u = zero if first else a[i]
                                u += w0 * _load16(b0, tab, eps)
                                u += w1 * _load16(b1, tab, eps)
                                u += w2 * _load16(b2, tab, eps)
                                u += w3 * _load16(b3, tab, eps)
                                u += w4 * _load16(b4, tab, eps)
                                a[i] = u
                                y0 = max(y0, b0)
                                y1 = max(y1, b1)
                                y2 = max(y2, b2)
                                y3 = max(y3, b3)
                                y4 = max(y4, b4)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(y0))
                        maxbits[t, m + 1] = max(maxbits[t, m + 1], np.uint64(y1))
                        maxbits[t, m + 2] = max(maxbits[t, m + 2], np.uint64(y2))
                        maxbits[t, m + 3] = max(maxbits[t, m + 3], np.uint64(y3))
                        maxbits[t, m + 4] = max(maxbits[t, m + 4], np.uint64(y4))
                    elif run == 4:
                        p0 = addrs[m] + 2 * (c * cstrides[m] + s0)
                        h0 = _view(p0, n, np.uint16)
                        p1 = addrs[m + 1] + 2 * (c * cstrides[m + 1] + s0)
                        h1 = _view(p1, n, np.uint16)
                        p2 = addrs[m + 2] + 2 * (c * cstrides[m + 2] + s0)
                        h2 = _view(p2, n, np.uint16)
                        p3 = addrs[m + 3] + 2 * (c * cstrides[m + 3] + s0)
                        h3 = _view(p3, n, np.uint16)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        y0 = y1 = y2 = y3 = np.uint16(0)
                        if fold:
                            lab8 = _view(out_addr + s0, n, np.uint8)
                            ci = np.uint8(c)
                            for j0 in range(0, n, STEP_F16):  # STEP_BYTES per member, prefetching
                                ahead = 2 * j0 + PREFETCH_AHEAD
                                for line in range(0, STEP_BYTES, 64):
                                    _prefetch(p0 + ahead + line)
                                    _prefetch(p1 + ahead + line)
                                    _prefetch(p2 + ahead + line)
                                    _prefetch(p3 + ahead + line)
                                j1 = min(j0 + STEP_F16, n)
                                g0 = h0[j0:j1]
                                g1 = h1[j0:j1]
                                g2 = h2[j0:j1]
                                g3 = h3[j0:j1]
                                bs = best[j0:j1]
                                ls = lab8[j0:j1]
                                as_ = a[j0:j1]
                                for i in range(j1 - j0):
                                    b0 = g0[i]
                                    b1 = g1[i]
                                    b2 = g2[i]
                                    b3 = g3[i]
                                    u = zero if first else as_[i]
                                    u += w0 * _load16(b0, tab, eps)
                                    u += w1 * _load16(b1, tab, eps)
                                    u += w2 * _load16(b2, tab, eps)
                                    u += w3 * _load16(b3, tab, eps)
                                    b = bs[i]
                                    gt = u > b
                                    bs[i] = u if gt else b
                                    ls[i] = ci if gt else ls[i]
                                    y0 = max(y0, b0)
                                    y1 = max(y1, b1)
                                    y2 = max(y2, b2)
                                    y3 = max(y3, b3)
                            folded = True
                        else:
                            for i in range(n):
                                b0 = h0[i]
                                b1 = h1[i]
                                b2 = h2[i]
                                b3 = h3[i]
                                u = zero if first else a[i]
                                u += w0 * _load16(b0, tab, eps)
                                u += w1 * _load16(b1, tab, eps)
                                u += w2 * _load16(b2, tab, eps)
                                u += w3 * _load16(b3, tab, eps)
                                a[i] = u
                                y0 = max(y0, b0)
                                y1 = max(y1, b1)
                                y2 = max(y2, b2)
                                y3 = max(y3, b3)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(y0))
                        maxbits[t, m + 1] = max(maxbits[t, m + 1], np.uint64(y1))
                        maxbits[t, m + 2] = max(maxbits[t, m + 2], np.uint64(y2))
                        maxbits[t, m + 3] = max(maxbits[t, m + 3], np.uint64(y3))
                    else:
                        run = 1
                        p0 = addrs[m] + 2 * (c * cstrides[m] + s0)
                        h0 = _view(p0, n, np.uint16)
                        w0 = weights[m, c]
                        y0 = np.uint16(0)
                        for i in range(n):
                            b0 = h0[i]
                            u = zero if first else a[i]
                            u += w0 * _load16(b0, tab, eps)
                            a[i] = u
                            y0 = max(y0, b0)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(y0))
                else:  # KIND_F32, read as uint32 bits
                    if run == 5:
                        q0 = addrs[m] + 4 * (c * cstrides[m] + s0)
                        f0 = _view(q0, n, np.uint32)
                        q1 = addrs[m + 1] + 4 * (c * cstrides[m + 1] + s0)
                        f1 = _view(q1, n, np.uint32)
                        q2 = addrs[m + 2] + 4 * (c * cstrides[m + 2] + s0)
                        f2 = _view(q2, n, np.uint32)
                        q3 = addrs[m + 3] + 4 * (c * cstrides[m + 3] + s0)
                        f3 = _view(q3, n, np.uint32)
                        q4 = addrs[m + 4] + 4 * (c * cstrides[m + 4] + s0)
                        f4 = _view(q4, n, np.uint32)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        w4 = weights[m + 4, c]
                        z0 = z1 = z2 = z3 = z4 = np.uint32(0)
                        if fold:
                            lab8 = _view(out_addr + s0, n, np.uint8)
                            ci = np.uint8(c)
                            for j0 in range(0, n, STEP_F32):  # STEP_BYTES per member, prefetching
                                ahead = 4 * j0 + PREFETCH_AHEAD
                                for line in range(0, STEP_BYTES, 64):
                                    _prefetch(q0 + ahead + line)
                                    _prefetch(q1 + ahead + line)
                                    _prefetch(q2 + ahead + line)
                                    _prefetch(q3 + ahead + line)
                                    _prefetch(q4 + ahead + line)
                                j1 = min(j0 + STEP_F32, n)
                                g0 = f0[j0:j1]
                                g1 = f1[j0:j1]
                                g2 = f2[j0:j1]
                                g3 = f3[j0:j1]
                                g4 = f4[j0:j1]
                                bs = best[j0:j1]
                                ls = lab8[j0:j1]
                                as_ = a[j0:j1]
                                for i in range(j1 - j0):
                                    e0 = g0[i]
                                    e1 = g1[i]
                                    e2 = g2[i]
                                    e3 = g3[i]
                                    e4 = g4[i]
                                    u = zero if first else as_[i]
                                    u += w0 * _load32(e0, tab, eps)
                                    u += w1 * _load32(e1, tab, eps)
                                    u += w2 * _load32(e2, tab, eps)
                                    u += w3 * _load32(e3, tab, eps)
                                    u += w4 * _load32(e4, tab, eps)
                                    b = bs[i]
                                    gt = u > b
                                    bs[i] = u if gt else b
                                    ls[i] = ci if gt else ls[i]
                                    z0 = max(z0, e0)
                                    z1 = max(z1, e1)
                                    z2 = max(z2, e2)
                                    z3 = max(z3, e3)
                                    z4 = max(z4, e4)
                            folded = True
                        else:
                            for i in range(n):
                                e0 = f0[i]
                                e1 = f1[i]
                                e2 = f2[i]
                                e3 = f3[i]
                                e4 = f4[i]
                                u = zero if first else a[i]
                                u += w0 * _load32(e0, tab, eps)
                                u += w1 * _load32(e1, tab, eps)
                                u += w2 * _load32(e2, tab, eps)
                                u += w3 * _load32(e3, tab, eps)
                                u += w4 * _load32(e4, tab, eps)
                                a[i] = u
                                z0 = max(z0, e0)
                                z1 = max(z1, e1)
                                z2 = max(z2, e2)
                                z3 = max(z3, e3)
                                z4 = max(z4, e4)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(z0))
                        maxbits[t, m + 1] = max(maxbits[t, m + 1], np.uint64(z1))
                        maxbits[t, m + 2] = max(maxbits[t, m + 2], np.uint64(z2))
                        maxbits[t, m + 3] = max(maxbits[t, m + 3], np.uint64(z3))
                        maxbits[t, m + 4] = max(maxbits[t, m + 4], np.uint64(z4))
                    elif run == 4:
                        q0 = addrs[m] + 4 * (c * cstrides[m] + s0)
                        f0 = _view(q0, n, np.uint32)
                        q1 = addrs[m + 1] + 4 * (c * cstrides[m + 1] + s0)
                        f1 = _view(q1, n, np.uint32)
                        q2 = addrs[m + 2] + 4 * (c * cstrides[m + 2] + s0)
                        f2 = _view(q2, n, np.uint32)
                        q3 = addrs[m + 3] + 4 * (c * cstrides[m + 3] + s0)
                        f3 = _view(q3, n, np.uint32)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        z0 = z1 = z2 = z3 = np.uint32(0)
                        if fold:
                            lab8 = _view(out_addr + s0, n, np.uint8)
                            ci = np.uint8(c)
                            for j0 in range(0, n, STEP_F32):  # STEP_BYTES per member, prefetching
                                ahead = 4 * j0 + PREFETCH_AHEAD
                                for line in range(0, STEP_BYTES, 64):
                                    _prefetch(q0 + ahead + line)
                                    _prefetch(q1 + ahead + line)
                                    _prefetch(q2 + ahead + line)
                                    _prefetch(q3 + ahead + line)
                                j1 = min(j0 + STEP_F32, n)
                                g0 = f0[j0:j1]
                                g1 = f1[j0:j1]
                                g2 = f2[j0:j1]
                                g3 = f3[j0:j1]
                                bs = best[j0:j1]
                                ls = lab8[j0:j1]
                                as_ = a[j0:j1]
                                for i in range(j1 - j0):
                                    e0 = g0[i]
                                    e1 = g1[i]
                                    e2 = g2[i]
                                    e3 = g3[i]
                                    u = zero if first else as_[i]
                                    u += w0 * _load32(e0, tab, eps)
                                    u += w1 * _load32(e1, tab, eps)
                                    u += w2 * _load32(e2, tab, eps)
                                    u += w3 * _load32(e3, tab, eps)
                                    b = bs[i]
                                    gt = u > b
                                    bs[i] = u if gt else b
                                    ls[i] = ci if gt else ls[i]
                                    z0 = max(z0, e0)
                                    z1 = max(z1, e1)
                                    z2 = max(z2, e2)
                                    z3 = max(z3, e3)
                            folded = True
                        else:
                            for i in range(n):
                                e0 = f0[i]
                                e1 = f1[i]
                                e2 = f2[i]
                                e3 = f3[i]
                                u = zero if first else a[i]
                                u += w0 * _load32(e0, tab, eps)
                                u += w1 * _load32(e1, tab, eps)
                                u += w2 * _load32(e2, tab, eps)
                                u += w3 * _load32(e3, tab, eps)
                                a[i] = u
                                z0 = max(z0, e0)
                                z1 = max(z1, e1)
                                z2 = max(z2, e2)
                                z3 = max(z3, e3)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(z0))
                        maxbits[t, m + 1] = max(maxbits[t, m + 1], np.uint64(z1))
                        maxbits[t, m + 2] = max(maxbits[t, m + 2], np.uint64(z2))
                        maxbits[t, m + 3] = max(maxbits[t, m + 3], np.uint64(z3))
                    else:
                        run = 1
                        q0 = addrs[m] + 4 * (c * cstrides[m] + s0)
                        f0 = _view(q0, n, np.uint32)
                        w0 = weights[m, c]
                        z0 = np.uint32(0)
                        for i in range(n):
                            e0 = f0[i]
                            u = zero if first else a[i]
                            u += w0 * _load32(e0, tab, eps)
                            a[i] = u
                            z0 = max(z0, e0)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(z0))
                m += run
            if out_addr != 0 and not folded:  # argmax step: keep the class if its sum beats the best so far
                if out_kind == 0:
                    lab8 = _view(out_addr + s0, n, np.uint8)
                    ci = np.uint8(c)
                    for i in range(n):
                        u = a[i]
                        b = best[i]
                        gt = u > b
                        best[i] = u if gt else b
                        lab8[i] = ci if gt else lab8[i]
                else:
                    lab16 = _view(out_addr + 2 * s0, n, np.uint16)
                    ci16 = np.uint16(c)
                    for i in range(n):
                        u = a[i]
                        b = best[i]
                        gt = u > b
                        best[i] = u if gt else b
                        lab16[i] = ci16 if gt else lab16[i]

        # ---- sampled check: class sums of each probability member on check_size voxels of every
        # check_every-th chunk, at an offset that moves from chunk to chunk; re-read (mostly from cache)
        if check_every > 0 and k % check_every == 0:
            ns = min(n, check_size)
            s1 = s0 + ((k // check_every) * 40503 % (n - ns + 1)) // 16 * 16
            for m in range(n_members):
                kind = kinds[m]
                if kind != KIND_F16 and kind != KIND_F32:
                    continue
                for c in range(n_classes):
                    if kind == KIND_F16:
                        h0 = _view(addrs[m] + 2 * (c * cstrides[m] + s1), ns, np.uint16)
                        if c == 0:
                            for i in range(ns):
                                s[i] = _bits_to_float32(h0[i])
                        else:
                            for i in range(ns):
                                s[i] += _bits_to_float32(h0[i])
                    else:
                        f0 = _view(addrs[m] + 4 * (c * cstrides[m] + s1), ns, np.uint32)
                        if c == 0:
                            for i in range(ns):
                                s[i] = _bits_to_float32(f0[i])
                        else:
                            for i in range(ns):
                                s[i] += _bits_to_float32(f0[i])
                bad = 0
                for i in range(ns):
                    bad += 0 if abs(s[i] - one) <= tol else 1
                sum_bad[t, m] += bad
            sum_checked[t] += ns


#: the same kernel in log space: every member adds ``w * log(max(p, eps))`` (a one-hot member
#: ``w * log(1)`` or ``w * log(eps)``), so the label output is the argmax of the weighted geometric mean
#: and the mean output the weighted mean of the logs. One body, two compiled kernels: the linear one is
#: unchanged and compiles only when used, and so does this one.
_fuse_chunks_log = log_variant(_fuse_chunks)
