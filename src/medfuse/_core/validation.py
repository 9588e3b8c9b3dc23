"""Input checks shared by the public functions.

Every helper takes the user-facing argument ``name`` so that its error message names the argument.
None of them copies data unless a conversion is needed.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ValidationError

__all__ = [
    "as_int",
    "as_label_map",
    "as_spacing",
    "as_threads",
    "check_same_shape",
    "describe",
    "native_byteorder",
]


def describe(x: object) -> str:
    """Short description of a value for error messages: shape and dtype for arrays, type otherwise."""
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r}"[:200]


def native_byteorder(a: NDArray[Any]) -> NDArray[Any]:
    """``a`` in native byte order (a converted copy only when it is big-endian on this machine)."""
    if a.dtype.byteorder not in ("=", "|") and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def as_label_map(x: ArrayLike, *, name: str, ndim: int | None = None) -> NDArray[Any]:
    """Validate an integer (or bool) label map; returns a native-byte-order ndarray (no copy if possible).

    Bool maps are viewed as uint8. Floating, complex and object arrays are refused.
    """
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    elif a.dtype.kind not in "iu":
        raise ValidationError(
            f"`{name}` must be an integer or boolean label map; got {describe(a)}. "
            "Convert probabilities to labels first (e.g. `probs.argmax(0)`), or cast with `.astype(np.uint8)`."
        )
    if ndim is not None and a.ndim != ndim:
        raise ValidationError(f"`{name}` must have {ndim} dimensions; got {describe(a)}.")
    return native_byteorder(a)


def check_same_shape(a: NDArray[Any], b: NDArray[Any], *, names: tuple[str, str]) -> None:
    """Raise when two arrays that must align voxel by voxel have different shapes."""
    if a.shape != b.shape:
        raise ValidationError(
            f"`{names[0]}` and `{names[1]}` must have the same shape; got {a.shape} and {b.shape}. "
            "Resample or crop one of them onto the other's grid first."
        )


def as_threads(threads: object) -> int | None:
    """``threads=`` the same way wherever it is offered: None (every core numba uses) or a positive int."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or int(threads) < 1:
        raise ValidationError(
            f"`threads` must be a positive integer, or None for every core; got {threads!r}. "
            "Pass e.g. threads=4 (--threads 4 on the command line)."
        )
    return int(threads)


def as_int(x: object, *, name: str, minimum: int | None = None) -> int:
    """``x`` as a Python int (numpy integers accepted, floats and bools refused)."""
    if isinstance(x, bool):
        raise ValidationError(f"`{name}` must be an integer; got {x!r}.")
    try:
        value = operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise ValidationError(f"`{name}` must be an integer; got {describe(x)}.") from None
    if minimum is not None and value < minimum:
        raise ValidationError(f"`{name}` must be >= {minimum}; got {value}.")
    return value


def as_spacing(x: float | Sequence[float] | NDArray[Any] | None, *, ndim: int, name: str = "spacing_mm"
               ) -> tuple[float, ...]:
    """Voxel spacing in mm, one positive finite value per axis (a scalar applies to every axis)."""
    if x is None:
        return (1.0,) * ndim
    arr = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if arr.ndim != 1 or (arr.size != ndim and arr.size != 1):
        raise ValidationError(f"`{name}` must hold one value per axis ({ndim}); got {describe(x)}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValidationError(f"`{name}` must be positive and finite; got {arr.tolist()}.")
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    return tuple(float(v) for v in arr)
