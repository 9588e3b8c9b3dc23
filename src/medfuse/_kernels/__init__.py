"""Every numba kernel of medfuse lives in this private package; no validation, no IO here.

Kernels are compiled lazily on first call. Numba's on-disk cache is OFF by default (it can crash under
multiprocessing); set ``MEDFUSE_NUMBA_CACHE=1`` to turn it on. Importing this package compiles nothing and
loads no numba: :mod:`.kinds`, :mod:`.threads` and :mod:`.f16` are numba-free; numba loads with the first
kernel module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["jit", "parallel_jit"]

_CACHE = os.environ.get("MEDFUSE_NUMBA_CACHE", "").strip().lower() in {"1", "true", "yes", "on"}


def jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` with medfuse's defaults: nogil, no fastmath, cache only when asked."""
    import numba

    return numba.njit(nogil=True, cache=_CACHE)(fn)


def parallel_jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit(parallel=True)`` with medfuse's defaults; use ``numba.prange`` over chunks inside."""
    import numba

    return numba.njit(nogil=True, parallel=True, cache=_CACHE)(fn)
