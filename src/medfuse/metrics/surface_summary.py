"""Boundary metrics of many cases: per case, per label mean and the foreground mean (``evaluate_folder``).

The companion of :class:`medfuse.metrics.CaseSummary` for :func:`medfuse.surface_metrics` results. Names
follow nnU-Net's ``summary.json`` style: ``HD``, ``HD95``, ``ASSD``, ``MASD``, ``NSD`` (first tolerance)
and ``NSD@<tol>`` for every further tolerance; CSV columns are the same names in lower case.

Means follow the empty rules of :func:`medfuse.surface_metrics`:

- a label absent from both maps of a case is NaN there and left out of that label's mean (as Dice);
- a label absent from exactly one map has every distance ``inf`` (and NSD 0): the label's mean distance
  is then ``inf`` too — never a finite mean of the other cases. :attr:`SurfaceSummary.inf_cases` counts
  those cases, so a report can say why;
- the foreground mean is the mean of the per-label means (nnU-Net's order): ``inf`` when a label's mean
  is ``inf``, NaN when a label is NaN in every case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .results import Key, _nan_mean, key_to_str
from .surface_results import LabelSurface

__all__ = ["DISTANCE_NAMES", "SurfaceSummary", "nsd_names", "summarize_surface"]

#: summary.json name -> LabelSurface field, for the distances (mm).
DISTANCE_NAMES: dict[str, str] = {"HD": "hd", "HD95": "hd95", "ASSD": "assd", "MASD": "masd"}


def nsd_names(tolerance_mm: Sequence[float]) -> list[str]:
    """``["NSD", "NSD@2"]`` for tolerances ``(1, 2)``: the first plain, the others with their tolerance."""
    return ["NSD" if i == 0 else f"NSD@{t:g}" for i, t in enumerate(tolerance_mm)]


@dataclass(frozen=True)
class SurfaceSummary:
    """Boundary metrics of many cases (built by :func:`summarize_surface`).

    Attributes
    ----------
    per_case : mapping of str to (mapping of key to (mapping of str to float))
        ``per_case[case][key][name]`` with ``name`` one of :attr:`names`.
    mean : mapping of key to (mapping of str to float)
        Per label (or region): the mean over cases, NaN left out, ``inf`` when any case is ``inf``.
    foreground_mean : mapping of str to float
        Mean over the keys other than 0 of ``mean[key][name]``.
    inf_cases : mapping of key to int
        Cases where the key is absent from exactly one map (distances ``inf``).
    tolerance_mm : tuple of float
        NSD tolerances, in the order of the NSD names.
    percentile : float
        Percentile of ``HD95``.
    """

    per_case: Mapping[str, Mapping[Key, Mapping[str, float]]]
    mean: Mapping[Key, Mapping[str, float]]
    foreground_mean: Mapping[str, float]
    inf_cases: Mapping[Key, int]
    keys: tuple[Key, ...]
    tolerance_mm: tuple[float, ...]
    percentile: float

    @property
    def names(self) -> tuple[str, ...]:
        """``("HD", "HD95", "ASSD", "MASD", "NSD", "NSD@2", ...)``."""
        return (*DISTANCE_NAMES, *nsd_names(self.tolerance_mm))

    @property
    def columns(self) -> tuple[str, ...]:
        """CSV column names: :attr:`names` in lower case."""
        return tuple(n.lower() for n in self.names)

    def settings(self) -> dict[str, Any]:
        """What the numbers mean, for ``summary.json``: tolerances, percentile and the empty rules."""
        return {
            "tolerance_mm": list(self.tolerance_mm), "percentile": self.percentile,
            "names": list(self.names), "units": "mm (NSD: fraction of surface area)",
            "empty_rule": "absent from both maps: NaN, left out of means; absent from one map: NSD 0 and "
                          "distances inf, and a mean over cases that holds one is inf (docs/metrics.md)",
            "inf_cases": {key_to_str(k): n for k, n in self.inf_cases.items()},
        }


def _values(entry: LabelSurface | None, n_tol: int) -> list[float]:
    if entry is None:  # absent from both maps
        return [math.nan] * (len(DISTANCE_NAMES) + n_tol)
    nsd = entry.nsd if isinstance(entry.nsd, tuple) else (entry.nsd,)
    return [float(getattr(entry, f)) for f in DISTANCE_NAMES.values()] + [float(v) for v in nsd]


def summarize_surface(
    per_case: Mapping[str, Mapping[Key, LabelSurface]], keys: Sequence[Key], *,
    tolerance_mm: Sequence[float], percentile: float,
) -> SurfaceSummary:
    """Per case values, per key means and the foreground mean of boundary metrics.

    ``per_case[case]`` maps each key to its :class:`LabelSurface` (computed with every tolerance of
    ``tolerance_mm``, so ``nsd`` is a tuple); a key missing from a case was absent from both maps there.
    """
    tol = tuple(float(t) for t in tolerance_mm)
    names = (*DISTANCE_NAMES, *nsd_names(tol))
    table: dict[str, dict[Key, dict[str, float]]] = {}
    for case, entries in per_case.items():
        table[case] = {k: dict(zip(names, _values(entries.get(k), len(tol)), strict=True)) for k in keys}
    mean: dict[Key, dict[str, float]] = {}
    inf_cases: dict[Key, int] = {}
    for k in keys:
        mean[k] = {n: _nan_mean([table[c][k][n] for c in table]) for n in names}
        inf_cases[k] = sum(1 for c in table if math.isinf(table[c][k]["HD"]))
    fg_keys = [k for k in keys if k != 0]
    fg = {n: (math.fsum(mean[k][n] for k in fg_keys) / len(fg_keys) if fg_keys else math.nan) for n in names}
    return SurfaceSummary(
        per_case=MappingProxyType(table), mean=MappingProxyType(mean), foreground_mean=MappingProxyType(fg),
        inf_cases=MappingProxyType(inf_cases), keys=tuple(keys), tolerance_mm=tol, percentile=float(percentile),
    )
