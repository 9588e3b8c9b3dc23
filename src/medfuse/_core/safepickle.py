"""The restricted unpickler: numpy arrays, dtypes, scalars, OrderedDict and builtin containers only.

A ``.pkl`` from someone else's folder must not be able to run code. :func:`loads_pickle` resolves only the
globals in :data:`ALLOWED_GLOBALS`; anything else is an :class:`~medfuse.errors.UnsafePickleError` and is
never loaded. Reading files and writing pickles live in :mod:`medfuse.io.pickles`; this module is here, in
the core, so that write verification (:mod:`medfuse._core.verify`) can read a pickle back.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import FormatError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "loads_pickle"]


def _numpy_core_attr(submodule: str, name: str) -> Callable[[], Any]:
    """Resolver of ``numpy(._)core.<submodule>.<name>`` on whichever numpy is installed."""

    def resolve() -> Any:
        for package in ("numpy._core", "numpy.core"):
            try:
                module = importlib.import_module(f"{package}.{submodule}")
            except ImportError:
                continue
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"numpy has no {submodule}.{name}")  # pragma: no cover - numpy internals moved

    return resolve


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


def _codecs_encode() -> Any:
    import codecs

    return codecs.encode


_NUMPY_CORE: dict[tuple[str, str], Callable[[], Any]] = {}
for _package in ("numpy.core", "numpy._core"):
    _NUMPY_CORE[(f"{_package}.multiarray", "_reconstruct")] = _numpy_core_attr("multiarray", "_reconstruct")
    _NUMPY_CORE[(f"{_package}.multiarray", "scalar")] = _numpy_core_attr("multiarray", "scalar")
    # protocol 5 (the default from Python 3.14) stores contiguous arrays through _frombuffer
    _NUMPY_CORE[(f"{_package}.numeric", "_frombuffer")] = _numpy_core_attr("numeric", "_frombuffer")

#: ``(module, name)`` -> resolver of every global a medfuse-readable pickle may reference.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): _const(collections.OrderedDict),
    ("numpy", "ndarray"): _const(np.ndarray),
    ("numpy", "dtype"): _const(np.dtype),
    **_NUMPY_CORE,
    # builtin containers that protocols 0-3 store as globals (protocol 4+ has opcodes for them)
    **{(module, name): _const(obj) for module in ("builtins", "__builtin__")
       for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex),
                         ("bytearray", bytearray))},
    # protocol 2 written by Python 3 stores bytes (numpy array buffers) as _codecs.encode(str, "latin1")
    ("_codecs", "encode"): _codecs_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, *, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        resolver = ALLOWED_GLOBALS.get((module, name))
        if resolver is None:
            raise UnsafePickleError(
                f"{self._source} references `{module}.{name}`, which is not allowed in a properties/plans "
                "pickle (only numpy arrays, dtypes, scalars, OrderedDict and builtin containers are); it was "
                "NOT loaded or executed. If you trust this file, load it yourself with pickle.load."
            )
        return resolver()


def loads_pickle(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted unpickler (see :func:`load_pickle`).

    Parameters
    ----------
    data : bytes
        The pickle stream.
    source : str, optional
        What to call the data in error messages (a file name).
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # pickle raises many types on corrupt input (EOFError, ValueError, ...)
        raise FormatError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt, or not a pickle. Re-create it (re-run the prediction with --save_npz)."
        ) from exc
