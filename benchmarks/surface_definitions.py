"""How the boundary metrics of medfuse, DeepMind, MONAI, medpy and MetricsReloaded differ, on one real case.

Run:  python benchmarks/surface_definitions.py [case_labels.nii.gz] [--shift 2]

The reference is the real competition label map; the prediction is a copy shifted by ``--shift`` voxels
along x (the last array axis), with ``--fragments`` also a false-positive block (4 x 24 x 24 voxels) of
each label 30 voxels (17.5 mm) away. Prints a Markdown table (the one in docs/metrics.md).

- medfuse: :func:`medfuse.surface_metrics` (surfels weighted by area).
- DeepMind: the ``surface-distance`` package (the same definitions; the ``test`` extra installs it).
- medpy: ``medpy.metric.binary`` (``pip install medpy``): ``hd``, ``hd95`` (percentile of BOTH directions'
  distances pooled), ``assd`` (the mean of the two directed means, i.e. MASD).
- MONAI / MetricsReloaded: neither is installed here (MONAI needs torch). Their documented definitions are
  the same voxel-border ones, implemented below in a few lines of scipy: the border of a mask is the mask
  minus its 6-connected erosion (each border voxel counts 1, whatever its area), distances run between voxel
  centres (Euclidean distance transform with the spacing); HD95 is the 95th percentile of each direction,
  then the larger; ASSD pools both directions' distances; NSD counts border voxels within the tolerance
  (MONAI ``compute_surface_dice`` with its default ``use_subvoxels=False``; MetricsReloaded
  ``normalised_surface_distance``).

Every computation is restricted to the label's bounding box (union of both masks, padded by 2 voxels): the
distances inside it are exactly those of the full volume, and the tools that transform the whole volume
finish in seconds instead of minutes.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

import medfuse
from medfuse import io

DEFAULT = os.path.join(os.environ.get("MEDFUSE_REAL_DATA", "/work/shared/data/paddleseg-competition"),
                       "case_labels.nii.gz")


def _box(a: NDArray[np.bool_], b: NDArray[np.bool_], pad: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(a | b)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return tuple(slice(max(int(l_) - pad, 0), min(int(h) + pad, s)) for l_, h, s in zip(lo, hi, a.shape, strict=True))


def voxel_border_metrics(ref: NDArray[np.bool_], pred: NDArray[np.bool_], spacing: tuple[float, ...],
                         tol: float) -> dict[str, float]:
    """MONAI's / MetricsReloaded's documented voxel-border definitions (see the module docstring)."""
    structure = ndimage.generate_binary_structure(ref.ndim, 1)
    border_r = ref & ~ndimage.binary_erosion(ref, structure)
    border_p = pred & ~ndimage.binary_erosion(pred, structure)
    to_r = ndimage.distance_transform_edt(~border_r, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~border_p, sampling=spacing)
    d_rp, d_pr = to_p[border_r], to_r[border_p]  # ref border -> pred border, pred border -> ref border
    both = np.concatenate([d_rp, d_pr])
    return {
        "hd": float(max(d_rp.max(), d_pr.max())),
        "hd95": float(max(np.percentile(d_rp, 95), np.percentile(d_pr, 95))),
        "assd": float(both.mean()),
        "masd": float((d_rp.mean() + d_pr.mean()) / 2),
        "nsd": float(((d_rp <= tol).sum() + (d_pr <= tol).sum()) / both.size),
    }


def deepmind_metrics(ref: NDArray[np.bool_], pred: NDArray[np.bool_], spacing: tuple[float, ...],
                     tol: float) -> dict[str, float]:
    import surface_distance as sd

    d = sd.compute_surface_distances(ref, pred, spacing)
    a, b = sd.compute_average_surface_distance(d)
    ra, pa = d["surfel_areas_gt"], d["surfel_areas_pred"]
    assd = (np.sum(d["distances_gt_to_pred"] * ra) + np.sum(d["distances_pred_to_gt"] * pa)) / (ra.sum() + pa.sum())
    return {"hd": float(sd.compute_robust_hausdorff(d, 100)), "hd95": float(sd.compute_robust_hausdorff(d, 95)),
            "assd": float(assd), "masd": float((a + b) / 2), "nsd": float(sd.compute_surface_dice_at_tolerance(d, tol))}


def medpy_metrics(ref: NDArray[np.bool_], pred: NDArray[np.bool_], spacing: tuple[float, ...]) -> dict[str, float]:
    from medpy.metric import binary

    return {"hd": float(binary.hd(pred, ref, voxelspacing=spacing)),
            "hd95": float(binary.hd95(pred, ref, voxelspacing=spacing)),
            "assd": math.nan,  # medpy has no pooled ASSD: its `assd` is the MASD
            "masd": float(binary.assd(pred, ref, voxelspacing=spacing)), "nsd": math.nan}


def add_fragments(pred_map: NDArray[Any], labels: list[int], *, gap: int = 30, size: int = 24) -> None:
    """A false-positive block (4 slices x ``size`` x ``size`` voxels) of each label, ``gap`` voxels past the
    label's extent along y, where the map is background (in place)."""
    for k in labels:
        idx = np.argwhere(pred_map == k)
        z = int(np.median(idx[:, 0]))
        y0 = int(idx[:, 1].max()) + gap
        x0 = int(np.median(idx[:, 2]))
        block = (slice(z, z + 4), slice(y0, y0 + size), slice(x0, x0 + size))
        if y0 + size <= pred_map.shape[1] and not pred_map[block].any():
            pred_map[block] = k


