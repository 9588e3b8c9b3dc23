"""Numba's on-disk cache for medfuse's kernels, made safe when several processes compile at once.

Where: ``$NUMBA_CACHE_DIR/medfuse/<tag>`` when ``NUMBA_CACHE_DIR`` is set, else the user cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on
Windows) ``/medfuse/numba/<tag>``, with ``<tag> = <medfuse version>-<numba version>-py<major><minor>``.
Below that numba's usual per-source-folder sub-folder keeps two installs of medfuse apart.
``MEDFUSE_NUMBA_CACHE=0`` turns the cache off.

Why a lock: numba keeps one index file per function (signature -> data file number) and one data file per
compiled signature. Saving reads the index, picks the first free number, rewrites the index, then writes
the data file; loading reads the index, then the data file named there. Each file is replaced atomically,
but the pair is not: two processes that compile different signatures of one kernel at the same time both
pick number 1, one index entry is lost and, worse, the surviving entry can point at the other process's
machine code, which a third process then loads and runs -> wrong results or a segfault (numba issue
#4807). Here every load and save of a function's cache holds an inter-process lock on
``<function>.lock`` beside its index (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows): shared to
load, exclusive to save, so an index and its data files are always read and written as one.

The lock wraps numba internals (``numba.core.caching``). They are checked when the first kernel is
built; on a numba outside the tested range, or when they look different, or when the cache folder cannot
be written, kernels compile without the cache and one warning says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numba
from numba.core import caching, dispatcher

from .._version import __version__

__all__ = ["cache_enabled", "cache_root", "enable_cache"]

#: numba versions whose caching internals this module was written against (lowest, first untested)
_TESTED = ((0, 59), (0, 70))
_OFF = {"0", "false", "no", "off"}
_state: dict[str, Any] = {"warned": False, "usable": None}


def cache_enabled() -> bool:
    """Whether kernels use the on-disk cache (``MEDFUSE_NUMBA_CACHE`` is not 0/false/no/off)."""
    return os.environ.get("MEDFUSE_NUMBA_CACHE", "").strip().lower() not in _OFF


def _user_cache_home() -> Path:
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"])
    return Path.home() / ".cache"


def cache_root() -> Path:
    """The folder medfuse's compiled kernels go to (per medfuse, numba and Python version)."""
    tag = f"{__version__}-{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "medfuse" / tag
    return _user_cache_home() / "medfuse" / "numba" / tag


def _numba_version() -> tuple[int, int]:
    parts = numba.__version__.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def _internals_problem() -> str | None:
    """Why numba's caching internals cannot be wrapped here (None when they can)."""
    if not _TESTED[0] <= _numba_version() < _TESTED[1]:
        return f"numba {numba.__version__} is outside the tested range 0.59-0.69"
    needed = {caching: ("FunctionCache", "IndexDataCacheFile", "CompileResultCacheImpl", "_CacheLocator",
                        "_SourceFileBackedLocatorMixin"),
              caching.IndexDataCacheFile: ("save", "load", "_load_index", "_save_index"),
              caching.CacheImpl: ("_locator_classes", "locator", "filename_base"),
              dispatcher.Dispatcher: ("enable_caching", "stats")}
    for owner, names in needed.items():
        missing = [n for n in names if not hasattr(owner, n)]
        if missing:
            return f"numba {numba.__version__} has no {', '.join(missing)} in {getattr(owner, '__name__', owner)}"
    return None


def _warn_once(reason: str) -> None:
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"medfuse compiles its kernels without numba's on-disk cache: {reason}. Each new process "
                      "compiles them again (seconds); set MEDFUSE_NUMBA_CACHE=0 to silence this.",
                      RuntimeWarning, stacklevel=4)


@contextlib.contextmanager
def _locked(path: str, *, exclusive: bool) -> Iterator[None]:
    """Hold an inter-process lock on the file ``path`` (created when missing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # exclusive only; retries for 10 s, then raises
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class _LockedIndexDataCacheFile(caching.IndexDataCacheFile):
    """numba's index + data files, read and written under one lock per function."""

    def __init__(self, cache_path: str, filename_base: str, source_stamp: Any) -> None:
        super().__init__(cache_path, filename_base, source_stamp)
        self._lock_path = os.path.join(cache_path, f"{filename_base}.lock")

    def save(self, key: Any, data: Any) -> None:
        try:
            with _locked(self._lock_path, exclusive=True):
                super().save(key, data)
        except OSError as exc:  # a cache that cannot be written costs a compile next time, never a result
            _warn_once(f"saving to {self._cache_path} failed ({exc})")

    def load(self, key: Any) -> Any:
        if not os.path.exists(self._index_path):
            return None  # nothing cached yet: no lock file needed
        try:
            with _locked(self._lock_path, exclusive=False):
                return super().load(key)
        except OSError as exc:
            _warn_once(f"reading {self._cache_path} failed ({exc})")
            return None


def _sources_stamp(files: tuple[str, ...]) -> str:
    """sha256 over the contents of ``files`` (memoised per process by their mtimes and sizes)."""
    key = tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)
    if key not in _STAMPS:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.encode() + b"\0" + Path(f).read_bytes())
        _STAMPS[key] = digest.hexdigest()
    return _STAMPS[key]


_STAMPS: dict[tuple[tuple[str, int, int], ...], str] = {}


class _Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Files of a kernel under :func:`cache_root`, in numba's per-source-folder sub-folder.

    Fresh means: the kernel's own file AND every module of this package are unchanged. Numba alone
    checks only the kernel's file, so a changed helper it inlines (``f16``, ``raw``, ``kinds``) would
    load stale machine code in a development checkout, where the version (and so the folder) stays.
    """

    def get_source_stamp(self) -> Any:
        package = sorted(str(f) for f in Path(__file__).parent.glob("*.py"))
        return _sources_stamp(tuple(dict.fromkeys([os.path.abspath(self._py_file), *package])))

    def __init__(self, py_func: Any, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(cache_root() / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if not os.path.exists(py_file):
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None  # not writable
        return self


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]  # noqa: RUF012 - numba's own attribute


class _LockedFunctionCache(caching.FunctionCache):
    """numba's per-function cache in medfuse's folder, with :class:`_LockedIndexDataCacheFile`."""

    _impl_class = _Impl

    def __init__(self, py_func: Any) -> None:
        super().__init__(py_func)
        self._cache_file = _LockedIndexDataCacheFile(
            cache_path=self._cache_path, filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp())


def enable_cache(kernel: Any) -> Any:
    """Give the numba dispatcher ``kernel`` the locked on-disk cache (when allowed and possible)."""
    if not cache_enabled() or not isinstance(kernel, dispatcher.Dispatcher):
        return kernel  # turned off, or NUMBA_DISABLE_JIT (a plain function)
    if _state["usable"] is None:
        problem = _internals_problem()
        _state["usable"] = problem is None
        if problem is not None:
            _warn_once(problem)
    if not _state["usable"]:
        return kernel
    try:
        cast(Any, kernel)._cache = _LockedFunctionCache(kernel.py_func)  # what Dispatcher.enable_caching sets
    except (RuntimeError, OSError) as exc:  # no locator: the cache folder cannot be written
        _warn_once(f"the cache folder {cache_root()} cannot be used ({exc})")
    return kernel
