"""nnU-Net v2's ``postprocessing.pkl``, read without running its code, and any postprocessing file by name.

nnU-Net v2 (``nnunetv2.postprocessing.remove_connected_components.determine_postprocessing``) pickles a pair
``(pp_fns, pp_fn_kwargs)``: a list of functions and a list of keyword dicts, applied in order as
``segmentation = fn(segmentation, **kwargs)``. The only function it ever stores is
``remove_all_but_largest_component_from_segmentation`` with ``labels_or_regions`` (an int, a tuple of labels
= a region, or a list of those, merged into one mask), which keeps the largest (26-connected) component of
that mask and sets the rest of it to background.

A pickle can name any callable, and unpickling one may run code, so :func:`read_nnunet2_postprocessing` uses
a restricted unpickler: the known nnU-Net v2 function name resolves to a marker (never imported), the rest of
the allowed globals are those of :mod:`medfuse._core.safepickle`, and anything else is refused. The steps
become a :class:`Postprocessing` (one entry per step), which medfuse applies itself with 26-connectivity.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.safepickle import ALLOWED_GLOBALS
from .._core.typing import Connectivity
from ..errors import FormatError, UnsafePickleError, ValidationError
from .jsonfile import Entry, Postprocessing, read_postprocessing_bytes

__all__ = ["KNOWN_NNUNET2_STEPS", "read_any_postprocessing", "read_nnunet2_postprocessing"]

#: nnU-Net v2 postprocessing functions medfuse implements itself: name -> medfuse's equivalent.
KNOWN_NNUNET2_STEPS: Mapping[str, str] = {
    "remove_all_but_largest_component_from_segmentation": "medfuse.postprocess.keep_largest_component",
}
_V2_MODULE_PREFIX = "nnunetv2."


class _Step:
    """Stands for a known nnU-Net v2 function named in the pickle (the function itself is never loaded)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _StepUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, *, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_V2_MODULE_PREFIX) and name in KNOWN_NNUNET2_STEPS:
            return _Step(name)
        resolver = ALLOWED_GLOBALS.get((module, name))
        if resolver is None:
            raise UnsafePickleError(
                f"{self._source} references `{module}.{name}`, which medfuse does not implement; it was NOT "
                f"loaded or executed. medfuse applies nnU-Net v2 postprocessing steps "
                f"{sorted(KNOWN_NNUNET2_STEPS)} only; apply this file with nnUNetv2_apply_postprocessing instead."
            )
        return resolver()


def _entry(value: Any, *, source: str, step: int) -> Entry:
    """One medfuse entry from nnU-Net v2's ``labels_or_regions`` (int, region tuple, or a list merged)."""
    items = value if isinstance(value, list) else [value]
    labels: list[int] = []
    for item in items:
        for v in (item if isinstance(item, tuple) else (item,)):
            if isinstance(v, bool) or not hasattr(v, "__index__") or int(v) < 1:
                raise FormatError(
                    f"{source}: step {step} has labels_or_regions={value!r}; expected positive labels (ints), "
                    "tuples of them (regions) or a list of those."
                )
            labels.append(int(v))
    unique = tuple(dict.fromkeys(labels))
    if not unique:
        raise FormatError(f"{source}: step {step} has an empty labels_or_regions ({value!r}).")
    if len(unique) == 1 and not isinstance(value, tuple):
        return unique[0]
    return unique


def _steps(obj: Any, *, source: str) -> tuple[Entry, ...]:
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(x, list) for x in obj)):
        raise FormatError(
            f"{source} is not an nnU-Net v2 postprocessing.pkl: expected a pair (list of functions, list of "
            f"keyword dicts); got {type(obj).__name__}."
        )
    fns, kwargs = obj
    if len(fns) != len(kwargs):
        raise FormatError(f"{source}: {len(fns)} functions but {len(kwargs)} keyword dicts; they must pair up.")
    entries: list[Entry] = []
    for i, (fn, kw) in enumerate(zip(fns, kwargs, strict=True)):
        if not isinstance(fn, _Step) or not isinstance(kw, dict):
            raise FormatError(f"{source}: step {i} is not a known function with a keyword dict; got "
                              f"{type(fn).__name__} and {type(kw).__name__}.")
        extra = set(kw) - {"labels_or_regions", "background_label"}
        if extra or "labels_or_regions" not in kw or kw.get("background_label", 0) != 0:
            raise FormatError(
                f"{source}: step {i} ({fn.name}) has keywords {sorted(kw)}; medfuse applies only "
                "labels_or_regions (with background_label 0)."
            )
        entries.append(_entry(kw["labels_or_regions"], source=source, step=i))
    return tuple(entries)


def read_nnunet2_postprocessing(path: str | os.PathLike[str]) -> Postprocessing:
    """Read nnU-Net v2's ``postprocessing.pkl`` safely, as a :class:`Postprocessing`.

    Apply the result with ``connectivity=26`` (nnU-Net v2's), e.g.
    ``apply_postprocessing(labels, pp, connectivity=26)``. An empty step list (nnU-Net decided no
    postprocessing helps) gives a Postprocessing with no entries.

    Raises
    ------
    UnsafePickleError
        The pickle references anything but the known nnU-Net v2 steps and plain data; nothing was run.
    FormatError
        The file cannot be read, or is not a ``(functions, kwargs)`` pair.
    """
    p = Path(path)
    data = read_postprocessing_bytes(p)
    try:
        obj = _StepUnpickler(data, source=str(p)).load()
    except (UnsafePickleError, ValidationError):
        raise
    except Exception as exc:  # corrupt pickles raise many types
        raise FormatError(f"{p} is not a readable pickle ({type(exc).__name__}: {exc}).") from None
    return Postprocessing(for_which_classes=_steps(obj, source=str(p)))


def read_any_postprocessing(path: str | os.PathLike[str]) -> tuple[Postprocessing, Connectivity]:
    """A ``postprocessing.json`` (nnU-Net v1 / PaddleSeg) or ``postprocessing.pkl`` (nnU-Net v2), by ending.

    Returns
    -------
    (Postprocessing, connectivity)
        The steps, and the connectivity of the tool that wrote the file: 6 for ``.json`` (scipy's default in
        nnU-Net v1), 26 for ``.pkl`` (nnU-Net v2).
    """
    p = Path(path)
    if p.suffix.lower() == ".pkl":
        return read_nnunet2_postprocessing(p), 26
    if p.suffix.lower() == ".json":
        return Postprocessing.read(p), 6
    raise ValidationError(
        f"`postprocessing` must be a postprocessing.json (nnU-Net v1 / PaddleSeg) or postprocessing.pkl "
        f"(nnU-Net v2) file; got {str(p)!r}. Rename it to end in .json or .pkl."
    )
