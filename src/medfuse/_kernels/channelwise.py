"""Class-major fusion kernels (private; used by :class:`medfuse._channel_fusion.ClassMajorMean`).

Folder fusion reads every member's class ``c`` before any member's class ``c + 1`` (each ``.npz`` is a
stream whose channels come in class order), so it needs the running sum of ONE class plane plus the
running maximum and argmax, never a ``(C, ...)`` accumulator. Work is split over the leading axis of the
member's box and run with :func:`medfuse._kernels.threads.run_chunked`.

:func:`_add_box`
    ``plane[z0 + z, y0 + y, x0 + x] += w * member[z, y, x]``; ``member`` holds float16 or float32 values
    read as ``uint16`` / ``uint32`` bits (:mod:`medfuse._kernels.f16`).
:func:`_add_label_box`
    ``plane[...] += w * (labels[...] == c)``: a hard member's one-hot plane, never materialised.
:func:`_argmax_update`
    ``v = plane * scale``; where ``v > best``: ``best = v``, ``labels = c`` (strict: ties keep the lower
    class), written without masked stores. ``c == 0`` initialises ``best`` and ``labels``.
"""

from __future__ import annotations

from . import jit
from .f16 import _bits_to_float32

__all__ = ["_add_box", "_add_label_box", "_argmax_update"]


@jit
def _add_box(k0, k1, t, plane, z0, y0, x0, member, w):
    ny = member.shape[1]
    nx = member.shape[2]
    for z in range(k0, k1):
        for y in range(ny):
            dst = plane[z0 + z, y0 + y, x0:x0 + nx]
            src = member[z, y]
            for x in range(nx):
                dst[x] += w * _bits_to_float32(src[x])


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
        p = plane[s0:s1]
        b = best[s0:s1]
        lab = labels[s0:s1]
        if c == 0:
            for i in range(s1 - s0):
                b[i] = p[i] * scale
                lab[i] = 0
        else:
            for i in range(s1 - s0):
                v = p[i] * scale
                gt = v > b[i]
                b[i] = max(v, b[i])
                lab[i] = lab[i] + gt * (c - lab[i])
