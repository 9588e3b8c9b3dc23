"""Boundary metrics: Hausdorff (HD, HD95), average surface distances (ASSD, MASD) and surface Dice (NSD).

Definitions follow the surfel formulation of DeepMind's ``surface-distance`` (the values agree with it to
1e-9 relative, see ``tests/test_surface.py``): the surface of a label is the set of grid corners whose
2x2x2 (2D: 2x2) voxel block holds the label in some but not all voxels; each such surfel is weighted by its
marching-cubes area (2D: contour length) at the given spacing, and distances are Euclidean, in mm, from
each surfel to the nearest surfel of the other surface.

Empty rules (DeepMind differs, see :func:`surface_metrics`): a label absent from exactly one map scores
``nsd`` 0 and ``inf`` for every distance; a label absent from both scores NaN everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.validation import as_label_map, as_spacing, check_same_shape, describe
from ..errors import ValidationError
from .surface_results import LabelSurface, SurfaceResult

__all__ = ["LabelSurface", "SurfaceResult", "surface_metrics"]

#: Widest label-value range served by a lookup table; wider ranges are remapped first.
_LUT_MAX = 1 << 16

#: Fewest queries in one task of the distance kernel (smaller chunks cost more in hand-outs than they balance).
_MIN_CHUNK = 2048


def surface_metrics(
    reference: ArrayLike,
    prediction: ArrayLike,
    *,
    spacing_mm: float | Sequence[float],
    tolerance_mm: float | Sequence[float] = 1.0,
    percentile: float = 95.0,
    labels: int | Iterable[int] | None = None,
) -> SurfaceResult:
    """HD, HD95, ASD, MASD, ASSD and NSD of each label between a reference and a prediction.

    Parameters
    ----------
    reference, prediction : ndarray of shape (Z, Y, X) or (Y, X)
        Label maps of any integer dtype, or bool masks (scored as label 1), same shape.
    spacing_mm : float or sequence of float
        Voxel spacing in mm, one positive value per axis in array order (a scalar: every axis).
    tolerance_mm : float or sequence of float, default 1.0
        NSD tolerance in mm (>= 0). A sequence gives ``nsd`` as a tuple, one value per tolerance.
    percentile : float, default 95.0
        Percentile of ``hd95``, in [0, 100].
    labels : int or iterable of int, optional
        Labels to score; by default every label present in either map except 0.

    Returns
    -------
    SurfaceResult
        Mapping ``label -> LabelSurface`` in the order of ``labels`` (ascending when inferred).

    Notes
    -----
    Empty rules: absent from exactly one map → ``nsd`` 0, every distance ``inf``; absent from both → all
    NaN. DeepMind's functions give, for one empty side, ``inf`` for the robust Hausdorff and the directed
    average from the present surface, NaN for the directed average from the empty one (0/0) and 0 for
    the surface Dice; for both sides empty ``inf`` Hausdorff, NaN average distances and NaN surface Dice.
    """
    ref = as_label_map(reference, name="reference")
    pred = as_label_map(prediction, name="prediction")
    check_same_shape(ref, pred, names=("reference", "prediction"))
    if ref.ndim not in (2, 3):
        raise ValidationError(
            f"`reference` must be a 2D or 3D label map; got {describe(ref)}. Score 4D data one volume at a time."
        )
    spacing = _spacing(spacing_mm, ref.ndim)
    tolerances = _tolerances(tolerance_mm)
    pct = _percentile(percentile)
    wanted = None if labels is None else _labels(labels)
    entries = _compute(ref, pred, spacing, wanted, tolerances, pct)
    tol_out: float | tuple[float, ...] = tolerances if not _is_scalar(tolerance_mm) else tolerances[0]
    if _is_scalar(tolerance_mm):
        entries = {k: _scalar_nsd(v) for k, v in entries.items()}
    return SurfaceResult(entries, spacing_mm=spacing, tolerance_mm=tol_out, percentile=pct,
                         labels_inferred=labels is None)


# ---------------------------------------------------------------------------------------------- checks
def _is_scalar(x: Any) -> bool:
    return bool(np.ndim(x) == 0)


def _spacing(x: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    if not _is_scalar(x) and np.size(x) != ndim:
        raise ValidationError(
            f"`spacing_mm` must hold one value per axis of the maps ({ndim}); got {describe(x)}. "
            "Pass it in array order, e.g. `img.GetSpacing()[::-1]` for SimpleITK."
        )
    return as_spacing(x, ndim=ndim, name="spacing_mm")


def _tolerances(x: float | Sequence[float]) -> tuple[float, ...]:
    try:
        arr = np.atleast_1d(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValidationError(f"`tolerance_mm` must be a number or a sequence of numbers; got {describe(x)}.") \
            from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValidationError(f"`tolerance_mm` must be a number or a non-empty sequence of numbers; got {describe(x)}.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValidationError(
            f"`tolerance_mm` must be finite and >= 0 (mm); got {arr.tolist()}. Use e.g. `tolerance_mm=1.0`."
        )
    return tuple(float(v) for v in arr)


def _percentile(x: float) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValidationError(f"`percentile` must be a number in [0, 100]; got {describe(x)}.") from None
    if not 0.0 <= value <= 100.0:  # also refuses NaN
        raise ValidationError(f"`percentile` must be in [0, 100]; got {value}. Use e.g. `percentile=95`.")
    return value


def _labels(x: int | Iterable[int]) -> tuple[int, ...]:
    items = [x] if _is_scalar(x) else list(x)  # type: ignore[arg-type]
    out: list[int] = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise ValidationError(f"`labels` must be integers; got {describe(item)} in {describe(x)}.")
        if int(item) not in out:
            out.append(int(item))
    if not out:
        raise ValidationError("`labels` must name at least one label; got an empty sequence. Omit it to score "
                              "every label present.")
    return tuple(out)


# ------------------------------------------------------------------------------------------- surfels
def _slot_space(ref: NDArray[Any], pred: NDArray[Any], wanted: tuple[int, ...] | None
                ) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.int32], int, NDArray[np.int64]]:
    """Maps (maybe remapped), the value -> slot table, its first value and each slot's label."""
    if wanted is not None:
        lo, hi = min(wanted), max(wanted)
        if hi - lo < _LUT_MAX:
            lut = np.full(hi - lo + 1, -1, np.int32)
            lut[np.asarray(wanted) - lo] = np.arange(len(wanted), dtype=np.int32)
            return ref, pred, lut, lo, np.asarray(wanted, np.int64)
        return _remapped(ref, pred, np.asarray(sorted(wanted), np.int64), wanted)
    if ref.dtype.itemsize <= 2 and ref.dtype.kind == pred.dtype.kind == "u" and pred.dtype.itemsize <= 2:
        lo, hi = 0, (1 << (8 * max(ref.dtype.itemsize, pred.dtype.itemsize))) - 1
    else:
        lo = int(min(ref.min(initial=0), pred.min(initial=0)))
        hi = int(max(ref.max(initial=0), pred.max(initial=0)))
    if hi - lo < _LUT_MAX:
        lut = np.arange(hi - lo + 1, dtype=np.int32)
        if lo <= 0 <= hi:
            lut[-lo] = -1
        return ref, pred, lut, lo, np.arange(lo, hi + 1, dtype=np.int64)
    values = np.union1d(np.unique(ref), np.unique(pred))
    values = values[values != 0].astype(np.int64)
    return _remapped(ref, pred, values, tuple(int(v) for v in values))


