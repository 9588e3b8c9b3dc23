"""Memory read bandwidth probe for the benchmark (private; see :mod:`medfuse.bench.runner`).

A sum of 64-bit integers (wrapping): an integer reduction LLVM vectorises without fastmath, so the
loop runs at the speed memory delivers the data. Run on every thread over contiguous chunks, it gives
the read bandwidth the fusion kernels can hope for.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .raw import _view

__all__ = ["_sum_chunks"]


@jit
def _sum_chunks(k0, k1, t, address, n_items, chunk, out):
    """``out[t]`` = wrapping sum of the uint64 items of chunks ``k0 .. k1`` at ``address``."""
    total = np.uint64(0)
    for k in range(k0, k1):
        s0 = k * chunk
        n = min(chunk, n_items - s0)
        row = _view(address + 8 * s0, n, np.uint64)
        for i in range(n):
            total += row[i]
    out[t] = total
