"""Uncertainty maps of class-major fusion (private; used by :class:`medfuse.fusion.classwise.ClassMajorMean`).

Class-major folder fusion sees every member's class ``c`` before any member's class ``c + 1``. The
uncertainty maps (:mod:`medfuse.fusion.uncertainty`) are built along that order without a ``(C, ...)``
accumulator:

:func:`_add_box_uncertainty`
    One pass over a member's channel of class ``c`` inside its box, doing what :func:`.channelwise._add_box`
    does (``plane += w * p``, the range check on the raw bits; :func:`_add_box_uncertainty_log` adds
    ``w * log(max(p, eps))`` and then also ``lin += w * p``: the maps are of the LINEAR mean) plus
    ``ment += omega * p ln p`` (the member's own entropy, with its share ``omega``) and the member's running
    maximum and argmax, kept on the raw bits (for non-negative floats the order of the bit patterns is the
    order of the values; -0.0 and the tiny negatives the range check accepts count as +0; strict ``>``:
    ties keep the lower class; ``c == 0`` initialises). A row whose values
    are all +0 (most rows of an organ's class, away from the organ) skips those terms after the add: they
    would add ``0 ln 0 = 0`` and a 0 never beats the running maximum.
:func:`_argmax_entropy_update`
    The end of class ``c`` in one pass: the running argmax of the fused plane (what the plain path's
    :func:`.channelwise._argmax_update` does) and, with ``q`` the linear weighted mean of class ``c``,
    ``a += q ln q`` and ``s += q`` (``c == 0`` initialises). The entropy of the normalised mean ``q / s`` is
    then ``ln s - a / s``.
:func:`_entropy_finish`
    After the last class: the entropy ``ln s - a / s`` and the mutual information, in place.
:func:`_count_labels`
    The fused volumes: voxels per fused label.
:func:`_member_agreement`
    Once the fused labels are final: over one member's box, ``dis += omega * (arg != fused)`` and the
    per-thread counts ``volumes[t, arg] += 1``, ``overlap[t, arg] += (arg == fused)``.

``p ln p`` is :func:`medfuse._kernels.logf._plogp` (exponent from the bits, a degree-5 polynomial with FMA,
within 1e-7 of float64 on [0, 1], exactly 0 at ``p = 0``), so the adding loop stays vectorised (a 65536-entry
table of float16 ``p ln p`` was slower: its gathers stop the vectorisation; Cephes' full-precision log of
:func:`medfuse._kernels.logf._log_f32` took twice as long).
"""

from __future__ import annotations

import numpy as np

from . import jit
from .channelwise import _argmax_rows
from .f16 import _bits_to_float32
from .kinds import ONE_BITS
from .logf import _float32_bits, _log_f32, _plogp
from .raw import _prefetch
from .spaces import _load16, log_variant

#: the bit patterns of 1.0 (float16, float32): no larger pattern is a probability
_ONE16, _ONE32 = ONE_BITS[16], ONE_BITS[32]
#: voxels per block of :func:`_argmax_entropy_update`'s zero test
_BLOCK = 512
#: :func:`_add_box_uncertainty` prefetches the rows it will update this many rows ahead
PREFETCH_ROWS = 2

__all__ = ["_add_box_uncertainty", "_add_box_uncertainty_log", "_argmax_entropy_update", "_count_labels",
           "_entropy_finish", "_member_agreement"]


@jit
def _prefetch_span(a):
    """Ask for every cache line of a contiguous 1-d array (a row about to be read and written)."""
    start = a.ctypes.data
    for off in range(0, a.size * a.itemsize, 64):
        _prefetch(start + off)


@jit
def _prefetch_state(ment, lin, best, arg, z, y, z0, y0, x0, has_lin):
    """Prefetch what pass 2 of :func:`_add_box_uncertainty` updates on row ``(z, y)`` of the member."""
    nx = best.shape[2]
    _prefetch_span(ment[z0 + z, y0 + y, x0:x0 + nx])
    _prefetch_span(best[z, y])
    _prefetch_span(arg[z, y])
    if has_lin:
        _prefetch_span(lin[z0 + z, y0 + y, x0:x0 + nx])


