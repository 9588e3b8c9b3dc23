"""Which inflate library decodes deflate streams: ISA-L or zlib-ng when installed (extra ``fast``), else zlib.

Used by the npz reader (:mod:`medfuse.io.npz`) and by write verification (:mod:`medfuse._core.verify`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

from ..errors import ValidationError
from .optional import has_module, import_optional

__all__ = ["InflateBackend", "backend_module", "inflate_backend"]

InflateBackend = Literal["auto", "isal", "zlib-ng", "zlib"]

_BACKEND_MODULES: dict[str, str] = {"isal": "isal.isal_zlib", "zlib-ng": "zlib_ng.zlib_ng", "zlib": "zlib"}
#: "auto" tries these in order (isal and zlib-ng are on par on probability files; both ~2x zlib).
_AUTO_ORDER = ("isal", "zlib-ng", "zlib")


def inflate_backend(name: InflateBackend = "auto") -> str:
    """Name of the inflate library :func:`read_npz` uses for ``name`` ("auto": the fastest installed).

    Raises
    ------
    MissingDependencyError
        A specific backend was asked for and is not installed.
    """
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if has_module(_BACKEND_MODULES[candidate]):
                return candidate
        return "zlib"  # pragma: no cover - zlib is in the standard library
    if name not in _BACKEND_MODULES:
        raise ValidationError(f"`backend` must be one of 'auto', 'isal', 'zlib-ng', 'zlib'; got {name!r}.")
    import_optional(_BACKEND_MODULES[name], purpose="fast inflating of .npz files")
    return name


def backend_module(name: InflateBackend) -> ModuleType:
    return import_optional(_BACKEND_MODULES[inflate_backend(name)], purpose="fast inflating of .npz files")
