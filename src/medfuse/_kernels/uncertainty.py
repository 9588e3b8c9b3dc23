"""Uncertainty maps in the fusion pass (private; the public wrappers are in :mod:`medfuse.fusion.uncertainty`).

:func:`_uncertainty_chunks` reads every member once, like :func:`medfuse._kernels.fusion._fuse_chunks`, and
writes, per voxel, the fused label and three float32 maps (entropy of the weighted mean, mutual information,
disagreement), plus per-range member / fused class counts. The definitions are those of
``tests/_reference/twin_uncertainty.py``.

Layout and chunks
    Members are read by address (:mod:`.raw`): kinds float16 / float32 probabilities (any channel stride)
    and uint8 / uint16 label maps, as :func:`medfuse.fusion.inputs.prepare_members` prepares them. Chunks are
    a power of two (1024 .. 8192 voxels) dividing the fusion chunk, chosen by the wrapper so that the
    per-thread scratch stays in L2: one class-sum row (two in log space), the fused running maximum and
    label, the entropy sums, and per member a running argmax row (a float16 member: one packed key row).
    Per chunk, classes are taken in order and, per class, members in order; each member's row of the class
    is one vectorised loop: add ``w * p`` to the class sum, ``omega * p ln p`` to the member entropies,
    update the member's running argmax. Then the class's fused argmax step and ``S += pbar``,
    ``A += pbar ln pbar``. After the classes: the maps, then the disagreement and counts from the final
    argmax rows.
Where the time went (5 float16 members, 14 classes; ``benchmarks/bench_uncertainty.py``)
    Measured by timing variants with parts removed, one thread, CPU time, alternating in one process: the
    ``p ln p`` of every value, the scattered count increments, the member argmax and the memory access
    pattern were each a large share. What made it fast:

    * ``p ln p`` by :func:`medfuse._kernels.logf._plogp` (degree-5 polynomial, FMA, 32-bit integer lanes:
      numba widens ``uint32 + uint32`` to 64 bits unless wrapped in ``np.uint32``, which had halved the
      vector width), not a 65536-entry table (gathers) nor the degree-8 ``_log_f32``;
    * a float16 member's argmax as the running maximum of ``bits(float32(p)) | (KEY_MASK - c)`` (its low 13
      bits are 0; for non-negative values the bit order is the value order, a negative value counts as
      0, and the lower class wins ties): one integer ``max`` per value instead of a compare and two selects on two rows;
    * counts: per member, a byte key per voxel (its argmax, ``+ C`` where it agrees with the fused label)
      counted by one vectorised compare-and-add pass per key (:func:`_count_keys`), not a scattered
      ``volumes[m, a] += 1`` per voxel (which waits on the previous increment of the same class);
    * the float16 loop prefetches the row it reads next (another member's or class's row: a jump the
      hardware prefetcher does not follow), :data:`PF_STEP` voxels at a time.
Arithmetic of the fused labels
    The class sums are ``acc = 0; acc += w[m, c] * load(p_m[c])`` in member order in float32, exactly the
    fusion kernel's operations (a hard member adds ``w * hot`` or ``w * cold``), and the argmax keeps the
    lowest class on ties: the labels equal :func:`medfuse.fusion.fuse_probabilities` bit for bit. In log
    space a second sum adds ``w * log(max(p, eps))`` read as the fusion kernel reads it
    (:func:`medfuse._kernels.spaces._load_log`, a table load in a loop of its own); the linear sum is kept
    for the entropy. The maps' arithmetic (``p ln p``, FMA) is not the twin's: they match it within 1e-5.
Logs
    No libm call per value: ``x ln x`` is :func:`medfuse._kernels.logf._plogp` (within 1e-7 absolute on
    ``[0, 1]``) for member values and the mean alike. The entropy of the mean is
    ``(S ln S - sum_c pbar_c ln pbar_c) / S`` with ``S = sum_c pbar_c`` (the renormalisation where per-class
    weights make ``S`` differ from 1).
Checks
    The same as the fusion kernel's, with the same results: the largest raw bit pattern (or label) per
    member, and the class sums of the very same sampled voxels (``check_size`` voxels of every
    ``check_every``-th chunk of ``fchunk`` voxels, the fusion kernel's chunk), checked by the small chunk
    that holds the sample's first voxel. A label ``>= C`` is counted nowhere (the wrapper refuses it).

The accumulators' kernels, which compute the same quantities when members arrive one at a time, are in
:mod:`.uncertainty_stream`.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .kinds import KIND_F16, KIND_F32, KIND_U8, KIND_U16
from .logf import _float32_bits, _fma, _plogp
from .raw import _prefetch, _store_labels, _view, inline
from .spaces import _hard_values, _hard_values_log, _hard_values_product, _load_log, _load_product

__all__ = ["KEY_MASK", "TINY", "_count_keys", "_uncertainty_chunks"]

#: the smallest normal float32: ``x ln x`` clamps the log's argument to it (so 0 ln 0 = 0)
TINY = np.float32(np.finfo(np.float32).tiny)
#: a float16 value as float32 has its low 13 bits 0: a float16 member's running argmax is the maximum of
#: ``bits(p) | (KEY_MASK - c)`` (larger value first, then lower class; up to KEY_MASK + 1 classes)
KEY_MASK = 0x1FFF
#: the float16 loop prefetches the next row PF_STEP voxels at a time (the hardware prefetcher does not
#: follow the jump from one member's or class's row to the next)
PF_STEP = 128
#: count keys are counted in KEY_LANES byte counters at a time (so a chunk has at most 255 * KEY_LANES voxels);
#: KEY_NONE: a voxel counted nowhere (a hard member's label >= C)
KEY_LANES = 64
KEY_NONE = np.uint8(255)


@jit
def _next_row(addrs, kinds, cstrides, m, c, s0, chunk, n_classes):
    """Address and item size of the probability row read after member ``m``'s class ``c`` of the chunk at
    ``s0`` (the next probability member of the class, else of the next class, else the next chunk's)."""
    n_members = addrs.size
    for _ in range(2 * n_members):
        m += 1
        if m == n_members:
            m = 0
            c += 1
            if c == n_classes:
                c = 0
                s0 += chunk
        if kinds[m] == KIND_F16:
            return addrs[m] + 2 * (c * cstrides[m] + s0), 2
        if kinds[m] == KIND_F32:
            return addrs[m] + 4 * (c * cstrides[m] + s0), 4
    return addrs[0], 0


@jit
def _count_keys(key, n, n_keys, lanes, hist):
    """``hist[j] += #{i < n: key[i] == j}`` for ``j < n_keys``: one vectorised compare-and-add pass per key
    into :data:`KEY_LANES` byte counters (``n <= 255 * KEY_LANES``), not a scattered increment per voxel."""
    nb = n // KEY_LANES
    for j in range(n_keys):
        kj = np.uint8(j)
        for q in range(KEY_LANES):
            lanes[q] = 0
        for blk in range(nb):
            kb = key[blk * KEY_LANES:(blk + 1) * KEY_LANES]
            for q in range(KEY_LANES):
                lanes[q] += np.uint8(1) if kb[q] == kj else np.uint8(0)
        total = np.int64(0)
        for q in range(KEY_LANES):
            total += np.int64(lanes[q])
        for i in range(nb * KEY_LANES, n):
            total += 1 if key[i] == kj else 0
        hist[j] += total


@jit
def _uncertainty_chunks(k0, k1, t, addrs, kinds, cstrides, weights, omega, n_voxels, chunk, log, prod, fchunk,
                        check_every, check_size, tol, out_addr, out_kind, entropy, mutual, disagreement,
                        maxbits, sum_bad, sum_checked, volumes, overlap, fused_volumes, tab, eps):
    """Fused labels, uncertainty maps and counts on chunks ``k0 .. k1`` (see the module docstring).

    Parameters
    ----------
    k0, k1, t : int
        Chunk range and its index (row of the per-range outputs).
    addrs, kinds, cstrides : (M,) int64
        Base address, kind (``KIND_*``) and channel stride in items of each member.
    weights : (M, C) float32
        Weights normalised per class (as the fusion kernel gets them).
    omega : (M,) float32
        Member shares (the weights of the member entropies and the disagreement).
    n_voxels, chunk : int
        Voxels per channel; voxels per chunk (a power of two dividing ``fchunk``).
    log : bool
        Fuse in log space (the labels only; the maps always use the linear mean).
    prod : bool
        Log space in its product form (equal weights; :func:`medfuse.fusion.run.product_form`): the
        label sums are the products of ``max(p, eps) * tab[0]`` in member order, as in
        ``product_variant(_fuse_chunks)`` (:func:`medfuse._kernels.spaces.product_variant`).
    fchunk, check_every, check_size, tol :
        The fusion kernel's chunk and sampled sum check (``check_every == 0``: no check).
    out_addr, out_kind : int
        Label output (uint8 if ``out_kind == 0`` else uint16), ``n_voxels`` items.
    entropy, mutual, disagreement : (n_voxels,) float32
        The maps, written.
    maxbits, sum_bad, sum_checked : (R, M) uint64, (R, M) int64, (R,) int64, zeroed
        The checks' results, as in the fusion kernel.
    volumes, overlap : (R, M, C) int64, zeroed; fused_volumes : (R, C) int64, zeroed
        Per range: voxels of member argmax ``c``; of member argmax and fused label ``c``; of fused ``c``.
    tab : float32
        :func:`medfuse.fusion.run.log_table` (log space: the float16 logs and the float32 log tables);
        ``[2**s]`` in the product form.
    eps : float32
        Log space: probabilities are clamped to ``eps`` before their log.
    """
    n_members = addrs.size
    n_classes = weights.shape[1]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    row = np.empty(chunk, np.float32)  # linear sum of the class
    lrow = np.empty(chunk if log else 0, np.float32)  # log-space sum of the class
    best = np.empty(chunk, np.float32)  # fused running maximum
    lab = np.empty(chunk, np.int32)  # fused running argmax
    tot = np.empty(chunk, np.float32)  # S = sum_c pbar_c
    plp = np.empty(chunk, np.float32)  # sum_c pbar_c ln pbar_c
    hm = np.empty(chunk, np.float32)  # sum_m omega_m sum_c p ln p  (minus the weighted member entropy)
    mbest = np.empty((n_members, chunk), np.float32)  # member running maximum
    marg = np.empty((n_members, chunk), np.int32)  # member running argmax (a hard member: its label)
    mkey = np.empty((n_members, chunk), np.uint32)  # float16 member: max of (bits << 16 | 0xFFFF - class)
    key = np.empty(chunk, np.uint8)  # count key of a member voxel: argmax, + C where the fused label agrees
    lanes = np.empty(KEY_LANES, np.uint8)
    hist = np.zeros((n_members + 1, 2 * n_classes), np.int64)  # counts of the keys; row M: fused labels
    s = np.empty(max(0, check_size), np.float32)
    hot, cold = _hard_values(eps, tab)
    if prod:
        lhot, lcold = _hard_values_product(eps, tab)
    else:
        lhot, lcold = _hard_values_log(eps, tab)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        for i in range(n):
            hm[i] = zero
            tot[i] = zero
            plp[i] = zero
            best[i] = -np.inf
            lab[i] = 0
        # ---- member argmax rows: -inf / class 0; a hard member's row is its labels
        for m in range(n_members):
            kind = kinds[m]
            ma = marg[m]
            if kind == KIND_U8:
                l8 = _view(addrs[m] + s0, n, np.uint8)
                x8 = np.uint8(0)
                for i in range(n):
                    ma[i] = l8[i]
                    x8 = max(x8, l8[i])
                maxbits[t, m] = max(maxbits[t, m], np.uint64(x8))
            elif kind == KIND_U16:
                l16 = _view(addrs[m] + 2 * s0, n, np.uint16)
                x16 = np.uint16(0)
                for i in range(n):
                    ma[i] = l16[i]
                    x16 = max(x16, l16[i])
                maxbits[t, m] = max(maxbits[t, m], np.uint64(x16))
            elif kind == KIND_F16 and n_classes <= KEY_MASK + 1:
                mk = mkey[m]
                for i in range(n):
                    mk[i] = np.uint32(0)
            else:
                mb = mbest[m]
                for i in range(n):
                    mb[i] = -np.inf
                    ma[i] = 0
        # ---- class after class: members in order (class sums, p ln p, member argmax); then the fused step
        for c in range(n_classes):
            ci = np.int32(c)
            for m in range(n_members):
                kind = kinds[m]
                first = m == 0
                w = weights[m, c]
                ma = marg[m]
                if kind in (KIND_U8, KIND_U16):
                    wc = w * hot
                    wl = w * cold
                    for i in range(n):
                        u = zero if first else row[i]
                        u += wc if ma[i] == ci else wl
                        row[i] = u
                    if prod:
                        for i in range(n):
                            u = one if first else lrow[i]
                            u *= lhot if ma[i] == ci else lcold
                            lrow[i] = u
                    elif log:
                        wc = w * lhot
                        wl = w * lcold
                        for i in range(n):
                            u = zero if first else lrow[i]
                            u += wc if ma[i] == ci else wl
                            lrow[i] = u
                    continue
                om = omega[m]
                mb = mbest[m]
                if kind == KIND_F16 and n_classes <= KEY_MASK + 1:
                    h = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                    mk = mkey[m]
                    tag = np.uint32(KEY_MASK - c)
                    y16 = np.uint16(0)
                    nxt, nsz = _next_row(addrs, kinds, cstrides, m, c, s0, chunk, n_classes)
                    for j0 in range(0, n, PF_STEP):  # prefetching the next row as this one goes
                        for line in range(0, PF_STEP * nsz, 64):
                            _prefetch(nxt + j0 * nsz + line)
                        j1 = min(j0 + PF_STEP, n)
                        hs = h[j0:j1]
                        rs = row[j0:j1]
                        es = hm[j0:j1]
                        ks = mk[j0:j1]
                        for i in range(j1 - j0):
                            b = hs[i]
                            p = _bits_to_float32(b)
                            u = zero if first else rs[i]
                            u += w * p
                            rs[i] = u
                            es[i] = _fma(om, _plogp(p), es[i])
                            # a negative value (-0.0, rounding) as 0: its bits, unsigned, would beat all
                            ks[i] = max(ks[i], np.uint32(_float32_bits(p if p > zero else zero) | tag))
                            y16 = max(y16, b)
                    maxbits[t, m] = max(maxbits[t, m], np.uint64(y16))
                    if log:  # in a loop of its own (table loads): the one above vectorises
                        _add_log_space(h, n, lrow, w, first, prod, tab, eps)
                elif kind == KIND_F16:  # more classes than the key holds: compare values
                    h = _view(addrs[m] + 2 * (c * cstrides[m] + s0), n, np.uint16)
                    top = _add_compare(h, n, row, hm, mb, ma, w, om, ci, first, zero)
                    maxbits[t, m] = max(maxbits[t, m], np.uint64(top))
                    if log:
                        _add_log_space(h, n, lrow, w, first, prod, tab, eps)
                else:
                    f = _view(addrs[m] + 4 * (c * cstrides[m] + s0), n, np.uint32)
                    top = _add_compare(f, n, row, hm, mb, ma, w, om, ci, first, zero)
                    maxbits[t, m] = max(maxbits[t, m], np.uint64(top))
                    if log:
                        _add_log_space(f, n, lrow, w, first, prod, tab, eps)
            # fused argmax step (lowest class on ties), and the sums of the entropy of the mean
            a = lrow if log else row
            for i in range(n):
                x = row[i]
                u = a[i]
                bb = best[i]
                gt = u > bb
                best[i] = u if gt else bb
                lab[i] = ci if gt else lab[i]
                tot[i] += x
                plp[i] += _plogp(x)

        for m in range(n_members):  # float16 members: the argmax from the running key
            if kinds[m] == KIND_F16 and n_classes <= KEY_MASK + 1:
                mk = mkey[m]
                ma = marg[m]
                for i in range(n):
                    ma[i] = np.int32(np.int32(KEY_MASK) - np.int32(mk[i] & np.uint32(KEY_MASK)))
        _store_labels(out_addr, out_kind, s0, lab, n)

        # ---- entropy of the (renormalised) linear mean, mutual information, disagreement
        ent = entropy[s0:s0 + n]
        mi = mutual[s0:s0 + n]
        dis = disagreement[s0:s0 + n]
        for i in range(n):
            x = tot[i]
            hbar = (_plogp(x) - plp[i]) / x if x > zero else zero
            hbar = max(hbar, zero)
            ent[i] = hbar
            mi[i] = max(hbar + hm[i], zero)
            dis[i] = zero
        for m in range(n_members + 1):  # row M: the fused labels
            ma = marg[m] if m < n_members else lab
            om = omega[m] if m < n_members else zero
            agree = np.int32(n_classes if m < n_members else 0)  # key offset where member and fused label agree
            for i in range(n):
                dis[i] += zero if ma[i] == lab[i] else om
            if 2 * n_classes <= KEY_NONE:
                for i in range(n):
                    a = ma[i]
                    key[i] = np.uint8(a + (agree if a == lab[i] else np.int32(0))) if a < n_classes else KEY_NONE
                _count_keys(key, n, n_classes + agree, lanes, hist[m])
            else:  # more keys than a byte holds: one increment per voxel
                hm_ = hist[m]
                for i in range(n):
                    a = ma[i]
                    if a < n_classes:
                        hm_[a + (agree if a == lab[i] else 0)] += 1

        # ---- the fusion kernel's sampled sum check: the sample of fusion chunk K starts in this chunk
        if check_every > 0:
            kf = s0 // fchunk
            if kf % check_every == 0:
                f0 = kf * fchunk
                fn = min(fchunk, n_voxels - f0)
                ns = min(fn, check_size)
                s1 = f0 + ((kf // check_every) * 40503 % (fn - ns + 1)) // 16 * 16
                if s0 <= s1 < s0 + n:
                    for m in range(n_members):
                        kind = kinds[m]
                        if kind != KIND_F16 and kind != KIND_F32:
                            continue
                        for i in range(ns):
                            s[i] = zero
                        for c in range(n_classes):
                            if kind == KIND_F16:
                                h = _view(addrs[m] + 2 * (c * cstrides[m] + s1), ns, np.uint16)
                                for i in range(ns):
                                    s[i] += _bits_to_float32(h[i])
                            else:
                                f = _view(addrs[m] + 4 * (c * cstrides[m] + s1), ns, np.uint32)
                                for i in range(ns):
                                    s[i] += _bits_to_float32(f[i])
                        bad = 0
                        for i in range(ns):
                            bad += 0 if abs(s[i] - one) <= tol else 1
                        sum_bad[t, m] += bad
                    sum_checked[t] += ns

    for m in range(n_members):
        for c in range(n_classes):
            volumes[t, m, c] += hist[m, c] + hist[m, n_classes + c]
            overlap[t, m, c] += hist[m, n_classes + c]
    for c in range(n_classes):
        fused_volumes[t, c] += hist[n_members, c]


@inline
def _add_compare(h, n, row, hm, mb, ma, w, om, ci, first, zero):
    """One member's class row (float16 or float32 bits ``h``) by value comparison: ``row += w p`` (or ``=``
    when ``first``), ``hm += om p ln p``, running max ``mb`` / argmax ``ma`` (strict ``>``: the lower class
    keeps a tie). Returns the largest bit pattern (the range check)."""
    top = h[0]  # n >= 1: every chunk holds a voxel
    for i in range(n):
        b = h[i]
        p = _bits_to_float32(b)
        u = zero if first else row[i]
        u += w * p
        row[i] = u
        hm[i] = _fma(om, _plogp(p), hm[i])
        bb = mb[i]
        gt = p > bb
        mb[i] = p if gt else bb
        ma[i] = ci if gt else ma[i]
        top = max(top, b)
    return top


@inline
def _add_log_space(h, n, lrow, w, first, prod, tab, eps):
    """The label sum of log space for one member's class row (float16 or float32 bits ``h``):
    ``lrow += w log(max(p, eps))``, or in the product form ``lrow *= max(p, eps) * tab[0]`` (``=`` when
    ``first``)."""
    if prod:
        for i in range(n):
            u = np.float32(1.0) if first else lrow[i]
            u *= _load_product(h[i], tab, eps)
            lrow[i] = u
    else:
        for i in range(n):
            u = np.float32(0.0) if first else lrow[i]
            u += w * _load_log(h[i], tab, eps)
            lrow[i] = u
