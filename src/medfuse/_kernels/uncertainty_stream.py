"""Uncertainty kernels of the streaming accumulators (private; :mod:`medfuse.fusion.uncertainty_stream`).

When members arrive one at a time, :func:`_member_stats` keeps each member's argmax and entropy,
:func:`_mean_entropy` takes the entropy of the accumulated mean and :func:`_compare_members` the disagreement
and counts: the quantities :func:`medfuse._kernels.uncertainty._uncertainty_chunks` computes in one pass.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .f16 import _bits_to_float32
from .logf import _plogp
from .raw import _load_labels, _view, inline

__all__ = ["_compare_members", "_mean_entropy", "_member_stats"]


@jit
def _member_stats(k0, k1, t, src_addr, kind, cstride, n_classes, n_voxels, chunk, arg, ent):
    """One member's argmax (lowest class on ties) into ``arg`` (uint8 or uint16, ``n_voxels``) and its entropy
    ``-sum_c p ln p`` into ``ent`` (float32), on chunks ``k0 .. k1``; ``kind``: 0 float16, 1 float32, with
    ``C`` rows ``cstride`` items apart. ``p ln p`` is :func:`medfuse._kernels.logf._plogp` (as in the
    one-pass kernel); a negative value (an unchecked member) adds 0."""
    best = np.empty(chunk, np.float32)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        a = arg[s0:s0 + n]
        h = ent[s0:s0 + n]
        for i in range(n):
            best[i] = -np.inf
            a[i] = 0
            h[i] = 0.0
        for c in range(n_classes):
            if kind == 0:
                _entropy_argmax_row(_view(src_addr + 2 * (c * cstride + s0), n, np.uint16), n, c, h, best, a)
            else:
                _entropy_argmax_row(_view(src_addr + 4 * (c * cstride + s0), n, np.uint32), n, c, h, best, a)


@inline
def _entropy_argmax_row(bits, n, c, h, best, a):
    """Class ``c`` of one member (float16 or float32 bits): ``h -= p ln p``, running maximum ``best`` and
    argmax ``a`` (strict ``>``: the lower class keeps a tie)."""
    for i in range(n):
        p = _bits_to_float32(bits[i])
        h[i] -= _plogp(p)
        gt = p > best[i]
        best[i] = p if gt else best[i]
        a[i] = c if gt else a[i]


@jit
def _mean_entropy(k0, k1, t, sums_addr, sums_kind, scale, n_voxels, chunk, out):
    """Entropy of ``pbar[c] = sums[c] * scale[c]`` renormalised over classes, into ``out`` (float32).

    ``sums``: ``(C, n_voxels)`` C-contiguous, ``sums_kind`` 0 uint8, 1 uint16, 2 float32 (vote counts or
    probability sums); ``scale``: (C,) float32.
    """
    n_classes = scale.size
    tot = np.empty(chunk, np.float32)
    plp = np.empty(chunk, np.float32)
    zero = np.float32(0.0)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        for i in range(n):
            tot[i] = zero
            plp[i] = zero
        for c in range(n_classes):
            j = c * n_voxels + s0
            sc = scale[c]
            if sums_kind == 0:
                c8 = _view(sums_addr + j, n, np.uint8)
                for i in range(n):
                    x = np.float32(c8[i]) * sc
                    tot[i] += x
                    plp[i] += _plogp(x)
            elif sums_kind == 1:
                c16 = _view(sums_addr + 2 * j, n, np.uint16)
                for i in range(n):
                    x = np.float32(c16[i]) * sc
                    tot[i] += x
                    plp[i] += _plogp(x)
            else:
                c32 = _view(sums_addr + 4 * j, n, np.float32)
                for i in range(n):
                    x = c32[i] * sc
                    tot[i] += x
                    plp[i] += _plogp(x)
        o = out[s0:s0 + n]
        for i in range(n):
            x = tot[i]
            o[i] = max((_plogp(x) - plp[i]) / x, zero) if x > zero else zero


@jit
def _compare_members(k0, k1, t, arg_addrs, arg_kind, omega, fused_addr, fused_kind, n_classes, n_voxels, chunk,
                     disagreement, volumes, overlap, fused_volumes):
    """Disagreement (``sum_m omega_m [arg_m != fused]``, into ``disagreement``) and the per-range counts of
    :func:`_uncertainty_chunks`, from the members' stored argmax maps (``arg_kind`` 0 uint8, 1 uint16, at
    ``arg_addrs``) and the fused labels (``fused_kind`` likewise). Fused labels ``>= n_classes`` (an undecided
    vote) are counted nowhere and agree with no member."""
    n_members = arg_addrs.size
    zero = np.float32(0.0)
    lab = np.empty(chunk, np.int64)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_voxels - s0)
        _load_labels(fused_addr, fused_kind, s0, lab, n)
        fv = fused_volumes[t]
        dis = disagreement[s0:s0 + n]
        for i in range(n):
            dis[i] = zero
            if lab[i] < n_classes:
                fv[lab[i]] += 1
        for m in range(n_members):
            om = omega[m]
            vm = volumes[t, m]
            ov = overlap[t, m]
            if arg_kind == 0:
                a8 = _view(arg_addrs[m] + s0, n, np.uint8)
            else:
                a16 = _view(arg_addrs[m] + 2 * s0, n, np.uint16)
            for i in range(n):
                a = np.int64(a8[i]) if arg_kind == 0 else np.int64(a16[i])
                same = a == lab[i]
                dis[i] += zero if same else om
                if a < n_classes:
                    vm[a] += 1
                    if same:
                        ov[a] += 1