def _remapped(ref: NDArray[Any], pred: NDArray[Any], values: NDArray[np.int64], order: tuple[int, ...]
              ) -> tuple[NDArray[Any], NDArray[Any], NDArray[np.int32], int, NDArray[np.int64]]:
    """Label maps with ``values[i]`` as ``i + 1`` (anything else 0), for label ranges too wide for a table."""
    def remap(a: NDArray[Any]) -> NDArray[np.int32]:
        idx = np.clip(np.searchsorted(values, a), 0, values.size - 1)
        return np.where(values[idx] == a, idx + 1, 0).astype(np.int32)

    lut = np.full(values.size + 1, -1, np.int32)
    rank = {int(v): i for i, v in enumerate(values)}
    for slot, label in enumerate(order):
        lut[rank[label] + 1] = slot
    return remap(ref), remap(pred), lut, 0, np.asarray(order, np.int64)


def _extract(labels: NDArray[Any], lut: NDArray[np.int32], lut_lo: int, n_slots: int) -> _Surfels:
    """Surfels of every slot, grouped by slot (raster order within one)."""
    from .._kernels import surface as k, threads

    two_d = labels.ndim == 2
    vol = np.ascontiguousarray(labels[None] if two_d else labels)
    planes = 1 if two_d else vol.shape[0] + 1
    n_threads = threads.n_threads()
    ranges = threads.split(planes, n_threads)
    lo = np.empty(vol.shape[:2], np.int32)
    hi = np.empty(vol.shape[:2], np.int32)
    threads.run_ranges(k.row_extents, threads.split(vol.shape[0], n_threads), n_threads, vol,
                       _nonempty_rows(vol), lo, hi)
    counts = np.zeros(len(ranges), np.int64)
    starts = np.zeros(len(ranges), np.int64)
    i32, u8 = np.empty(0, np.int32), np.empty(0, np.uint8)
    threads.run_ranges(k.scan_surfels, ranges, n_threads, vol, two_d, lo, hi, lut, lut_lo, False, starts, counts,
                       i32, i32, i32, i32, u8)
    starts[1:] = np.cumsum(counts)[:-1]
    total = int(counts.sum())
    slot, z, y, x = (np.empty(total, np.int32) for _ in range(4))
    code = np.empty(total, np.uint8)
    threads.run_ranges(k.scan_surfels, ranges, n_threads, vol, two_d, lo, hi, lut, lut_lo, True, starts, counts,
                       slot, z, y, x, code)
    order, bounds = k.group_by_slot(slot, n_slots)
    return _Surfels(z[order], y[order], x[order], code[order], bounds)


