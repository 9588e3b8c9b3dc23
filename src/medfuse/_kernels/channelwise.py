"""Class-major fusion kernels (private; used by :class:`medfuse.fusion.classwise.ClassMajorMean`).

Folder fusion reads every member's class ``c`` before any member's class ``c + 1`` (each ``.npz`` is a
stream whose channels come in class order), so it needs the running sum of ONE class plane plus the
running maximum and argmax, never a ``(C, ...)`` accumulator. Work is split over the leading axis of the
member's box and run with :func:`medfuse._kernels.threads.run_chunked`.

:func:`_add_box`
    ``plane[z0 + z, y0 + y, x0 + x] += w * member[z, y, x]``; ``member`` holds float16 or float32 values
    read as ``uint16`` / ``uint32`` bits (:mod:`medfuse._kernels.f16`); :func:`_add_box_log` adds
    ``w * log(max(member, eps))`` instead (:mod:`medfuse._kernels.spaces`). In the same pass it keeps the
    largest bit pattern read (``maxbits[t]``): the values are finite and in ``[+0, 1 + tol]`` iff it is at
    most the limit the caller knows (see :data:`medfuse._kernels.f16.ONE_BITS`). ``w == 0``: check only.
:func:`_argmax_bits`
    The running argmax over class channels of one member (``best``/``labels``, ties keep the lower class),
    on the raw bits of its channel ``c``, keeping the largest bit pattern the same way.
:func:`_max_bits`
    Only the largest bit pattern of a channel (members that are copied, not summed).
:func:`_add_label_box`
    ``plane[...] += w * (labels[...] == c)``: a hard member's one-hot plane, never materialised.
:func:`_argmax_update`
    ``v = plane * scale``; where ``v > best``: ``best = v``, ``labels = c`` (strict: ties keep the lower
    class), written without masked stores. ``c == 0`` initialises ``best`` and ``labels``.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .raw import inline
from .spaces import _load16, log_variant

__all__ = ["_add_box", "_add_box_log", "_add_label_box", "_argmax_bits", "_argmax_rows", "_argmax_update", "_max_bits"]


#: the table argument of the linear kernel (unused)
_NO_TABLE = np.zeros(1, dtype=np.float32)


@jit
def _add_box(k0, k1, t, plane, z0, y0, x0, member, w, maxbits):
    _add_box_space(k0, k1, t, plane, z0, y0, x0, member, w, maxbits, _NO_TABLE, np.float32(0.0))


@jit
def _add_box_space(k0, k1, t, plane, z0, y0, x0, member, w, maxbits, tab, eps):
    ny = member.shape[1]
    nx = member.shape[2]
    if nx == 0:
        return
    top = maxbits[t]
    for z in range(k0, k1):
        for y in range(ny):
            dst = plane[z0 + z, y0 + y, x0:x0 + nx]
            src = member[z, y]
            x_top = src[0]
            if w != 0:
                for x in range(nx):
                    b = src[x]
                    dst[x] += w * _load16(b, tab, eps)  # float16 or float32 bits
                    x_top = max(x_top, b)
            else:
                for x in range(nx):
                    x_top = max(x_top, src[x])
            top = max(top, np.uint64(x_top))
    maxbits[t] = top


@jit
def _max_bits(k0, k1, t, chunk, bits, maxbits):
    n = bits.size
    top = maxbits[t]
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        if s1 <= s0:
            continue
        src = bits[s0:s1]
        x_top = src[0]
        for i in range(s1 - s0):
            x_top = max(x_top, src[i])
        top = max(top, np.uint64(x_top))
    maxbits[t] = top


# The chunk walk of _max_bits again, on purpose: the check-only pass above stays a plain max loop, without
# the argmax's loads and stores.
@jit
def _argmax_bits(k0, k1, t, chunk, bits, c, best, labels, maxbits):
    n = bits.size
    top = maxbits[t]
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        if s1 <= s0:
            continue
        src = bits[s0:s1]
        b = best[s0:s1]
        lab = labels[s0:s1]
        x_top = src[0]
        if c == 0:
            for i in range(s1 - s0):
                e = src[i]
                b[i] = _bits_to_float32(e)
                lab[i] = 0
                x_top = max(x_top, e)
        else:
            for i in range(s1 - s0):
                e = src[i]
                v = _bits_to_float32(e)
                gt = v > b[i]
                b[i] = v if gt else b[i]
                lab[i] = c if gt else lab[i]
                x_top = max(x_top, e)
        top = max(top, np.uint64(x_top))
    maxbits[t] = top


@jit
def _add_label_box(k0, k1, t, plane, z0, y0, x0, labels, c, w):
    ny = labels.shape[1]
    nx = labels.shape[2]
    for z in range(k0, k1):
        for y in range(ny):
            dst = plane[z0 + z, y0 + y, x0:x0 + nx]
            src = labels[z, y]
            for x in range(nx):
                dst[x] += w * (src[x] == c)


@jit
def _argmax_update(k0, k1, t, chunk, plane, scale, c, best, labels):
    n = plane.size
    for k in range(k0, k1):
        s0 = k * chunk
        s1 = min(n, s0 + chunk)
        _argmax_rows(plane[s0:s1], best[s0:s1], labels[s0:s1], scale, c, s1 - s0)


@inline
def _argmax_rows(p, b, lab, scale, c, n):
    """Fold class ``c``'s mean ``p * scale`` into the running maximum ``b`` and argmax ``lab`` (``c == 0``
    starts them; strict ``>``: ties keep the lower class)."""
    if c == 0:
        for i in range(n):
            b[i] = p[i] * scale
            lab[i] = 0
    else:
        for i in range(n):
            v = p[i] * scale
            gt = v > b[i]
            b[i] = max(v, b[i])
            lab[i] = lab[i] + gt * (c - lab[i])


#: :func:`_add_box` in log space (see :mod:`medfuse._kernels.spaces`)
_add_box_log = log_variant(_add_box_space)
