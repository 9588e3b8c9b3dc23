"""Lazy import of optional dependencies, with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

__all__ = ["has_module", "import_optional"]

#: module name -> (pip extra, pip distribution name)
_EXTRAS: dict[str, tuple[str, str]] = {
    "SimpleITK": ("nifti", "SimpleITK"),
    "nibabel": ("nifti", "nibabel"),
    "cc3d": ("cc", "connected-components-3d"),
    "isal": ("fast", "isal"),
    "zlib_ng": ("fast", "zlib-ng"),
    "dask": ("dask", "dask[distributed]"),
    "distributed": ("dask", "dask[distributed]"),
    "matplotlib": ("plot", "matplotlib"),
    "tqdm": ("progress", "tqdm"),
    "paddle": ("paddle", "paddlepaddle"),
}


def import_optional(name: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``name`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"SimpleITK"`` or ``"isal.isal_zlib"``.
    purpose : str, optional
        What the module is needed for, included in the error message.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".", 1)[0]
        extra, dist = _EXTRAS.get(top, (None, top))
        why = f" for {purpose}" if purpose else ""
        fix = f"pip install 'medfuse[{extra}]'" if extra else f"pip install {dist}"
        raise MissingDependencyError(
            f"medfuse needs the optional package `{dist}`{why}, which is not installed "
            f"({exc}); install it with: {fix}"
        ) from exc


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported (without raising)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
