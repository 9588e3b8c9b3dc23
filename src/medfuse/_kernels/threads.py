"""Run a ``nogil`` kernel over contiguous ranges of chunks on several threads (private).

The fusion and vote kernels are plain ``@jit(nogil=True)`` functions that process the chunks
``k0 .. k1`` of their input; :func:`run_chunked` splits the chunks into one contiguous range per thread
and calls the kernel on a shared thread pool (the caller's thread takes the first range). This is the
same schedule as a ``prange`` over threads, without numba's parfor lowering, which costs about 2 s of
compile time per kernel here. The thread count follows ``numba.get_num_threads()`` (so
``NUMBA_NUM_THREADS`` and ``numba.set_num_threads`` apply).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numba

__all__ = ["n_threads", "run_chunked"]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def n_threads() -> int:
    """Threads a kernel call uses: numba's current setting."""
    return max(1, int(numba.get_num_threads()))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1),
                                       thread_name_prefix="medfuse-kernel")
        return _pool


def run_chunked(kernel: Callable[..., Any], n_chunks: int, threads: int, *args: Any) -> None:
    """Call ``kernel(k0, k1, t, *args)`` for ``t`` in ``range(threads)`` with contiguous chunk ranges.

    Thread ``t`` gets chunks ``[t * per, min(n_chunks, (t + 1) * per))``; threads past the end get an
    empty range (the kernel is still called, so per-thread outputs are always written). Exceptions in
    any thread are re-raised here after every thread has finished.
    """
    per = -(-n_chunks // threads) if threads > 0 else 0
    ranges = [(min(n_chunks, t * per), min(n_chunks, (t + 1) * per)) for t in range(threads)]
    if threads <= 1 or n_chunks <= 1:
        for t, (k0, k1) in enumerate(ranges):
            kernel(k0, k1, t, *args)
        return
    pool = _executor()
    futures: list[Future[Any]] = [pool.submit(kernel, k0, k1, t, *args) for t, (k0, k1) in enumerate(ranges)
                                  if t > 0]
    error: BaseException | None = None
    try:
        kernel(ranges[0][0], ranges[0][1], 0, *args)
    except BaseException as exc:  # re-raised below, after the other threads finished
        error = exc
    for f in futures:
        try:
            f.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
