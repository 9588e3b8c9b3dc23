"""Run a ``nogil`` kernel over ranges of chunks on several threads (private).

The fusion and vote kernels are plain ``@jit(nogil=True)`` functions that process the chunks
``k0 .. k1`` of their input and write per-task outputs at row ``t``. :func:`split` cuts the chunks into
contiguous ranges (several per thread), and :func:`run_ranges` runs them on ``threads`` threads (the
caller's and a shared pool's), each thread taking the next range as soon as it is free.

Why not ``numba.prange``: its parfor lowering costs about 2 s of compile time per kernel here, for a
loop that only hands out ranges. Why several ranges per thread (dynamic scheduling): on a machine
shared with other jobs, a thread that loses its core for a while would otherwise hold up the whole call
with its fixed half of the work. The thread count follows ``numba.get_num_threads()`` (so
``NUMBA_NUM_THREADS`` and ``numba.set_num_threads`` apply).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numba

__all__ = ["n_threads", "run_chunked", "run_ranges", "split"]

#: ranges per thread handed out by :func:`split`
RANGES_PER_THREAD = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def n_threads() -> int:
    """Threads a kernel call uses: numba's current setting."""
    return max(1, int(numba.get_num_threads()))


def split(n_chunks: int, threads: int, *, per_thread: int = RANGES_PER_THREAD) -> list[tuple[int, int]]:
    """Contiguous chunk ranges ``[(k0, k1), ...]`` covering ``range(n_chunks)``: one when single-threaded,
    else up to ``threads * per_thread`` of (almost) equal size. Empty list when there is no chunk."""
    if n_chunks <= 0:
        return []
    n = 1 if threads <= 1 else max(1, min(n_chunks, threads * per_thread))
    bounds = [(i * n_chunks) // n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1),
                                       thread_name_prefix="medfuse-kernel")
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child inherits the pool object but not its threads: start a new pool there."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def run_ranges(kernel: Callable[..., Any], ranges: Sequence[tuple[int, int]], threads: int, *args: Any) -> None:
    """Call ``kernel(k0, k1, t, *args)`` for every ``(k0, k1) = ranges[t]`` on up to ``threads`` threads.

    Each thread takes the next range as soon as it is done with one. An exception in any call is
    re-raised here after every thread has stopped.
    """
    if not ranges:
        return
    workers = max(1, min(threads, len(ranges)))
    if workers == 1:
        for t, (k0, k1) in enumerate(ranges):
            kernel(k0, k1, t, *args)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            t = next(counter)
            if t >= len(ranges):
                return
            try:
                kernel(ranges[t][0], ranges[t][1], t, *args)
            except BaseException:
                failed.set()
                raise

    pool = _executor()
    futures: list[Future[None]] = [pool.submit(work) for _ in range(workers - 1)]
    error: BaseException | None = None
    try:
        work()
    except BaseException as exc:  # re-raised below, after the other threads stopped
        error = exc
    for f in futures:
        try:
            f.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


def run_chunked(kernel: Callable[..., Any], n_chunks: int, threads: int, *args: Any) -> None:
    """Call ``kernel(k0, k1, t, *args)`` for ``t`` in ``range(threads)``, one contiguous range per thread.

    Thread ``t`` gets chunks ``[t * per, min(n_chunks, (t + 1) * per))``; threads past the end get an
    empty range (the kernel is still called, so per-thread outputs are always written). Static
    scheduling, for kernels whose per-thread outputs are sized by ``threads``; prefer :func:`split` +
    :func:`run_ranges`.
    """
    per = -(-n_chunks // threads) if threads > 0 else 0
    ranges = [(min(n_chunks, t * per), min(n_chunks, (t + 1) * per)) for t in range(threads)]
    if threads <= 1 or n_chunks <= 1:
        for t, (k0, k1) in enumerate(ranges):
            kernel(k0, k1, t, *args)
        return
    run_ranges(kernel, ranges, threads, *args)
