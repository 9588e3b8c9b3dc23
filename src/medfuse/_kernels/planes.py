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
    order of the values; strict ``>``: ties keep the lower class; ``c == 0`` initialises).
:func:`_entropy_update`
    ``q = plane * scale`` (the weighted mean of class ``c``): ``a += q ln q`` and ``s += q`` (``c == 0``
    initialises). The entropy of the normalised mean ``q / s`` is then ``ln s - a / s``.
:func:`_member_agreement`
    Once the fused labels are final: over one member's box, ``dis += omega * (arg != fused)`` and the
    per-thread counts ``volumes[t, arg] += 1``, ``overlap[t, arg] += (arg == fused)``.

``p ln p`` of a float16 value is one load from the caller's 65536-entry float32 table
(:func:`plogp_table`); of a float32 value it is computed (``0 ln 0 = 0``).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from . import jit
from .f16 import _bits_to_float32
from .spaces import _load16, log_variant

__all__ = ["_add_box_uncertainty", "_add_box_uncertainty_log", "_entropy_update", "_member_agreement",
           "plogp_table"]


def plogp_table() -> np.ndarray:
    """float32 ``p ln p`` of every float16 bit pattern ``p`` (0 for ``p <= 0`` and non-finite patterns)."""
    p = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where((p > 0) & np.isfinite(p), p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    tab = t.astype(np.float32)
    tab.setflags(write=False)
    return tab


def _plogp(bits, ptab):
    """``p ln p`` of a float16 (``ptab[bits]``) or float32 bit pattern. This body runs with
    ``NUMBA_DISABLE_JIT=1``; compiled kernels use the overload below."""
    if isinstance(bits, np.uint16):
        return ptab[bits]
    v = _bits_to_float32(bits)
    return v * np.log(v) if v > 0 else np.float32(0.0)


@overload(_plogp, jit_options={"nogil": True})
def _plogp_impl(bits, ptab):  # pragma: no cover - numba typing, never run as Python
    if bits == types.uint16:
        return lambda bits, ptab: ptab[bits]
    if bits == types.uint32:
        def impl(bits, ptab):
            v = _bits_to_float32(bits)
            if v > 0:
                return v * np.log(v)
            return np.float32(0.0)
        return impl
    return None


@jit
def _add_box_uncertainty(k0, k1, t, plane, lin, ment, z0, y0, x0, member, w, omega, maxbits, tab, eps, ptab,
                         c, best, arg, has_lin):
    ny = member.shape[1]
    nx = member.shape[2]
    if nx == 0:
        return
    top = maxbits[t]
    for z in range(k0, k1):
        for y in range(ny):
            dst = plane[z0 + z, y0 + y, x0:x0 + nx]
            ent = ment[z0 + z, y0 + y, x0:x0 + nx]
            src = member[z, y]
            b = best[z, y]
            a = arg[z, y]
            x_top = src[0]
            for x in range(nx):
                e = src[x]
                dst[x] += w * _load16(e, tab, eps)
                ent[x] += omega * _plogp(e, ptab)
                x_top = max(x_top, e)
            if c == 0:
                for x in range(nx):
                    b[x] = src[x]
                    a[x] = 0
            else:
                for x in range(nx):
                    e = src[x]
                    gt = e > b[x]
                    b[x] = e if gt else b[x]
                    a[x] = c if gt else a[x]
            if has_lin:
                lsrc = lin[z0 + z, y0 + y, x0:x0 + nx]
                for x in range(nx):
                    lsrc[x] += w * _bits_to_float32(src[x])
            top = max(top, np.uint64(x_top))
    maxbits[t] = top


@jit
def _entropy_update(k0, k1, t, chunk, plane, scale, c, a, s):
    n = plane.size
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        p = plane[s0:s1]
        aa = a[s0:s1]
        ss = s[s0:s1]
        if c == 0:
            for i in range(s1 - s0):
                aa[i] = 0.0
                ss[i] = 0.0
        for i in range(s1 - s0):
            q = p[i] * scale
            if q > 0:
                aa[i] += q * np.log(q)
                ss[i] += q


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