@jit
def _add_box_uncertainty(k0, k1, t, plane, lin, ment, z0, y0, x0, member, w, omega, maxbits, tab, eps, c, best,
                         arg, has_lin):
    ny = member.shape[1]
    nx = member.shape[2]
    if nx == 0:
        return
    top = maxbits[t]
    live = np.empty(ny, np.int64)  # rows of the slice with uncertainty terms to add
    ent_row = np.empty(ny, np.bool_)  # ... and whether p ln p is not 0 everywhere on the row
    one = np.float32(1.0)
    one_bits = np.uint32(_ONE16 if member.itemsize == 2 else _ONE32)  # the pattern of 1.0
    for z in range(k0, k1):
        # pass 1, every row: the add and the range check, which stream; a row of zeros (most rows of an
        # organ's class, away from it) has no other term for c > 0 (0 ln 0 = 0, and 0 never beats the
        # running maximum)
        n_live = 0
        for y in range(ny):
            dst = plane[z0 + z, y0 + y, x0:x0 + nx]
            src = member[z, y]
            x_top = x_low = src[0]
            for x in range(nx):
                e = src[x]
                dst[x] += w * _load16(e, tab, eps)
                x_top = max(x_top, e)
                x_low = min(x_low, e)
            top = max(top, np.uint64(x_top))
            if x_top != 0 or c == 0:
                live[n_live] = y
                ent_row[n_live] = x_top != 0 and _bits_to_float32(x_low) != one  # all 0 or all 1: p ln p = 0
                n_live += 1
        # pass 2, the rows left: scattered over the slice, so their rows of the member-entropy map, running
        # maximum and argmax are prefetched PREFETCH_ROWS rows ahead (the hardware prefetcher sees no stream)
        for j in range(min(PREFETCH_ROWS, n_live)):
            _prefetch_state(ment, lin, best, arg, z, live[j], z0, y0, x0, has_lin)
        for j in range(n_live):
            if j + PREFETCH_ROWS < n_live:
                _prefetch_state(ment, lin, best, arg, z, live[j + PREFETCH_ROWS], z0, y0, x0, has_lin)
            y = live[j]
            src = member[z, y]
            b = best[z, y]
            a = arg[z, y]
            # separate loops of two or three arrays each: one loop touching five arrays needs more runtime
            # alias checks than LLVM allows and stays scalar
            if ent_row[j]:
                ent = ment[z0 + z, y0 + y, x0:x0 + nx]
                for x in range(nx):
                    ent[x] += omega * _plogp(_bits_to_float32(src[x]))
            # the running maximum on the bits, where a negative value (-0.0, a rounding the range check
            # accepts) has the largest pattern of all: it counts as +0 (no pattern above 1.0 is a probability)
            if c == 0:
                for x in range(nx):
                    e = src[x]
                    b[x] = e if e <= one_bits else 0
                    a[x] = c
            else:
                for x in range(nx):
                    e = src[x]
                    gt = (e > b[x]) & (e <= one_bits)  # &: no branch, the loop stays vectorised
                    b[x] = e if gt else b[x]
                    a[x] = c if gt else a[x]  # c has the argmax's dtype: a select of bytes
            if has_lin:
                lsrc = lin[z0 + z, y0 + y, x0:x0 + nx]
                for x in range(nx):
                    lsrc[x] += w * _bits_to_float32(src[x])
    maxbits[t] = top


@jit
def _argmax_entropy_update(k0, k1, t, chunk, plane, lin, scale, c, best, labels, a, s):
    """The end of class ``c`` in one pass over its chunks: the running argmax of ``plane * scale``
    (:func:`.channelwise._argmax_rows`), and for the entropy of the linear mean ``q = lin * scale`` (``lin``
    is ``plane`` itself in probability space): ``a += q ln q`` and ``s += q`` (``c == 0`` initialises). The
    entropy of the normalised mean ``q / s`` is then ``ln s - a / s``."""
    n = plane.size
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        _argmax_rows(plane[s0:s1], best[s0:s1], labels[s0:s1], scale, c, s1 - s0)
        p = lin[s0:s1]
        aa = a[s0:s1]
        ss = s[s0:s1]
        if c == 0:
            for i in range(s1 - s0):
                aa[i] = 0.0
                ss[i] = 0.0
        for j0 in range(0, s1 - s0, _BLOCK):  # blocks of zeros (an organ's class away from it) add nothing
            j1 = min(s1 - s0, j0 + _BLOCK)
            pb = p[j0:j1]
            hi = np.uint32(0)
            for i in range(j1 - j0):  # non-negative floats order like their bits: an integer max, vectorised
                hi = max(hi, _float32_bits(pb[i]))
            if hi == 0:
                continue
            ab = aa[j0:j1]
            sb = ss[j0:j1]
            for i in range(j1 - j0):  # branch-free: vectorised
                q = max(pb[i] * scale, np.float32(0.0))
                ab[i] += _plogp(q)
                sb[i] += q


@jit
def _entropy_finish(k0, k1, t, chunk, s, a, ment):
    """After the last class, in place over chunks: ``s`` becomes the entropy of the normalised mean,
    ``ln s - a / s`` clamped at 0 (0 where ``s <= 0``: nothing was added), and ``ment`` (minus the members'
    mean entropy) the mutual information ``max(entropy + ment, 0)``. ``ln`` is :func:`._log_f32`, so the loop
    vectorises."""
    n = s.size
    tiny = np.float32(1.1754944e-38)  # the smallest normal float32: _log_f32's domain
    zero = np.float32(0.0)
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        ss = s[s0:s1]  # slices: LLVM vectorises a loop from 0 over them, not over s[i] from s0
        aa = a[s0:s1]
        mm = ment[s0:s1]
        for i in range(s1 - s0):
            si = ss[i]
            sc = max(si, tiny)
            h = max(_log_f32(sc) - np.divide(aa[i], sc), zero)  # np.divide: no zero-division branch
            h = h if si > zero else zero
            ss[i] = h
            mm[i] = max(h + mm[i], zero)


@jit
def _count_labels(k0, k1, t, chunk, labels, hist):
    """``hist[t, l] +=`` voxels of label ``l`` over chunks ``k0 .. k1`` of the flat ``labels`` (every label
    ``< hist.shape[1]``): np.bincount without its int64 copy of the labels."""
    n = labels.size
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        part = labels[s0:s1]
        for i in range(s1 - s0):
            hist[t, part[i]] += 1


@jit
def _member_agreement(k0, k1, t, arg, fused, z0, y0, x0, omega, dis, volumes, overlap):
    ny = arg.shape[1]
    nx = arg.shape[2]
    for z in range(k0, k1):
        for y in range(ny):
            src = arg[z, y]
            f = fused[z0 + z, y0 + y, x0:x0 + nx]
            d = dis[z0 + z, y0 + y, x0:x0 + nx]
            for x in range(nx):
                m = src[x]
                same = m == f[x]
                volumes[t, m] += 1
                overlap[t, m] += same
                d[x] += np.float32(0.0) if same else omega


#: :func:`_add_box_uncertainty` in log space: the plane gets ``w * log(max(p, eps))``
_add_box_uncertainty_log = log_variant(_add_box_uncertainty)
