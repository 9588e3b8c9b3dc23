"""Probability fusion kernel (private; the public wrappers are in :mod:`medfuse.fusion`).

One pass reads every member once and writes the label map (argmax of the weighted mean) and/or the
weighted mean itself; nothing of size M x C x voxels (or, for labels, C x voxels) is ever allocated.

Layout
    Members are not stacked: the wrapper passes each member's base address, kind and channel stride
    (see :mod:`medfuse._kernels.raw`), so one compiled signature serves any member count and any mix of
    float16 / float32 probability members and uint8 / uint16 hard (label map) members. A probability
    member is ``(C, N)`` with contiguous rows (any channel stride); a hard member is ``(N,)``.
Chunks
    The N voxels are cut into chunks of a few thousand. :func:`_fuse_chunks` processes a contiguous
    range of chunks with one ``(C, chunk)`` float32 accumulator, small enough to stay in L2; the
    wrapper hands out ranges to the threads (:func:`medfuse._kernels.threads.run_ranges`). Per chunk and
    class, members are added in member order, four at a time when four consecutive members have the
    same kind (one load and store of the accumulator per four members; five when five end a run of
    their kind, so a 5-fold ensemble makes one pass over the accumulator instead of two: 3-9% faster
    for float32, 7% for float16, +0.65 s of compile time), then the argmax runs over the
    accumulator in blocks of :data:`ARGMAX_BLOCK` voxels (its running maximum and label stay in L1:
    20% faster than one sweep of the chunk per class). The work on a range is one flat function:
    numba compiles every helper function separately and re-optimises it where it is inlined, which
    tripled the compile time.
Arithmetic
    ``acc = 0; acc += w[m, c] * p_m[c]`` for m = 0, 1, ... in float32, never contracted to FMA (no
    fastmath); a hard member adds ``w[m, c]`` where its label is ``c`` and ``0`` elsewhere. The numpy
    twin in ``tests/reference_fusion.py`` does exactly the same operations, so results are bit-identical.
    float16 is read as uint16 and converted in registers (:mod:`medfuse._kernels.f16`).
    Ties go to the lowest class (strict ``>`` scanning classes upwards).
Checks, in the same pass
    * range and finiteness of every value: the maximum raw bit pattern per member. A float is finite
      and in ``[+0, 1]`` iff its pattern is ``<= bits(1.0)`` (:data:`medfuse._kernels.f16.ONE_BITS`);
      for a hard member the maximum is its largest label (a negative label, read unsigned, is huge).
      It costs one integer ``max`` per value, which the memory-bound loop hides.
    * sums over classes, on a sample: every ``check_every``-th chunk is re-read (from cache) and the
      voxels whose per-member class sum is off 1 by more than ``tol`` are counted.
    The wrapper turns those numbers into errors (re-checking a flagged member exactly with numpy).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .raw import _view

__all__ = ["ITEMSIZE", "KIND_F16", "KIND_F32", "KIND_U8", "KIND_U16", "_fuse_chunks"]

#: member kinds (the ``kinds`` array of :func:`_fuse_chunks`)
KIND_F16, KIND_F32, KIND_U8, KIND_U16 = 0, 1, 2, 3
#: bytes per item of each kind
ITEMSIZE = (2, 4, 1, 2)
#: voxels per block of the argmax (its running maximum and label stay in L1)
ARGMAX_BLOCK = 2048


@jit
def _fuse_chunks(k0, k1, t, addrs, kinds, cstrides, weights, n_voxels, chunk, check_every, tol, out_addr,
                 out_kind, mean_addr, maxbits, sum_bad, sum_checked):
    """Weighted mean of M members over C classes on chunks ``k0 .. k1``, as labels and/or probabilities.

    Parameters
    ----------
    k0, k1, t : int
        Chunk range and its index (row of the per-range outputs).
    addrs, kinds, cstrides : (M,) int64
        Base address, kind (``KIND_*``) and channel stride in items of each member.
    weights : (M, C) float32
        Weight of each member and class (the wrapper normalises them per class).
    n_voxels, chunk, check_every : int
        Voxels per channel; voxels per chunk; sum-check chunks ``k`` with ``k % check_every == 0``
        (0: never).
    tol : float32
        Allowed deviation of a member's class sum from 1.
    out_addr, out_kind : int
        Label output (``n_voxels`` items, uint8 if ``out_kind == 0`` else uint16); 0: no labels.
    mean_addr : int
        float32 ``(C, n_voxels)`` C-contiguous output of the weighted mean; 0: no mean.
    maxbits : (R, M) uint64, zeroed
        Per range and member: largest raw bit pattern (probability member) or label (hard member).
    sum_bad : (R, M) int64, zeroed; sum_checked : (R,) int64, zeroed
        Per range: voxels failing the sum check, per member; voxels checked.
    """
    n_members = addrs.size
    n_classes = weights.shape[1]
    acc = np.empty((n_classes, chunk), np.float32)
    s = np.empty(chunk, np.float32)
    best = np.empty(ARGMAX_BLOCK, np.float32)
    lab = np.empty(ARGMAX_BLOCK, np.int32)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)

        # ---- accumulate: acc[c] = sum over members, in order, of w[m, c] * member_m[c]
        for c in range(n_classes):
            a = acc[c]
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
                if kind in (KIND_U8, KIND_U16):
                    # hard member: one-hot of its labels, never materialised
                    run = 1
                    wc = weights[m, c]
                    if kind == KIND_U8:
                        l8 = _view(addrs[m] + s0, n, np.uint8)
                        x8 = np.uint8(0)
                        for i in range(n):
                            v8 = l8[i]
                            u = zero if first else a[i]
                            u += wc if v8 == c else zero
                            a[i] = u
                            x8 = max(x8, v8)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(x8))
                    else:
                        l16 = _view(addrs[m] + 2 * s0, n, np.uint16)
                        x16 = np.uint16(0)
                        for i in range(n):
                            v16 = l16[i]
                            u = zero if first else a[i]
                            u += wc if v16 == c else zero
                            a[i] = u
                            x16 = max(x16, v16)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(x16))
                elif kind == KIND_F16:
                    if run == 5:
                        h0 = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                        h1 = _view(addrs[m + 1] + 2 * (c * cstrides[m + 1] + s0), n, np.uint16)
                        h2 = _view(addrs[m + 2] + 2 * (c * cstrides[m + 2] + s0), n, np.uint16)
                        h3 = _view(addrs[m + 3] + 2 * (c * cstrides[m + 3] + s0), n, np.uint16)
                        h4 = _view(addrs[m + 4] + 2 * (c * cstrides[m + 4] + s0), n, np.uint16)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        w4 = weights[m + 4, c]
                        y0 = y1 = y2 = y3 = y4 = np.uint16(0)
                        for i in range(n):
                            b0 = h0[i]
                            b1 = h1[i]
                            b2 = h2[i]
                            b3 = h3[i]
                            b4 = h4[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(b0)
                            u += w1 * _bits_to_float32(b1)
                            u += w2 * _bits_to_float32(b2)
                            u += w3 * _bits_to_float32(b3)
                            u += w4 * _bits_to_float32(b4)
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
                        h0 = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                        h1 = _view(addrs[m + 1] + 2 * (c * cstrides[m + 1] + s0), n, np.uint16)
                        h2 = _view(addrs[m + 2] + 2 * (c * cstrides[m + 2] + s0), n, np.uint16)
                        h3 = _view(addrs[m + 3] + 2 * (c * cstrides[m + 3] + s0), n, np.uint16)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        y0 = y1 = y2 = y3 = np.uint16(0)
                        for i in range(n):
                            b0 = h0[i]
                            b1 = h1[i]
                            b2 = h2[i]
                            b3 = h3[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(b0)
                            u += w1 * _bits_to_float32(b1)
                            u += w2 * _bits_to_float32(b2)
                            u += w3 * _bits_to_float32(b3)
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
                        h0 = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                        w0 = weights[m, c]
                        y0 = np.uint16(0)
                        for i in range(n):
                            b0 = h0[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(b0)
                            a[i] = u
                            y0 = max(y0, b0)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(y0))
                else:  # KIND_F32, read as uint32 bits
                    if run == 5:
                        f0 = _view(addrs[m] + 4 * (c * cstrides[m] + s0), n, np.uint32)
                        f1 = _view(addrs[m + 1] + 4 * (c * cstrides[m + 1] + s0), n, np.uint32)
                        f2 = _view(addrs[m + 2] + 4 * (c * cstrides[m + 2] + s0), n, np.uint32)
                        f3 = _view(addrs[m + 3] + 4 * (c * cstrides[m + 3] + s0), n, np.uint32)
                        f4 = _view(addrs[m + 4] + 4 * (c * cstrides[m + 4] + s0), n, np.uint32)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        w4 = weights[m + 4, c]
                        z0 = z1 = z2 = z3 = z4 = np.uint32(0)
                        for i in range(n):
                            e0 = f0[i]
                            e1 = f1[i]
                            e2 = f2[i]
                            e3 = f3[i]
                            e4 = f4[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(e0)
                            u += w1 * _bits_to_float32(e1)
                            u += w2 * _bits_to_float32(e2)
                            u += w3 * _bits_to_float32(e3)
                            u += w4 * _bits_to_float32(e4)
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
                        f0 = _view(addrs[m] + 4 * (c * cstrides[m] + s0), n, np.uint32)
                        f1 = _view(addrs[m + 1] + 4 * (c * cstrides[m + 1] + s0), n, np.uint32)
                        f2 = _view(addrs[m + 2] + 4 * (c * cstrides[m + 2] + s0), n, np.uint32)
                        f3 = _view(addrs[m + 3] + 4 * (c * cstrides[m + 3] + s0), n, np.uint32)
                        w0 = weights[m, c]
                        w1 = weights[m + 1, c]
                        w2 = weights[m + 2, c]
                        w3 = weights[m + 3, c]
                        z0 = z1 = z2 = z3 = np.uint32(0)
                        for i in range(n):
                            e0 = f0[i]
                            e1 = f1[i]
                            e2 = f2[i]
                            e3 = f3[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(e0)
                            u += w1 * _bits_to_float32(e1)
                            u += w2 * _bits_to_float32(e2)
                            u += w3 * _bits_to_float32(e3)
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
                        f0 = _view(addrs[m] + 4 * (c * cstrides[m] + s0), n, np.uint32)
                        w0 = weights[m, c]
                        z0 = np.uint32(0)
                        for i in range(n):
                            e0 = f0[i]
                            u = zero if first else a[i]
                            u += w0 * _bits_to_float32(e0)
                            a[i] = u
                            z0 = max(z0, e0)
                        maxbits[t, m] = max(maxbits[t, m], np.uint64(z0))
                m += run

        # ---- sampled check: class sums of each probability member (re-read from cache)
        if check_every > 0 and k % check_every == 0:
            for m in range(n_members):
                kind = kinds[m]
                if kind != KIND_F16 and kind != KIND_F32:
                    continue
                for c in range(n_classes):
                    if kind == KIND_F16:
                        h0 = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                        if c == 0:
                            for i in range(n):
                                s[i] = _bits_to_float32(h0[i])
                        else:
                            for i in range(n):
                                s[i] += _bits_to_float32(h0[i])
                    else:
                        f0 = _view(addrs[m] + 4 * (c * cstrides[m] + s0), n, np.uint32)
                        if c == 0:
                            for i in range(n):
                                s[i] = _bits_to_float32(f0[i])
                        else:
                            for i in range(n):
                                s[i] += _bits_to_float32(f0[i])
                bad = 0
                for i in range(n):
                    bad += 0 if abs(s[i] - one) <= tol else 1
                sum_bad[t, m] += bad
            sum_checked[t] += n

        # ---- outputs
        if mean_addr != 0:
            for c in range(n_classes):
                a = acc[c]
                dst = _view(mean_addr + 4 * (c * n_voxels + s0), n, np.float32)
                for i in range(n):
                    dst[i] = a[i]
        if out_addr != 0:
            # argmax in blocks of ARGMAX_BLOCK voxels, so that best/lab stay in L1 while acc streams from L2
            for b0 in range(0, n, ARGMAX_BLOCK):
                nb = min(ARGMAX_BLOCK, n - b0)
                a = acc[0, b0:b0 + nb]
                for i in range(nb):
                    best[i] = a[i]
                    lab[i] = 0
                for c in range(1, n_classes):
                    a = acc[c, b0:b0 + nb]
                    ci = np.int32(c)
                    for i in range(nb):
                        v = a[i]
                        b = best[i]
                        gt = v > b
                        best[i] = v if gt else b
                        lab[i] = ci if gt else lab[i]
                if out_kind == 0:
                    o8 = _view(out_addr + s0 + b0, nb, np.uint8)
                    for i in range(nb):
                        o8[i] = lab[i]
                else:
                    o16 = _view(out_addr + 2 * (s0 + b0), nb, np.uint16)
                    for i in range(nb):
                        o16[i] = lab[i]
