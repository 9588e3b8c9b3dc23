"""The ``postprocessing.json`` of nnU-Net v1 / PaddleSeg MedicalSeg as a frozen dataclass.

File format (``FORMATS.md`` section 3)::

    {"for_which_classes": [1, 11, 6], "min_valid_object_sizes": "None",
     "dc_per_class_raw": {"1": 0.8956}, "dc_per_class_pp_all": {}, "dc_per_class_pp_per_class": {},
     "num_samples": 32, "validation_raw": "validation_raw", "validation_final": "validation_raw_postprocessed"}

``for_which_classes`` holds labels and lists of labels (a list is one region: those labels merged).
``min_valid_object_sizes`` is a *string*: ``"None"`` or the Python ``str()`` of a dict mapping an entry (an
int, or a tuple for a merged entry) to a minimum object size in mm³. It is parsed with
:func:`ast.literal_eval` (never ``eval``); ``np.float64(…)``-style numbers, which nnU-Net writes when run
with numpy 2, are accepted.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Union

import numpy as np

from ..errors import FormatError, ValidationError

__all__ = ["Entry", "JsonLayout", "Postprocessing", "entry_key", "normalize_entries", "parse_min_sizes"]

#: One entry of ``for_which_classes``: a label, or a tuple of labels merged into one region.
Entry = Union[int, tuple[int, ...]]  # noqa: UP007 (runtime alias, python 3.10)
#: How :meth:`Postprocessing.to_json` lays the file out.
JsonLayout = Literal["nnunet", "compact"]

_KEYS = ("for_which_classes", "min_valid_object_sizes", "dc_per_class_raw", "dc_per_class_pp_all",
         "dc_per_class_pp_per_class", "num_samples", "validation_raw", "validation_final")
_NUMPY_SCALAR = re.compile(r"np\.(?:float|int|uint)(?:16|32|64)\(\s*([^()]*?)\s*\)")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _label(x: object, *, name: str) -> int:
    value = -1
    if not isinstance(x, (bool, np.bool_)):
        with suppress(TypeError):
            value = operator.index(x)  # type: ignore[arg-type]
    if value < 1:
        raise ValidationError(
            f"`{name}` must hold foreground labels (integers >= 1) or lists of them; got {x!r}. "
            "Label 0 (background) cannot be post-processed."
        )
    return value


def normalize_entries(entries: object, *, name: str = "for_which_classes") -> tuple[Entry, ...]:
    """``for_which_classes`` as a tuple of ints and tuples of ints (lists become tuples, order kept)."""
    if isinstance(entries, np.ndarray):
        entries = entries.tolist()
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise ValidationError(f"`{name}` must be a list of labels and lists of labels; got {entries!r}.")
    out: list[Entry] = []
    for e in entries:
        if isinstance(e, (list, tuple, np.ndarray)):
            if len(e) == 0:
                raise ValidationError(f"`{name}` holds an empty list; a merged region needs at least one label.")
            out.append(tuple(_label(v, name=name) for v in e))
        else:
            out.append(_label(e, name=name))
    return tuple(out)


def entry_key(entry: Entry) -> int | frozenset[int]:
    """Key under which two spellings of one entry compare equal (``(1, 2)`` and ``(2, 1)``)."""
    return entry if isinstance(entry, int) else frozenset(entry)


def _labels_of(entry: Entry) -> tuple[int, ...]:
    return (entry,) if isinstance(entry, int) else entry


def parse_min_sizes(value: object) -> dict[Entry, float] | None:
    name = "min_valid_object_sizes"
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text == "None":
            return None
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            try:  # numpy 2 reprs: {(1, 2): np.float64(3.5)}
                parsed = ast.literal_eval(_NUMPY_SCALAR.sub(r"\1", text))
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise ValidationError(
                    f"`{name}` must be \"None\" or the str() of a dict {{label or (labels,): size in mm³}}; "
                    f"got {value[:200]!r}."
                ) from None
        value = parsed
    if not isinstance(value, Mapping):
        raise ValidationError(f"`{name}` must be \"None\" or a dict {{label or (labels,): mm³}}; got {value!r}.")
    out: dict[Entry, float] = {}
    for key, size in value.items():
        if isinstance(key, (tuple, list, frozenset, np.ndarray)):
            if not key:
                raise ValidationError(f"`{name}` has an empty tuple as a key; expected labels.")
            k: Entry = tuple(_label(v, name=name) for v in key)
        else:
            k = _label(key, name=name)
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not math.isfinite(size) or size < 0:
            raise ValidationError(
                f"`{name}` sizes must be finite non-negative numbers (mm³); got {size!r} for {key!r}."
            )
        out[k] = size
    return out


def _parse_scores(value: object, *, name: str) -> dict[int, float]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"`{name}` must be a dict {{\"label\": dice}}; got {value!r}.")
    out: dict[int, float] = {}
    for key, score in value.items():
        try:
            label = int(key) if isinstance(key, str) and key.strip().lstrip("-").isdigit() else key
        except ValueError:
            label = key
        if not isinstance(label, int) or isinstance(label, bool) or label < 1:
            raise ValidationError(f"`{name}` keys must be foreground labels (\"1\", \"2\", ...); got {key!r}.")
        if score is None:
            score = math.nan
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValidationError(f"`{name}` values must be numbers; got {score!r} for label {key!r}.")
        out[int(label)] = score
    return out


def _check_range(labels: Sequence[int], num_classes: int, *, name: str) -> None:
    bad = sorted({v for v in labels if v >= num_classes})
    if bad:
        raise ValidationError(
            f"`{name}` names label(s) {bad}, but there are only {num_classes} classes (labels 0..{num_classes - 1}); "
            "the file belongs to another task, or `num_classes` is wrong."
        )


def read_postprocessing_bytes(path: Path) -> bytes:
    """The bytes of a postprocessing file (``.json`` or nnU-Net v2 ``.pkl``); a FormatError names the file."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read postprocessing file {str(path)!r}: {exc.strerror}.") from None


