"""Confusion-matrix counting kernels (private; the public wrapper is :func:`medfuse.metrics.confusion_matrix`).

Both label maps are read once. The public wrapper hands the kernels *unsigned* views of the caller's
arrays (``int16`` is viewed as ``uint16``, ...), read-only, in native byte order or flagged as swapped, so
no input is ever copied and every integer dtype maps to one of four unsigned widths: a kernel is compiled
(lazily, 2-4 s each) once per pair of widths it meets, e.g. once for two uint8 maps.

Counting
    Counts go into a ``(k + 1, k + 1)`` table. A value is clamped to ``k`` (``min(unsigned(v), k)``), so
    every label ``>= k`` *and* every negative label (which the unsigned view turns into a huge value)
    lands in the last row or column: the wrapper raises when those hold anything, and finds the culprit
    only then. No bounds check happens per voxel.
Fast path
    Label maps are spatially coherent: many runs of 2048 voxels hold a single (reference, prediction)
    pair. Such a block is detected with a branch-free OR-reduction of XORs (vectorised by LLVM) and
    counted at once. In a mixed block, run starts are flagged in one vectorised pass and the flag words
    that hold one are listed without a branch, then read with ``tzcnt``; each run costs one table
    update (no per-voxel increments, so no store-to-load dependency on a bin hit voxel after voxel).
Parallelism
    The kernels are ``nogil``; :func:`medfuse._kernels.threads.run_ranges` runs them on contiguous ranges
    of blocks (or of rows), several per thread, taken as threads free up, each range with its own partial
    table, summed at the end. No ``prange``: numba's parfor lowering adds seconds of compile time per
    specialisation, and OpenMP's static schedule makes every call wait for a thread that another job
    has descheduled (see "Kernel design notes" in ``docs/performance.md``).
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from . import jit

#: voxels checked at once by the fast path (a multiple of 8: the run scan reads uint64 words of flags)
BLOCK = 2048
#: scratch bytes per range: BLOCK flag bytes, then BLOCK // 8 uint16 indices of flag words
SCRATCH_BYTES = BLOCK + BLOCK // 4


def _byteswap(v):
    """Value of the unsigned integer ``v`` with its bytes reversed, as uint64.

    This body runs only with ``NUMBA_DISABLE_JIT=1``; compiled kernels use the overload below.
    """
    return np.uint64(v.byteswap())


@overload(_byteswap, jit_options={"nogil": True})
def _byteswap_impl(v):
    width = v.bitwidth
    if width == 8:
        return lambda v: np.uint64(v)
    if width == 16:
        def swap16(v):
            x = np.uint64(v)
            return ((x & np.uint64(0xFF)) << np.uint64(8)) | (x >> np.uint64(8))
        return swap16
    if width == 32:
        def swap32(v):
            x = np.uint64(v)
            return (
                ((x & np.uint64(0x000000FF)) << np.uint64(24))
                | ((x & np.uint64(0x0000FF00)) << np.uint64(8))
                | ((x & np.uint64(0x00FF0000)) >> np.uint64(8))
                | (x >> np.uint64(24))
            )
        return swap32
    if width == 64:
        def swap64(v):
            x = np.uint64(v)
            out = np.uint64(0)
            for _ in range(8):
                out = (out << np.uint64(8)) | (x & np.uint64(0xFF))
                x = x >> np.uint64(8)
            return out
        return swap64
    return None


def _lowest_set_byte(x):
    """Index of the lowest non-zero byte of the non-zero uint64 ``x``.

    This body runs only with ``NUMBA_DISABLE_JIT=1``; compiled kernels use the overload below.
    """
    x = int(x)
    return ((x & -x).bit_length() - 1) >> 3


@overload(_lowest_set_byte, jit_options={"nogil": True})
def _lowest_set_byte_impl(x):
    if isinstance(x, types.Integer):
        return lambda x: np.int64(trailing_zeros(x) >> 3)  # type: ignore[call-arg]  # one tzcnt
    return None


@jit
def _index(v, swap, k):
    """Row/column index of the raw value ``v``: native value clamped to ``k`` (out of range -> ``k``)."""
    x = _byteswap(v) if swap else np.uint64(v)
    return np.int64(min(x, np.uint64(k)))


@jit
def _uniform(ref, pred, size):
    """Whether the first ``size`` pairs of two 1-D arrays are all equal (branch-free, vectorised)."""
    r0 = ref[0]
    p0 = pred[0]
    diff = (r0 ^ r0) | (p0 ^ p0)
    for i in range(size):
        diff |= (ref[i] ^ r0) | (pred[i] ^ p0)
    return diff == 0


@jit
def _count_runs(ref, pred, table, k, kk, swap_r, swap_p, flags):
    """Add the pairs of two equal-length 1-D arrays (at most ``BLOCK`` long) to ``table``, run by run.

    Run starts are flagged in a vectorised pass (``flags[i] = pair[i] != pair[i - 1]``), read eight at a
    time as uint64 words; the words holding a run start are listed without a branch (into the uint16
    tail of ``flags``), and the starts in each are found with ``tzcnt``. A voxel inside a run costs a
    fraction of a cycle and each run one table update, with no branch per word or per flag (a run start
    would be a mispredicted branch or two).
    """
    n = ref.size
    if n == 0:
        return
    cur_r = ref[1:n]
    prev_r = ref[0:n - 1]
    cur_p = pred[1:n]
    prev_p = pred[0:n - 1]
    starts = flags[1:n]
    for i in range(n - 1):
        starts[i] = np.uint8(((cur_r[i] ^ prev_r[i]) | (cur_p[i] ^ prev_p[i])) != 0)
    flags[0] = 0
    words = flags[:BLOCK].view(np.uint64)
    listed = flags[BLOCK:].view(np.uint16)
    n_words = n // 8
    n_listed = 0
    for w in range(n_words):  # branch-free list of the words that hold a run start
        listed[n_listed] = w
        n_listed += words[w] != 0
    start = 0
    for q in range(n_listed):
        w = np.int64(listed[q])
        x = words[w]
        while x != 0:
            j = 8 * w + _lowest_set_byte(x)
            x &= x - np.uint64(1)  # flags are 0 or 1: this clears byte j
            table[_index(ref[start], swap_r, k) * kk + _index(pred[start], swap_p, k)] += j - start
            start = j
    for j in range(8 * n_words, n):
        if flags[j]:
            table[_index(ref[start], swap_r, k) * kk + _index(pred[start], swap_p, k)] += j - start
            start = j
    table[_index(ref[start], swap_r, k) * kk + _index(pred[start], swap_p, k)] += n - start


@jit
def _count_range(ref, pred, table, k, swap_r, swap_p, flags):
    """Add every pair of two equal-length 1-D arrays to the flat ``(k+1)*(k+1)`` ``table``.

    A uniform ``BLOCK``-voxel block is counted at once, any other run by run (``flags``: a uint8 scratch
    array of :data:`SCRATCH_BYTES` values). Measured on coherent label maps: large blocks amortise the
    uniformity check, and flag-scanning makes mixed blocks cheap; nested block levels cost more than they
    save.
    """
    kk = k + 1
    n = ref.size
    n_blocks = n // BLOCK
    for b in range(n_blocks):
        s = b * BLOCK
        rb = ref[s:s + BLOCK]
        pb = pred[s:s + BLOCK]
        if _uniform(rb, pb, rb.size):
            table[_index(rb[0], swap_r, k) * kk + _index(pb[0], swap_p, k)] += BLOCK
        else:
            _count_runs(rb, pb, table, k, kk, swap_r, swap_p, flags)
    tail = n_blocks * BLOCK
    if tail < n:
        _count_runs(ref[tail:], pred[tail:], table, k, kk, swap_r, swap_p, flags)


@jit
def _count_flat(k0, k1, t, ref, pred, partial, k, swap_r, swap_p, per, scratch):
    """Count chunks ``k0 .. k1`` (``per`` voxels each) of two 1-D contiguous arrays into ``partial[t]``.

    Called by :func:`medfuse._kernels.threads.run_ranges` for range ``t``; ``scratch[t]`` is the range's
    :data:`SCRATCH_BYTES`-byte scratch buffer.
    """
    n = ref.size
    s = min(n, k0 * per)
    e = min(n, k1 * per)
    if e > s:
        _count_range(ref[s:e], pred[s:e], partial[t], k, swap_r, swap_p, scratch[t])


@jit
def _count_strided(k0, k1, t, ref, pred, partial, k, swap_r, swap_p, scratch):
    """Count rows ``[i, j, :]`` number ``k0 .. k1`` (row-major over the first two axes) of two 3-D arrays
    of any strides into ``partial[t]``."""
    n1 = ref.shape[1]
    for q in range(k0, k1):
        i = q // n1
        j = q - i * n1
        _count_range(ref[i, j], pred[i, j], partial[t], k, swap_r, swap_p, scratch[t])