def compare(path: str, shift: int, tol: float, labels: list[int] | None, fragments: bool
            ) -> list[dict[str, Any]]:
    ref_map, geometry = io.read_nifti(path)
    pred_map = np.roll(ref_map, shift, axis=-1)
    if fragments:
        add_fragments(pred_map, labels or [int(v) for v in np.unique(ref_map) if v])
    spacing = tuple(float(s) for s in geometry.spacing)
    ours = medfuse.surface_metrics(ref_map, pred_map, spacing_mm=spacing, tolerance_mm=tol)
    rows = []
    for k in labels or list(ours):
        r, p = ref_map == k, pred_map == k
        box = _box(r, p)
        r, p = r[box], p[box]
        m = ours[k]
        tools = {
            "medfuse": {"hd": m.hd, "hd95": m.hd95, "assd": m.assd, "masd": m.masd, "nsd": m.nsd},
            "DeepMind": deepmind_metrics(r, p, spacing, tol),
            "MONAI / MetricsReloaded (voxel borders)": voxel_border_metrics(r, p, spacing, tol),
            "medpy": medpy_metrics(r, p, spacing),
        }
        for tool, values in tools.items():
            rows.append({"label": k, "tool": tool, **values})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=DEFAULT)
    parser.add_argument("--shift", type=int, default=2, help="voxels along x (default 2)")
    parser.add_argument("--tolerance", type=float, default=1.0)
    parser.add_argument("--labels", default="1,3,6", help="comma-separated labels (default 1,3,6)")
    parser.add_argument("--fragments", action="store_true",
                        help="also add a false-positive block of each label 30 voxels past its extent along y")
    args = parser.parse_args()
    labels = [int(v) for v in args.labels.split(",")] if args.labels else None
    rows = compare(args.path, args.shift, args.tolerance, labels, args.fragments)
    print(f"| label | tool | HD | HD95 | ASSD | MASD | NSD@{args.tolerance:g} |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for r in rows:
        cells = ["—" if isinstance(v, float) and math.isnan(v) else f"{v:.3f}"
                 for v in (r["hd"], r["hd95"], r["assd"], r["masd"], r["nsd"])]
        print(f"| {r['label']} | {r['tool']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
