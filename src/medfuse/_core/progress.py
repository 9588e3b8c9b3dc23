"""Progress bars (tqdm when installed and asked for, silence otherwise) and a prefetching iterator."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .optional import has_module

__all__ = ["prefetch", "progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, enabled: bool, total: int | None = None, desc: str = "",
                 unit: str = "case") -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``enabled`` and tqdm is installed; otherwise return it."""
    if not enabled or not has_module("tqdm"):
        return iterable
    from tqdm.auto import tqdm

    bar: Iterable[T] = tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)
    return bar


_DONE = object()


def prefetch(iterable: Iterable[T], *, depth: int = 2) -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead of the consumer.

    Used to overlap decoding (zlib releases the GIL) with accumulation. Exceptions raised by the producer
    are re-raised in the consumer; abandoning the iterator stops the producer.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="medfuse-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
