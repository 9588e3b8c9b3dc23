"""Reading and writing the models' ``.pkl`` properties files without running anyone's code.

A ``.pkl`` from someone else's prediction folder is untrusted: ``pickle.load`` will call any function the
file names. :func:`load_pickle` uses an unpickler that resolves only the handful of globals that
properties and plans files really contain (``collections.OrderedDict`` and numpy's array, dtype and scalar
reconstructors, under both their numpy 1 ``numpy.core`` and numpy 2 ``numpy._core`` names) plus a few
builtin containers. Any other global raises :class:`~medfuse.errors.UnsafePickleError` *before* it is
looked up, so nothing in the file is executed.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError, UnsafePickleError
from .atomic import atomic_write

__all__ = ["ALLOWED_GLOBALS", "load_pickle", "loads_pickle", "save_pickle"]


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


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a ``.pkl`` properties or plans file without executing anything it references.

    Parameters
    ----------
    path : path-like
        The ``.pkl`` file.

    Returns
    -------
    object
        The unpickled object (``OrderedDict``/``dict``/``list`` of numpy arrays, tuples, lists, ...).

    Raises
    ------
    UnsafePickleError
        The file references a global outside :data:`ALLOWED_GLOBALS` (e.g. ``os.system``); the message
        names the file and the global. Nothing was executed.
    FormatError
        The file is missing, truncated or not a pickle.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read pickle {p}: {exc}.") from exc
    return loads_pickle(data, source=str(p))


def _numpy1_global_names(data: bytes) -> bytes:
    """Rewrite ``GLOBAL numpy._core.*`` opcodes to ``numpy.core.*`` so numpy 1 can read the pickle too.

    Only the GLOBAL opcodes (protocols 0-3, newline-terminated text) are touched; located with
    ``pickletools.genops``, so array payloads are never searched.
    """
    out: list[bytes] = []
    last = 0
    for opcode, arg, pos in pickletools.genops(data):
        if (opcode.name == "GLOBAL" and pos is not None and isinstance(arg, str)
                and arg.startswith("numpy._core.")):
            module, name = arg.split(" ", 1)
            end = pos + 1 + len(module) + 1 + len(name) + 1
            out.append(data[last:pos])
            out.append(b"c" + module.replace("numpy._core", "numpy.core", 1).encode() + b"\n"
                       + name.encode() + b"\n")
            last = end
    out.append(data[last:])
    return b"".join(out)


def save_pickle(path: str | os.PathLike[str], obj: Any, *, protocol: int = 3) -> None:
    """Pickle ``obj`` to ``path`` atomically, readable by the models' own (numpy 1) environments.

    Parameters
    ----------
    path : path-like
        Destination ``.pkl``; replaced only once the whole file is written and read back identical.
    obj : object
        What to pickle (properties dicts: numpy arrays, tuples, lists, OrderedDict).
    protocol : int, default 3
        Pickle protocol. The default (what the real properties files use) writes numpy's reconstructors
        under their numpy 1 names (``numpy.core.multiarray``), which numpy 2 reads as well.
    """
    data = pickle.dumps(obj, protocol=protocol)
    if protocol <= 3:
        data = _numpy1_global_names(data)

    def same_bytes(written: Path) -> None:  # stronger and cheaper than unpickling it again
        if written.read_bytes() != data:
            raise FormatError(f"{written} does not read back as the {len(data)} bytes written.")

    with atomic_write(path, verify=same_bytes) as tmp:
        tmp.write_bytes(data)
