"""Plots for reports (matplotlib, extra ``plot``; imported lazily, drawn with the Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._core.optional import import_optional

__all__ = ["dice_boxplot", "per_label_values"]

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
    mpl = import_optional("matplotlib", purpose="plots")
    mpl.use("Agg")
    plt = import_optional("matplotlib.pyplot", purpose="plots")
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
    from ._core.atomic import atomic_write

    out = Path(path)
    try:
        with atomic_write(out) as tmp:  # verified: PNG signature and final IEND chunk
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out