class _Surfels:
    """Surfels of one map grouped by slot: slot ``s`` is ``bounds[s] .. bounds[s + 1]`` of ``z, y, x, code``."""

    def __init__(self, z: NDArray[np.int32], y: NDArray[np.int32], x: NDArray[np.int32], code: NDArray[np.uint8],
                 bounds: NDArray[np.int64]) -> None:
        self.z, self.y, self.x, self.code, self.bounds = z, y, x, code, bounds

    def count(self, s: int) -> int:
        return int(self.bounds[s + 1] - self.bounds[s])


def _nonempty_rows(vol: NDArray[Any]) -> NDArray[np.bool_]:
    """Whether each voxel row ``(z, y)`` holds a non-zero voxel, tested 8 bytes at a time when rows allow."""
    rows = vol.reshape(-1, vol.shape[2])
    if rows.shape[1] and (rows.shape[1] * rows.itemsize) % 8 == 0:
        rows = rows.view(np.uint64)
    return np.asarray(rows.any(axis=1), np.bool_).reshape(vol.shape[:2])


def _distances(a: _Surfels, b: _Surfels, slots: Sequence[int], spacing: tuple[float, float, float]
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distance in mm from every surfel of ``a`` to the nearest one of ``b`` of its slot, and back, for the
    ``slots`` both maps hold (other entries undefined): every label, both directions and chunks of queries
    on all threads at once."""
    from .._kernels import surface as k, threads

    boxes, n_index = k.boxes_of(a.z, a.y, a.bounds, b.z, b.y, b.bounds)
    a_rows = k.row_index(a.z, a.y, a.bounds, boxes, n_index)
    b_rows = k.row_index(b.z, b.y, b.bounds, boxes, n_index)
    n_threads = threads.n_threads()
    work = sum(a.count(s) + b.count(s) for s in slots)
    chunk = max(_MIN_CHUNK, -(-work // (n_threads * threads.RANGES_PER_THREAD))) if n_threads > 1 else work + 1
    tasks = [(q, min(q + chunk, int(m.bounds[s + 1])), s, d)
             for s in slots for d, m in enumerate((a, b)) for q in range(int(m.bounds[s]), int(m.bounds[s + 1]), chunk)]
    table = np.asarray(tasks, np.int64).reshape(-1, 4)
    out_a, out_b = np.empty(a.z.size), np.empty(b.z.size)
    threads.run_ranges(k.nearest_distances, [(i, i + 1) for i in range(len(tasks))], n_threads, table,
                       (a.z, a.y, a.x, a_rows), (b.z, b.y, b.x, b_rows), boxes, spacing, out_a, out_b)
    return out_a, out_b


# ---------------------------------------------------------------------------------------- reductions
def _compute(ref: NDArray[Any], pred: NDArray[Any], spacing: tuple[float, ...], wanted: tuple[int, ...] | None,
             tolerances: tuple[float, ...], pct: float) -> dict[int, LabelSurface]:
    from .._kernels.surface import area_table

    ref_m, pred_m, lut, lut_lo, slot_labels = _slot_space(ref, pred, wanted)
    n_slots = slot_labels.size
    rs = _extract(ref_m, lut, lut_lo, n_slots)
    ps = _extract(pred_m, lut, lut_lo, n_slots)
    table = area_table(spacing)
    sp3 = (1.0, spacing[0], spacing[1]) if len(spacing) == 2 else (spacing[0], spacing[1], spacing[2])
    r_n, p_n = np.diff(rs.bounds), np.diff(ps.bounds)
    slots = range(n_slots) if wanted is not None else np.flatnonzero((r_n > 0) | (p_n > 0)).tolist()
    d_ref, d_pred = _distances(rs, ps, np.flatnonzero((r_n > 0) & (p_n > 0)).tolist(), sp3)
    out: dict[int, LabelSurface] = {}
    for s in slots:
        r_span = slice(int(rs.bounds[s]), int(rs.bounds[s + 1]))
        p_span = slice(int(ps.bounds[s]), int(ps.bounds[s + 1]))
        out[int(slot_labels[s])] = _label(d_ref[r_span], rs.code[r_span], d_pred[p_span], ps.code[p_span], table,
                                          tolerances, pct)
    return out


def _label(d_ref: NDArray[np.float64], c_ref: NDArray[np.uint8], d_pred: NDArray[np.float64],
           c_pred: NDArray[np.uint8], table: NDArray[np.float64], tolerances: tuple[float, ...], pct: float
           ) -> LabelSurface:
    nan, inf = math.nan, math.inf
    if c_ref.size == 0 or c_pred.size == 0:
        both = c_ref.size == c_pred.size == 0
        d = nan if both else inf
        r_area, p_area = float(table[c_ref].sum()), float(table[c_pred].sum())
        return LabelSurface(d, d, d, d, d, d, tuple(nan if both else 0.0 for _ in tolerances), r_area, p_area)
    r = _Directed(d_ref, c_ref, table, pct)
    p = _Directed(d_pred, c_pred, table, pct)
    total = r.total + p.total
    nsd = tuple(float((r.within(t) + p.within(t)) / total) for t in tolerances)
    return LabelSurface(
        hd=max(r.max, p.max), hd95=max(r.perc, p.perc), asd_ref_to_pred=r.mean, asd_pred_to_ref=p.mean,
        masd=(r.mean + p.mean) / 2.0, assd=float((r.weighted + p.weighted) / total), nsd=nsd,
        reference_surface=r.total, prediction_surface=p.total,
    )


class _Directed:
    """Reductions of one direction's surfel distances ``d`` (codes ``codes``, areas from ``table``; non-empty)."""

    def __init__(self, d: NDArray[np.float64], codes: NDArray[np.uint8], table: NDArray[np.float64],
                 pct: float) -> None:
        from .._kernels.surface import group_distances

        # sorted by distance, then area: the order DeepMind's percentile walks. Distances take few distinct
        # values, so the kernel counts the (distance, area rank) pairs and the sorted arrays are spelled out.
        areas, area_rank = np.unique(table, return_inverse=True)
        values, counts = group_distances(d, area_rank.astype(np.int64)[codes], areas.size)
        order = np.argsort(values)
        values, counts = values[order], counts[order]
        self.d = np.repeat(values, counts.sum(axis=1))
        self.a = np.repeat(np.tile(areas, values.size), counts.ravel())
        self.total = float(np.sum(self.a))
        cum = np.cumsum(self.a) / self.total
        idx = int(np.searchsorted(cum, pct / 100.0))
        self.perc = float(self.d[min(idx, self.d.size - 1)])
        self.max = float(self.d[-1])
        self.weighted = float(np.sum(self.d * self.a))
        self.mean = self.weighted / self.total

    def within(self, tol: float) -> float:
        return float(np.sum(self.a[: int(np.searchsorted(self.d, tol, side="right"))]))


def _scalar_nsd(entry: LabelSurface) -> LabelSurface:
    nsd = entry.nsd[0] if isinstance(entry.nsd, tuple) else entry.nsd
    return LabelSurface(**{**entry.__dict__, "nsd": nsd})
