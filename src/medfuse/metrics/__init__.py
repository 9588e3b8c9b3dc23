"""Scores of label maps: the confusion matrix (one parallel pass) and the overlap metrics computed from it.

- :mod:`.confusion`: :func:`confusion_matrix` (the numba kernel's wrapper).
- :mod:`.measures`: :func:`dice`, :func:`overlap`, :func:`overlap_from_confusion`, :func:`aggregate_cases`.
- :mod:`.results`: the result types (:class:`OverlapResult`, :class:`LabelOverlap`, :class:`CaseSummary`).
- :mod:`.surface`: :func:`surface_metrics` (HD, HD95, ASSD, MASD, NSD from surfels); its result types in
  :mod:`.surface_results` (:class:`SurfaceResult`, :class:`LabelSurface`); over cases
  :mod:`.surface_summary` (:class:`SurfaceSummary`, :func:`summarize_surface`).
"""

from __future__ import annotations

from .confusion import MAX_CLASSES, confusion_matrix
from .measures import aggregate_cases, dice, overlap, overlap_from_confusion
from .results import METRIC_NAMES, CaseSummary, LabelOverlap, MetricName, OverlapResult
from .surface import surface_metrics
from .surface_results import LabelSurface, SurfaceResult
from .surface_summary import SurfaceSummary, summarize_surface

__all__ = [
    "MAX_CLASSES",
    "METRIC_NAMES",
    "CaseSummary",
    "LabelOverlap",
    "LabelSurface",
    "MetricName",
    "OverlapResult",
    "SurfaceResult",
    "SurfaceSummary",
    "aggregate_cases",
    "confusion_matrix",
    "dice",
    "overlap",
    "overlap_from_confusion",
    "summarize_surface",
    "surface_metrics",
]
