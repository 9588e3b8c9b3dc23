"""Slow, obviously-correct numpy twins of the surface kernels (``medfuse._kernels.surface``) and of
:func:`medfuse.surface_metrics`, plus the oracle: DeepMind's ``surface-distance`` package."""

from __future__ import annotations

import itertools
import math

import numpy as np


def surfels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z, y, x, code) of every surface corner of a bool mask (2D: z = 0), raster order.

    Corner ``c`` has the voxels ``c - 1 + k`` for ``k`` in {0, 1}^ndim; bit ``n - 1 - index(k)`` where
    ``index`` reads ``k`` as a binary number (first axis most significant).
    """
    ndim = mask.ndim
    padded = np.pad(mask.astype(np.int64), 1)  # corner c sits between padded voxels c and c + 1
    corners = tuple(s + 1 for s in mask.shape)
    code = np.zeros(corners, np.int64)
    n = 2**ndim
    for index, k in enumerate(itertools.product((0, 1), repeat=ndim)):
        block = padded[tuple(slice(kk, kk + c) for kk, c in zip(k, corners, strict=True))]
        code += block << (n - 1 - index)
    surface = (code != 0) & (code != 2**n - 1)
    idx = np.nonzero(surface)
    if ndim == 2:
        idx = (np.zeros_like(idx[0]), *idx)
    return idx[0], idx[1], idx[2], code[surface]


def nearest(query: np.ndarray, target: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Brute force: distance in mm from every query point (N, 3) to the nearest target point (M, 3)."""
    if len(target) == 0:
        return np.full(len(query), np.inf)
    diff = (query[:, None, :] - target[None, :, :]).astype(np.float64) * np.asarray(spacing)
    sq = diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2
    return np.sqrt(sq.min(axis=1))


