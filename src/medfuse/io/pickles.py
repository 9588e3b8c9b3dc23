"""Reading and writing the models' ``.pkl`` properties files without running anyone's code.

A ``.pkl`` from someone else's prediction folder is untrusted: ``pickle.load`` will call any function the
file names. :func:`load_pickle` uses an unpickler that resolves only the handful of globals that
properties and plans files really contain (``collections.OrderedDict`` and numpy's array, dtype and scalar
reconstructors, under both their numpy 1 ``numpy.core`` and numpy 2 ``numpy._core`` names) plus a few
builtin containers. Any other global raises :class:`~medfuse.errors.UnsafePickleError` *before* it is
looked up, so nothing in the file is executed.
"""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

from .._core.atomic import atomic_write
from .._core.safepickle import ALLOWED_GLOBALS, loads_pickle
from ..errors import FormatError

__all__ = ["ALLOWED_GLOBALS", "load_pickle", "loads_pickle", "save_pickle"]


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
