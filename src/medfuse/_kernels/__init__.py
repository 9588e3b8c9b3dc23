"""Every numba kernel of medfuse lives in this private package; no validation, no IO here.

Kernels are compiled lazily on first call and cached on disk, so a machine compiles them once, not every
new process: see :mod:`.cache` for where (``NUMBA_CACHE_DIR``, else the user cache folder), why it is safe
when several processes compile at once (a per-kernel file lock), and ``MEDFUSE_NUMBA_CACHE=0`` to turn it
off. Importing this package compiles nothing and loads no numba: :mod:`.kinds`, :mod:`.threads` and
:mod:`.f16` are numba-free; numba loads with the first kernel module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["jit", "parallel_jit"]


def jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` with medfuse's defaults: nogil, no fastmath, the locked on-disk cache."""
    import numba

    from .cache import enable_cache

    return enable_cache(numba.njit(nogil=True)(fn))


def parallel_jit(fn: Callable[..., Any]) -> Any:
    """``numba.njit(parallel=True)`` with medfuse's defaults; use ``numba.prange`` over chunks inside."""
    import numba

    from .cache import enable_cache

    return enable_cache(numba.njit(nogil=True, parallel=True)(fn))