def row_extents(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nz, ny, nx = labels.shape
    lo = np.full((nz, ny), nx)
    hi = np.full((nz, ny), -1)
    for z in range(nz):
        for y in range(ny):
            nonzero = np.flatnonzero(labels[z, y])
            if nonzero.size:
                lo[z, y], hi[z, y] = nonzero[0], nonzero[-1]
    return lo, hi


def directed(d: np.ndarray, a: np.ndarray, percentile: float) -> dict[str, float]:
    """Reductions of one direction, as DeepMind computes them (Python sort of (distance, area) pairs)."""
    pairs = sorted(zip(d.tolist(), a.tolist(), strict=True))
    ds = np.array([p[0] for p in pairs])
    as_ = np.array([p[1] for p in pairs])
    cum = np.cumsum(as_) / np.sum(as_)
    idx = int(np.searchsorted(cum, percentile / 100.0))
    return {"max": ds.max(), "perc": ds[min(idx, len(ds) - 1)], "sum": np.sum(as_),
            "weighted": np.sum(ds * as_), "ds": ds, "as": as_}


def surface_metrics(ref_mask: np.ndarray, pred_mask: np.ndarray, spacing: tuple[float, ...],
                    tolerances: tuple[float, ...], percentile: float, areas: np.ndarray) -> dict[str, object]:
    """Twin of one label's metrics from bool masks (both non-empty), ``areas`` the code -> area table."""
    sp3 = (1.0, *spacing) if len(spacing) == 2 else tuple(spacing)
    rz, ry, rx, rc = surfels(ref_mask)
    pz, py, px, pc = surfels(pred_mask)
    rq, pq = np.stack([rz, ry, rx], 1), np.stack([pz, py, px], 1)
    r = directed(nearest(rq, pq, sp3), areas[rc], percentile)
    p = directed(nearest(pq, rq, sp3), areas[pc], percentile)
    total = r["sum"] + p["sum"]
    nsd = tuple((r["as"][r["ds"] <= t].sum() + p["as"][p["ds"] <= t].sum()) / total for t in tolerances)
    ar, ap = r["weighted"] / r["sum"], p["weighted"] / p["sum"]
    return {"hd": max(r["max"], p["max"]), "hd95": max(r["perc"], p["perc"]), "asd_ref_to_pred": ar,
            "asd_pred_to_ref": ap, "masd": (ar + ap) / 2, "assd": (r["weighted"] + p["weighted"]) / total,
            "nsd": nsd, "reference_surface": r["sum"], "prediction_surface": p["sum"]}


# ------------------------------------------------------------------------------------------ the oracle
def deepmind(ref_mask: np.ndarray, pred_mask: np.ndarray, spacing: tuple[float, ...],
             tolerances: tuple[float, ...] = (1.0,), percentile: float = 95.0) -> dict[str, object]:
    """DeepMind ``surface-distance``'s values for one label (bool masks)."""
    import surface_distance as sd

    if not hasattr(np, "Inf"):  # the PyPI release (0.1) predates numpy 2
        setattr(np, "Inf", np.inf)  # noqa: B010 (what surface-distance reads)
    d = sd.compute_surface_distances(ref_mask, pred_mask, spacing)
    with np.errstate(invalid="ignore", divide="ignore"):
        asd = sd.compute_average_surface_distance(d)
        nsd = tuple(float(sd.compute_surface_dice_at_tolerance(d, t)) for t in tolerances)
    ar, ap = float(asd[0]), float(asd[1])
    areas_r, areas_p = d["surfel_areas_gt"], d["surfel_areas_pred"]
    total = np.sum(areas_r) + np.sum(areas_p)
    weighted = np.sum(d["distances_gt_to_pred"] * areas_r) + np.sum(d["distances_pred_to_gt"] * areas_p)
    return {
        "hd": float(sd.compute_robust_hausdorff(d, 100)),
        "hd95": float(sd.compute_robust_hausdorff(d, percentile)),
        "asd_ref_to_pred": ar, "asd_pred_to_ref": ap, "masd": (ar + ap) / 2,
        "assd": float(weighted / total) if total else math.nan, "nsd": nsd,
        "reference_surface": float(np.sum(areas_r)), "prediction_surface": float(np.sum(areas_p)),
    }


def assert_close(ours: object, expected: dict[str, object], *, rtol: float = 1e-9) -> None:
    """Every field of ``expected`` equal to ``ours``'s within ``rtol`` (inf == inf, NaN == NaN)."""
    for name, want in expected.items():
        got = getattr(ours, name)
        got_t = got if isinstance(got, tuple) else (got,)
        want_t = want if isinstance(want, tuple) else (want,)
        assert len(got_t) == len(want_t), name
        for g, w in zip(got_t, want_t, strict=True):
            g, w = float(g), float(w)
            ok = (math.isnan(g) and math.isnan(w)) or g == w or abs(g - w) <= rtol * abs(w)
            assert ok, f"{name}: medfuse {g!r} != expected {w!r}"


def boxes(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, int]:
    """Twin of ``boxes_of``: per slot held by both sets ``(z, y, x, bounds)``, the z and y range of their
    points as ``(z0, y0, nz, ny, row0)``; other slots ``(0, 0, 0, 0, row0)``; each slot takes ``nz*ny+1``
    entries of the row index."""
    out, row0 = [], 0
    for s in range(len(a[3]) - 1):
        sa, sb = slice(a[3][s], a[3][s + 1]), slice(b[3][s], b[3][s + 1])
        box = [0, 0, 0, 0]
        if sa.stop > sa.start and sb.stop > sb.start:
            z = np.concatenate([a[0][sa], b[0][sb]])
            y = np.concatenate([a[1][sa], b[1][sb]])
            box = [z.min(), y.min(), np.ptp(z) + 1, np.ptp(y) + 1]
        out.append([*box, row0])
        row0 += box[2] * box[3] + 1
    return np.asarray(out, np.int64).reshape(-1, 5), row0


def row_index(m: tuple[np.ndarray, ...], box_table: np.ndarray) -> np.ndarray:
    """Twin of ``row_index``: for each slot with a box, the first index of each of its rows' points."""
    n_index = int(box_table[-1, 4] + box_table[-1, 2] * box_table[-1, 3] + 1) if len(box_table) else 0
    starts = np.zeros(n_index, np.int64)
    for s, (z0, y0, nz, ny, row0) in enumerate(box_table):
        if nz * ny == 0:
            continue
        span = np.arange(m[3][s], m[3][s + 1])
        rows = (m[0][span] - z0) * ny + (m[1][span] - y0)
        for r in range(nz * ny + 1):  # first point at or after row r (raster order)
            starts[row0 + r] = m[3][s] + np.searchsorted(rows, r)
    return starts


def group_distances(d: np.ndarray, rank: np.ndarray, n_ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Twin of ``group_distances``: the distinct distances (ascending) and the count of each (value, rank)."""
    values, inverse = np.unique(d, return_inverse=True)
    counts = np.zeros((values.size, n_ranks), np.int64)
    np.add.at(counts, (inverse.ravel(), rank), 1)
    return values, counts
