"""Plots for reports (matplotlib, extra ``plot``; imported lazily, drawn with the Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._core.optional import import_optional

__all__ = ["dice_boxplot", "per_label_values", "qa_ranking_plot", "qa_slices_plot", "worst_slices"]

#: Boundary metrics measured in mm (no fixed [0, 1] axis).
_DISTANCES = ("HD", "HD95", "ASSD", "MASD", "ASD_REF_TO_PRED", "ASD_PRED_TO_REF")


def per_label_values(summary: Any, metric: str = "dice") -> dict[int | tuple[int, ...], list[float]]:
    """Per-case values of ``metric`` for each label of a :class:`medfuse.metrics.CaseSummary`."""
    out: dict[int | tuple[int, ...], list[float]] = {}
    for result in summary.per_case.values():
        for key in result.labels:
            out.setdefault(key, []).append(float(getattr(result[key], metric)))
    return out


def dice_boxplot(
    groups: Mapping[str, Any], path: str | os.PathLike[str], *, metric: str = "dice",
    title: str | None = None, label_names: Mapping[int, str] | None = None,
) -> Path:
    """Box plot of per-case ``metric`` per label, one box per group and label; written as PNG.

    Ratio metrics (Dice, NSD, ...) are drawn on a fixed [0, 1] axis; distances (``metric`` one of HD,
    HD95, ASSD, MASD, in mm) on an axis fitted to the values. Infinite distances (a label absent from one
    map) cannot be drawn: they are left out, and the title says how many.

    Parameters
    ----------
    groups : mapping of str to CaseSummary or to mapping of label to sequence of float
        What to compare (e.g. ensemble candidates); NaN values (label absent in both maps) are left out.
    metric : str, default "dice"
        Field of the summaries to draw, and the axis label.
    path : path
        PNG file to write.
    """
    plt = _pyplot()
    data: dict[str, Mapping[Any, Sequence[float]]] = {
        name: (g if isinstance(g, Mapping) else per_label_values(g, metric)) for name, g in groups.items()
    }
    keys = sorted({k for d in data.values() for k in d}, key=lambda k: (isinstance(k, tuple), k))
    n_groups = max(len(data), 1)
    width = 0.8 / n_groups
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(keys) * n_groups + 2), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    n_inf = 0
    for g, (name, values) in enumerate(data.items()):
        series = [[float(v) for v in values.get(k, []) if math.isfinite(v)] for k in keys]
        n_inf += sum(1 for k in keys for v in values.get(k, []) if math.isinf(v))
        positions = [i + (g - (n_groups - 1) / 2) * width for i in range(len(keys))]
        bp = ax.boxplot(series, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=True)
        for patch in bp["boxes"]:
            patch.set_facecolor(colors[g % len(colors)])
            patch.set_alpha(0.6)
        ax.plot([], [], color=colors[g % len(colors)], lw=6, alpha=0.6, label=name)
    names = label_names or {}
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([names.get(k, str(k)) if isinstance(k, int) else "+".join(map(str, k)) for k in keys],
                       rotation=45 if len(keys) > 8 else 0)
    ax.set_xlabel("label")
    distance = metric.upper() in _DISTANCES
    ax.set_ylabel(("Dice" if metric == "dice" else metric.replace("_", " ")) + (" (mm)" if distance else "")
                  + " per case")
    if not distance:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(axis="y", alpha=0.3)
    if n_inf:
        title = (f"{title}: " if title else "") + f"{n_inf} inf values (label absent from one map) not drawn"
    if title:
        ax.set_title(title, fontsize="medium")
    if len(data) > 1:
        ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return _save(plt, fig, path)


def _pyplot() -> Any:
    mpl = import_optional("matplotlib", purpose="plots")
    mpl.use("Agg")
    return import_optional("matplotlib.pyplot", purpose="plots")


def _save(plt: Any, fig: Any, path: str | os.PathLike[str]) -> Path:
    from ._core.atomic import atomic_write

    out = Path(path)
    try:
        with atomic_write(out) as tmp:  # verified: PNG signature and final IEND chunk
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out


def qa_ranking_plot(rows: Sequence[Any], path: str | os.PathLike[str], *, title: str | None = None,
                    top: int | None = None) -> Path:
    """Cases ranked by QA score (most suspicious on the left), each bar the stack of its components.

    Components have different units (nats, Dice, ratios), so each is scaled to ``[0, 1]`` by its largest
    value over the cases before stacking: a bar shows which components make a case stand out, the black
    dots (right axis) its ``qa_score``.

    Parameters
    ----------
    rows : sequence of CaseQA
        QA rows (:func:`medfuse.quality.case_qa`); drawn in ``qa_score`` order, highest first.
    path : path
        PNG file to write.
    top : int, optional
        Draw only the ``top`` most suspicious cases.
    """
    plt = _pyplot()
    ranked = sorted(rows, key=lambda r: (-float(r.qa_score), str(r.case)))[:top]
    names: list[str] = []
    for r in ranked:
        names.extend(k for k in r.components if k not in names)
    values = np.array([[float(r.components.get(k, 0.0)) for k in names] for r in ranked], dtype=np.float64)
    values = np.where(np.isfinite(values), np.abs(values), 0.0).reshape(len(ranked), len(names))
    scale = values.max(axis=0) if values.size else np.ones(len(names))
    shares = values / np.where(scale > 0, scale, 1.0)
    fig, ax = plt.subplots(figsize=(min(max(6.0, 0.35 * len(ranked) + 3), 24.0), 4.8))
    x = np.arange(len(ranked))
    bottom = np.zeros(len(ranked))
    for j, name in enumerate(names):
        ax.bar(x, shares[:, j], bottom=bottom, width=0.8, label=name.replace("_", " "), color=f"C{j % 10}")
        bottom += shares[:, j]
    ax.set_xticks(x)
    ax.set_xticklabels([str(r.case) for r in ranked], rotation=90 if len(ranked) > 6 else 0, fontsize="small")
    ax.set_ylabel("components (each scaled to its largest value)")
    ax.set_xlabel("case, most suspicious first")
    twin = ax.twinx()
    twin.plot(x, [float(r.qa_score) for r in ranked], "ko", ms=4, label="qa_score")
    twin.set_ylabel("qa_score")
    if names:
        ax.legend(loc="upper right", fontsize="x-small", ncol=2)
    ax.set_title(title or f"QA ranking of {len(ranked)} cases", fontsize="medium")
    fig.tight_layout()
    return _save(plt, fig, path)


def worst_slices(entropy: NDArray[Any], n: int = 3) -> list[int]:
    """The ``n`` axial slices (axis 0) with the largest summed entropy, in slice order (ties: lower first)."""
    sums = np.asarray(entropy, dtype=np.float64).reshape(entropy.shape[0], -1).sum(axis=1)
    order = np.argsort(-sums, kind="stable")[:max(0, int(n))]
    return sorted(int(i) for i in order)


def qa_slices_plot(path: str | os.PathLike[str], labels: NDArray[Any], entropy: NDArray[Any],
                   members: Sequence[NDArray[Any]], *, member_names: Sequence[str] | None = None,
                   slices: Sequence[int] | None = None, n_slices: int = 3, title: str | None = None) -> Path:
    """The worst slices of one case: fused labels with the entropy overlaid, and the members' labels beside.

    One row per slice (by default the ``n_slices`` axial slices with the largest summed entropy:
    :func:`worst_slices`); columns: the fused labels under the entropy map (transparent where 0), then
    each member's labels, all in one label colour map.

    Parameters
    ----------
    path : path
        PNG file to write.
    labels : ndarray of shape (Z, Y, X)
        The fused labels.
    entropy : ndarray of shape (Z, Y, X)
        The entropy map (:class:`medfuse.UncertaintyMaps`).
    members : sequence of ndarray of shape (Z, Y, X)
        Each member's labels.
    """
    plt = _pyplot()
    lab = np.asarray(labels)
    ent = np.asarray(entropy, dtype=np.float32)
    if ent.shape != lab.shape or any(np.shape(m) != lab.shape for m in members) or lab.ndim != 3:
        from .errors import ValidationError

        raise ValidationError(f"`labels`, `entropy` and every member must be 3-D of one shape; got {lab.shape}, "
                              f"{ent.shape} and {[np.shape(m) for m in members]}.")
    rows_z = list(slices) if slices is not None else worst_slices(ent, n_slices)
    n_cols = 1 + len(members)
    names = list(member_names or [f"member {m}" for m in range(len(members))])
    top_label = max([int(lab.max()) if lab.size else 0] + [int(np.max(m)) if np.size(m) else 0 for m in members])
    vmax = max(top_label, 1)
    ent_max = float(ent.max()) if ent.size else 1.0
    fig, axes = plt.subplots(max(len(rows_z), 1), n_cols, figsize=(2.6 * n_cols, 2.6 * max(len(rows_z), 1)),
                             squeeze=False)
    cmap = "tab20" if vmax > 9 else "tab10"
    for r, z in enumerate(rows_z):
        ax = axes[r][0]
        ax.imshow(lab[z], cmap=cmap, vmin=0, vmax=max(vmax, 9), interpolation="nearest")
        im = ax.imshow(np.ma.masked_less_equal(ent[z], 0.0), cmap="magma", alpha=0.75, vmin=0,
                       vmax=ent_max if ent_max > 0 else 1.0, interpolation="nearest")
        ax.set_title(f"fused + entropy, z={z}", fontsize="x-small")
        for m, member in enumerate(members):
            axes[r][m + 1].imshow(np.asarray(member)[z], cmap=cmap, vmin=0, vmax=max(vmax, 9),
                                  interpolation="nearest")
            axes[r][m + 1].set_title(f"{names[m]}", fontsize="x-small")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return _save(plt, fig, path)
