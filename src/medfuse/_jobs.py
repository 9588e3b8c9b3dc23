"""Small helpers shared by the folder jobs: running cases on an executor, writing JSON atomically."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, as_completed
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_default", "run_jobs", "write_json"]


def write_json(path: Path, data: Any) -> None:
    from .io import atomic_write

    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


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