@dataclass(frozen=True)
class Postprocessing:
    """What nnU-Net v1 / PaddleSeg ``postprocessing.json`` says: which regions keep their largest component.

    Attributes
    ----------
    for_which_classes : tuple of (int or tuple of int)
        Entries processed in order: a label keeps only its largest connected component; a tuple of labels
        is merged into one region first (every voxel outside its largest component becomes 0).
    min_valid_object_sizes : mapping of entry to float, or None
        When set, only components smaller than the entry's size (mm³) are removed, besides the largest.
    dc_per_class_raw, dc_per_class_pp_all, dc_per_class_pp_per_class : mapping of int to float
        Mean Dice per label on the validation cases: raw, after the merged-foreground step, after the
        per-label step (what :func:`~medfuse.postprocess.determine_postprocessing` measured).
    num_samples : int or None
        Number of validation cases the decision was made on.
    validation_raw, validation_final : str
        Folder names nnU-Net records (kept for round trips).
    """

    for_which_classes: tuple[Entry, ...] = ()
    min_valid_object_sizes: Mapping[Entry, float] | None = None
    dc_per_class_raw: Mapping[int, float] = field(default_factory=dict)
    dc_per_class_pp_all: Mapping[int, float] = field(default_factory=dict)
    dc_per_class_pp_per_class: Mapping[int, float] = field(default_factory=dict)
    num_samples: int | None = None
    validation_raw: str = "validation_raw"
    validation_final: str = "validation_raw_postprocessed"

    def __post_init__(self) -> None:
        entries = normalize_entries(self.for_which_classes)
        sizes = parse_min_sizes(self.min_valid_object_sizes)
        if sizes is not None:
            missing = [e for e in entries if entry_key(e) not in {entry_key(k) for k in sizes}]
            if missing:
                raise ValidationError(
                    f"`min_valid_object_sizes` has no size for entr{'y' if len(missing) == 1 else 'ies'} "
                    f"{[list(e) if isinstance(e, tuple) else e for e in missing]} of `for_which_classes`; "
                    "give every entry a size, or set it to \"None\"."
                )
        object.__setattr__(self, "for_which_classes", entries)
        object.__setattr__(self, "min_valid_object_sizes", None if sizes is None else MappingProxyType(sizes))
        for name in ("dc_per_class_raw", "dc_per_class_pp_all", "dc_per_class_pp_per_class"):
            object.__setattr__(self, name, MappingProxyType(_parse_scores(getattr(self, name), name=name)))
        if self.num_samples is not None and (not _is_int(self.num_samples) or self.num_samples < 0):
            raise ValidationError(f"`num_samples` must be a non-negative integer; got {self.num_samples!r}.")
        for name in ("validation_raw", "validation_final"):
            if not isinstance(getattr(self, name), str):
                raise ValidationError(f"`{name}` must be a string (a folder name); got {getattr(self, name)!r}.")

    # ------------------------------------------------------------------------------------------- reading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, num_classes: int | None = None) -> Postprocessing:
        """From the parsed JSON object; unknown keys raise :class:`ValidationError` naming them."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"a postprocessing description must be a JSON object; got {type(data).__name__}.")
        unknown = [k for k in data if k not in _KEYS]
        if unknown:
            raise ValidationError(
                f"unknown key(s) {unknown} in postprocessing.json; expected some of {list(_KEYS)}."
            )
        if "for_which_classes" not in data:
            raise ValidationError("postprocessing.json has no `for_which_classes` key; it is required.")
        pp = cls(**{k: data[k] for k in _KEYS if k in data})
        if num_classes is not None:
            pp.validate(num_classes)
        return pp

    @classmethod
    def from_json(cls, text: str | bytes, *, num_classes: int | None = None) -> Postprocessing:
        """From JSON text (invalid JSON raises :class:`FormatError`)."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"postprocessing.json is not valid JSON: {exc}.") from None
        return cls.from_dict(data, num_classes=num_classes)

    @classmethod
    def read(cls, path_or_dict: str | os.PathLike[str] | Mapping[str, Any] | Postprocessing, *,
             num_classes: int | None = None) -> Postprocessing:
        """Read a ``postprocessing.json`` file (or take an already parsed dict, or a Postprocessing).

        Parameters
        ----------
        path_or_dict : path-like, mapping or Postprocessing
            The file, its parsed content, or an instance (returned as is, after validation).
        num_classes : int, optional
            When given, labels must be below it (:meth:`validate`).

        Raises
        ------
        FormatError
            The file is missing or not JSON.
        ValidationError
            Unknown keys, labels out of range, malformed ``min_valid_object_sizes`` (the key is named).
        """
        if isinstance(path_or_dict, Postprocessing):
            pp = path_or_dict
        elif isinstance(path_or_dict, Mapping):
            pp = cls.from_dict(path_or_dict)
        elif isinstance(path_or_dict, (str, os.PathLike)):
            path = Path(path_or_dict)
            text = read_postprocessing_bytes(path)
            try:
                pp = cls.from_json(text)
            except ValidationError as exc:
                raise type(exc)(f"{path}: {exc}") from None
        else:
            raise ValidationError(
                f"`path_or_dict` must be a path, a dict or a Postprocessing; got {type(path_or_dict).__name__}."
            )
        if num_classes is not None:
            pp.validate(num_classes)
        return pp

    def validate(self, num_classes: int) -> Postprocessing:
        """Check every label is below ``num_classes``; returns ``self``."""
        if _is_int(num_classes) is False or num_classes < 2:
            raise ValidationError(f"`num_classes` must be an integer >= 2; got {num_classes!r}.")
        _check_range([v for e in self.for_which_classes for v in _labels_of(e)], num_classes,
                     name="for_which_classes")
        if self.min_valid_object_sizes is not None:
            _check_range([v for e in self.min_valid_object_sizes for v in _labels_of(e)], num_classes,
                         name="min_valid_object_sizes")
        for name in ("dc_per_class_raw", "dc_per_class_pp_all", "dc_per_class_pp_per_class"):
            _check_range(list(getattr(self, name)), num_classes, name=name)
        return self

    def min_size_of(self, entry: Entry) -> float | None:
        """Minimum object size (mm³) of ``entry``, None when sizes are not set."""
        if self.min_valid_object_sizes is None:
            return None
        lookup = {entry_key(k): v for k, v in self.min_valid_object_sizes.items()}
        return float(lookup[entry_key(entry)])

    # ------------------------------------------------------------------------------------------- writing

    def to_dict(self) -> dict[str, Any]:
        """The JSON object nnU-Net / PaddleSeg write (``min_valid_object_sizes`` as a string, string keys)."""
        sizes = "None" if self.min_valid_object_sizes is None else str(dict(self.min_valid_object_sizes))
        return {
            "for_which_classes": [list(e) if isinstance(e, tuple) else e for e in self.for_which_classes],
            "min_valid_object_sizes": sizes,
            "dc_per_class_raw": {str(k): v for k, v in self.dc_per_class_raw.items()},
            "dc_per_class_pp_all": {str(k): v for k, v in self.dc_per_class_pp_all.items()},
            "dc_per_class_pp_per_class": {str(k): v for k, v in self.dc_per_class_pp_per_class.items()},
            "num_samples": self.num_samples,
            "validation_raw": self.validation_raw,
            "validation_final": self.validation_final,
        }

    def to_json(self, *, layout: JsonLayout = "nnunet") -> str:
        """JSON text. ``"nnunet"``: indent 4, sorted keys (nnU-Net v1's ``save_json``); ``"compact"``: one
        line in the canonical key order (the layout of FORMATS.md's example)."""
        if layout == "nnunet":
            return json.dumps(self.to_dict(), indent=4, sort_keys=True)
        if layout == "compact":
            return json.dumps(self.to_dict())
        raise ValidationError(f"`layout` must be 'nnunet' or 'compact'; got {layout!r}.")

    def write(self, path: str | os.PathLike[str], *, layout: JsonLayout = "nnunet") -> Path:
        """Write the file atomically (temporary file + rename); returns the path."""
        from .._core.atomic import atomic_write

        text = self.to_json(layout=layout)
        final = Path(path)
        with atomic_write(final) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return final
