"""Draw docs/img/surface_metrics.png: the boundary metrics of a small 2D example (run from the repository root).

    python docs/make_surface_figure.py

Left: the two masks and their surfels (medfuse / DeepMind: grid corners where a 2x2 block of pixels is
mixed, each weighted by its contour length), the Hausdorff distance as an arrow. Middle: the NSD tolerance
band: surfels within ``tolerance_mm`` of the other contour in green, the others in red. Right: the
voxel-border surfaces of MONAI / medpy / MetricsReloaded (pixel centres of the mask minus its erosion).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

import medfuse

TOL = 1.0
SPACING = (1.0, 1.0)


def masks() -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    ref = np.zeros((14, 16), bool)
    ref[3:11, 3:11] = True
    pred = np.zeros_like(ref)
    pred[4:11, 4:12] = True
    pred[6:8, 12:15] = True  # a protrusion: the far part of the prediction's contour
    return ref, pred


def corners(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Grid corners (in pixel units, pixel centres at integers) whose 2x2 neighbourhood is mixed."""
    p = np.pad(mask, 1).astype(int)
    s = p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]
    yy, xx = np.nonzero((s > 0) & (s < 4))
    return np.stack([yy - 0.5, xx - 0.5], axis=1)


def nearest(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return d.min(axis=1), d.argmin(axis=1)


def draw_masks(ax: plt.Axes, ref: NDArray[np.bool_], pred: NDArray[np.bool_]) -> None:
    ax.imshow(np.where(ref, 1.0, np.nan), cmap="Blues", vmin=0, vmax=2, alpha=0.6)
    ax.imshow(np.where(pred, 1.0, np.nan), cmap="Oranges", vmin=0, vmax=2, alpha=0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def main() -> None:
    ref, pred = masks()
    result = medfuse.surface_metrics(ref, pred, spacing_mm=SPACING, tolerance_mm=TOL)[1]
    rc, pc = corners(ref), corners(pred)
    d_pr, j_pr = nearest(pc, rc)
    d_rp, _ = nearest(rc, pc)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))

    ax = axes[0]
    draw_masks(ax, ref, pred)
    ax.plot(rc[:, 1], rc[:, 0], "o", ms=3, color="tab:blue", label="reference surfels")
    ax.plot(pc[:, 1], pc[:, 0], "s", ms=3, color="tab:orange", label="prediction surfels")
    far = int(np.argmax(d_pr))
    start, end = pc[far], rc[j_pr[far]]
    ax.annotate("", xy=(end[1], end[0]), xytext=(start[1], start[0]),
                arrowprops={"arrowstyle": "<->", "color": "black"})
    ax.text(start[1] - 1, start[0] - 1.2, f"HD = {result.hd:.2f} mm", fontsize=9)
    ax.set_title(f"surfels: HD {result.hd:.2f}, HD95 {result.hd95:.2f},\nASSD {result.assd:.2f}, "
                 f"MASD {result.masd:.2f} mm", fontsize=10)
    ax.legend(loc="lower left", fontsize=7)

    ax = axes[1]
    draw_masks(ax, ref, pred)
    for pts, d, marker in ((rc, d_rp, "o"), (pc, d_pr, "s")):
        ok = d <= TOL
        ax.plot(pts[ok, 1], pts[ok, 0], marker, ms=3, color="tab:green")
        ax.plot(pts[~ok, 1], pts[~ok, 0], marker, ms=4, color="tab:red")
    ax.plot([], [], "o", color="tab:green", label=f"within {TOL:g} mm of the other contour")
    ax.plot([], [], "o", color="tab:red", label="farther")
    ax.set_title(f"NSD at {TOL:g} mm = {result.nsd:.3f}\n(green contour length / all contour length)", fontsize=10)
    ax.legend(loc="lower left", fontsize=7)

    ax = axes[2]
    draw_masks(ax, ref, pred)
    cross = ndimage.generate_binary_structure(2, 1)
    br = np.argwhere(ref & ~ndimage.binary_erosion(ref, cross))
    bp = np.argwhere(pred & ~ndimage.binary_erosion(pred, cross))
    ax.plot(br[:, 1], br[:, 0], "o", ms=3, color="tab:blue", label="reference border pixels")
    ax.plot(bp[:, 1], bp[:, 0], "s", ms=3, color="tab:orange", label="prediction border pixels")
    dv_rp, _ = nearest(br.astype(float), bp.astype(float))
    dv_pr, _ = nearest(bp.astype(float), br.astype(float))
    nsd_v = ((dv_rp <= TOL).sum() + (dv_pr <= TOL).sum()) / (dv_rp.size + dv_pr.size)
    pooled = np.percentile(np.concatenate([dv_rp, dv_pr]), 95)
    per_dir = max(np.percentile(dv_rp, 95), np.percentile(dv_pr, 95))
    ax.set_title(f"voxel borders (MONAI, medpy, MetricsReloaded):\nNSD {nsd_v:.3f}, HD95 {per_dir:.2f} "
                 f"(medpy pooled: {pooled:.2f}) mm", fontsize=10)
    ax.legend(loc="lower left", fontsize=7)

    fig.tight_layout()
    out = Path(__file__).parent / "img" / "surface_metrics.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
