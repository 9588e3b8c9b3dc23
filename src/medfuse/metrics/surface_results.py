"""Result types of :func:`medfuse.surface_metrics`: per-label boundary metrics and the per-case mapping.

Kept apart from the computing code (:mod:`medfuse.metrics.surface`); import them from :mod:`medfuse`.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._core.optional import import_optional
from ..errors import ValidationError
from .results import _json_safe

__all__ = ["DISTANCE_FIELDS", "LabelSurface", "SurfaceResult"]

#: Distance fields of :class:`LabelSurface` (mm), in the order of ``to_dict`` entries and CSV columns.
DISTANCE_FIELDS: tuple[str, ...] = ("hd", "hd95", "asd_ref_to_pred", "asd_pred_to_ref", "masd", "assd")
#: Surface sizes of :class:`LabelSurface`.
SIZE_FIELDS: tuple[str, ...] = ("reference_surface", "prediction_surface")


def _tol_name(tol: float) -> str:
    return f"nsd@{tol:g}"


@dataclass(frozen=True)
class LabelSurface:
    """Boundary metrics of one label between a reference and a prediction (distances in mm).

    Attributes
    ----------
    hd : float
        Hausdorff distance: the larger of the two directed maximum surface distances.
    hd95 : float
        Robust Hausdorff distance at the result's ``percentile``: per direction, the distance at which the
        cumulative surfel area reaches ``percentile`` % of that surface, then the larger direction.
    asd_ref_to_pred, asd_pred_to_ref : float
        Area-weighted mean distance from each surface to the other.
    masd : float
        Mean of the two directed averages.
    assd : float
        Area-weighted mean distance over both surfaces together.
    nsd : float or tuple of float
        Normalised surface Dice: surface area (both surfaces) within the tolerance of the other surface,
        over the total area. A float for a scalar ``tolerance_mm``; a tuple with one value per tolerance,
        in the given order, when ``tolerance_mm`` was a sequence.
    reference_surface, prediction_surface : float
        Surface area in mm² (contour length in mm for 2D maps).

    Empty rules: a label absent from exactly one map has ``nsd`` 0 and every distance ``inf``; a label
    absent from both has every field NaN (surface sizes 0).
    """

    hd: float
    hd95: float
    asd_ref_to_pred: float
    asd_pred_to_ref: float
    masd: float
    assd: float
    nsd: float | tuple[float, ...]
    reference_surface: float
    prediction_surface: float

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (``nsd`` a list when there were several tolerances; floats may be NaN/inf)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in DISTANCE_FIELDS}
        out["nsd"] = list(self.nsd) if isinstance(self.nsd, tuple) else self.nsd
        out.update({name: getattr(self, name) for name in SIZE_FIELDS})
        return out

    def flat(self, tolerance_mm: float | tuple[float, ...]) -> dict[str, float]:
        """One float per column: ``nsd`` for a scalar tolerance, ``nsd@<tol>`` per tolerance otherwise."""
        out: dict[str, float] = {name: float(getattr(self, name)) for name in DISTANCE_FIELDS}
        if isinstance(self.nsd, tuple) and isinstance(tolerance_mm, tuple):
            out.update({_tol_name(t): float(v) for t, v in zip(tolerance_mm, self.nsd, strict=True)})
        else:
            out["nsd"] = float(self.nsd)  # type: ignore[arg-type]
        out.update({name: float(getattr(self, name)) for name in SIZE_FIELDS})
        return out


@dataclass(frozen=True)
class SurfaceResult(Mapping[int, LabelSurface]):
    """Boundary metrics of each label of one case; a read-only mapping ``label -> LabelSurface``.

    Attributes
    ----------
    spacing_mm : tuple of float
        Voxel spacing the distances were measured with (array axis order).
    tolerance_mm : float or tuple of float
        NSD tolerance(s), as given (a tuple when a sequence was given).
    percentile : float
        Percentile of ``hd95``.
    labels_inferred : bool
        Whether the labels were chosen automatically (every label present in either map except 0).
    """

    entries: Mapping[int, LabelSurface]
    spacing_mm: tuple[float, ...] = ()
    tolerance_mm: float | tuple[float, ...] = 1.0
    percentile: float = 95.0
    labels_inferred: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    def __getitem__(self, key: int) -> LabelSurface:
        try:
            return self.entries[int(key)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(f"{key!r} is not a label of this result; it holds {list(self.entries)}.") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}: {v.hd95:.4g}" for k, v in self.entries.items())
        return f"SurfaceResult(hd{self.percentile:g}={{{body}}}, tolerance_mm={self.tolerance_mm!r})"

    @property
    def labels(self) -> tuple[int, ...]:
        """The labels, in order."""
        return tuple(self.entries)

    def metric(self, name: str) -> dict[int, Any]:
        """One field of each label, e.g. ``result.metric("hd95")``."""
        if name not in (*DISTANCE_FIELDS, "nsd", *SIZE_FIELDS):
            raise ValidationError(
                f"`name` must be one of {[*DISTANCE_FIELDS, 'nsd', *SIZE_FIELDS]}; got {name!r}."
            )
        return {k: getattr(v, name) for k, v in self.entries.items()}

    def to_dict(self) -> dict[str, Any]:
        """``{"spacing_mm", "tolerance_mm", "percentile", "labels": {"3": {field: value}}}``."""
        tol = list(self.tolerance_mm) if isinstance(self.tolerance_mm, tuple) else self.tolerance_mm
        return {
            "spacing_mm": list(self.spacing_mm),
            "tolerance_mm": tol,
            "percentile": self.percentile,
            "labels": {str(k): v.to_dict() for k, v in self.entries.items()},
        }

    def to_json(self, *, indent: int | None = 2, strict: bool = True) -> str:
        """:meth:`to_dict` as JSON. ``strict=True`` writes NaN and inf as ``null`` (strict JSON has neither);
        ``strict=False`` writes Python's ``NaN`` / ``Infinity`` tokens, as nnU-Net's summaries do."""
        data = self.to_dict()
        if strict:
            return json.dumps(_json_safe(data), indent=indent, allow_nan=False)
        return json.dumps(data, indent=indent)

    def columns(self) -> list[str]:
        """CSV column names: ``label``, the distances, ``nsd`` (or ``nsd@<tol>`` each), the surface sizes."""
        if isinstance(self.tolerance_mm, tuple):
            nsd = [_tol_name(t) for t in self.tolerance_mm]
        else:
            nsd = ["nsd"]
        return ["label", *DISTANCE_FIELDS, *nsd, *SIZE_FIELDS]

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat dict per label, keys as :meth:`columns`."""
        return [{"label": str(k), **v.flat(self.tolerance_mm)} for k, v in self.entries.items()]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_rows` as CSV (atomically: temporary file, then rename). Returns the path."""
        final = Path(path)
        if not final.parent.is_dir():
            raise ValidationError(f"`path` must be in an existing folder; {str(final.parent)!r} does not exist.")
        tmp = final.with_name(f".medfuse-tmp-{os.getpid()}-{final.name}")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns())
                writer.writeheader()
                writer.writerows(self.to_rows())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return final

    def to_frame(self) -> Any:
        """:meth:`to_rows` as a ``pandas.DataFrame`` indexed by label (needs pandas)."""
        pd = import_optional("pandas", purpose="SurfaceResult.to_frame")
        return pd.DataFrame(self.to_rows()).set_index("label")

    def _repr_html_(self) -> str:
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = []
        for row in self.to_rows():
            cells = "".join(f"<td>{_cell(row[c])}</td>" for c in cols)
            body.append(f"<tr>{cells}</tr>")
        caption = (f"surface metrics (mm): spacing {list(self.spacing_mm)}, tolerance {self.tolerance_mm!r}, "
                   f"hd at {self.percentile:g}%")
        return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))
