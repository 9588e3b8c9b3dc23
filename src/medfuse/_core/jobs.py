"""Running the cases of a folder job on an executor (writing its JSON is :mod:`medfuse.io.jsonfile`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, as_completed
from typing import Any

__all__ = ["run_jobs"]


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], executor: Executor | None) -> Iterable[Any]:
    """Yield ``fn(job)`` results as they complete; the first failure cancels what has not started."""
    if executor is None:
        for job in jobs:
            yield fn(job)
        return
    futures: list[Future[Any]] = [executor.submit(fn, job) for job in jobs]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        for fut in futures:
            fut.cancel()
