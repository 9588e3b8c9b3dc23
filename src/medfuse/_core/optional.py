"""Lazy import of heavy dependencies, with an error that says what to install.

Optional packages name the pip extra that provides them. SimpleITK and nibabel are core dependencies (reading
and writing ``.nii.gz`` is the main job) but are still imported lazily, so ``import medfuse`` stays light;
when one is missing anyway (a broken or ``--no-deps`` install) the error says to install that package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

__all__ = ["has_module", "import_optional"]

#: core dependencies imported lazily: module name -> pip distribution name
_CORE: dict[str, str] = {"SimpleITK": "SimpleITK", "nibabel": "nibabel"}

#: module name -> (pip extra, pip distribution name)
_EXTRAS: dict[str, tuple[str, str]] = {
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
        why = f" for {purpose}" if purpose else ""
        if top in _CORE:
            raise MissingDependencyError(
                f"medfuse needs `{_CORE[top]}`{why}, one of its own dependencies, which is missing from this "
                f"environment ({exc}); install it with: pip install {_CORE[top]} (or reinstall medfuse "
                "without --no-deps)"
            ) from exc
        extra, dist = _EXTRAS.get(top, (None, top))
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
