"""Per-case QA from the uncertainty maps (PLACEHOLDER - replaced at merge).

PLACEHOLDER - replaced at merge: a trivial but correct implementation of the shared interface (spec of
issue 13) so that the folder and CLI work can be built and tested; the room ``quality`` of the helper
"u-quality" replaces this file. ``qa_score`` here is ``1 - sum_m omega_m mean_c Dice(member m, fused)``
over the foreground classes present in either.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.atomic import atomic_write
from ..errors import ValidationError
from ..fusion.uncertainty import UncertaintyMaps

__all__ = ["CaseQA", "QACalibration", "case_qa", "qa_calibration", "qa_table", "write_qa"]


@dataclass(frozen=True)
class CaseQA:
    """QA of one fused case: the score (higher = more suspicious), its components, class volumes."""

    case: str
    qa_score: float
    components: dict[str, float] = field(default_factory=dict)
    class_volumes: dict[str, int] = field(default_factory=dict)
    volume_cv: dict[str, float] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"case": self.case, "qa_score": self.qa_score, **self.components}
        row.update({f"volume_{k}": v for k, v in self.class_volumes.items()})
        row.update({f"volume_cv_{k}": v for k, v in self.volume_cv.items()})
        return row


def case_qa(labels: NDArray[Any], maps: UncertaintyMaps, *, case: str = "",
            spacing_mm: Sequence[float] | None = None) -> CaseQA:
    """QA of one case from its fused labels and uncertainty maps (placeholder score)."""
    lab = np.asarray(labels)
    if lab.shape != maps.entropy.shape:
        raise ValidationError(f"`labels` must have the maps' shape {maps.entropy.shape}; got {lab.shape}.")
    fg = lab != 0
    n_fg = int(fg.sum())

    def mean_fg(a: NDArray[np.float32]) -> float:
        return float(a[fg].mean()) if n_fg else 0.0

    dice = maps.member_dice()[:, 1:]
    present = ~np.all(np.isnan(dice), axis=0)
    per_member = (np.nanmean(dice[:, present], axis=1) if present.any()
                  else np.ones(maps.num_members))
    disagree = float(1.0 - np.sum(maps.member_shares * np.nan_to_num(per_member, nan=1.0)))
    vols = maps.member_volumes[:, 1:].astype(np.float64)
    mean_v = vols.mean(axis=0)
    cv = np.where(mean_v > 0, vols.std(axis=0) / np.where(mean_v > 0, mean_v, 1.0), 0.0)
    components = {"entropy_fg": mean_fg(maps.entropy), "mutual_information_fg": mean_fg(maps.mutual_information),
                  "disagreement_fg": mean_fg(maps.disagreement), "member_dice_gap": max(disagree, 0.0),
                  "volume_cv_max": float(cv.max()) if cv.size else 0.0}
    components = {k: (v if math.isfinite(v) else 0.0) for k, v in components.items()}
    return CaseQA(case=case, qa_score=components["member_dice_gap"], components=components,
                  class_volumes={str(c): int(maps.fused_volumes[c]) for c in range(1, maps.num_classes)},
                  volume_cv={str(c): float(cv[c - 1]) for c in range(1, maps.num_classes)})


def qa_table(rows: Sequence[CaseQA]) -> list[CaseQA]:
    """Rows sorted by ``qa_score``, most suspicious first (ties by case name)."""
    return sorted(rows, key=lambda r: (-r.qa_score, r.case))


def write_qa(folder: Path, rows: Sequence[CaseQA]) -> tuple[Path, Path]:
    """``qa.csv`` and ``qa.json`` in ``folder`` (sorted, atomic)."""
    table = [r.to_row() for r in qa_table(rows)]
    keys: list[str] = []
    for r in table:
        keys.extend(k for k in r if k not in keys)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    folder = Path(folder)
    csv_path, json_path = folder / "qa.csv", folder / "qa.json"
    with atomic_write(csv_path) as tmp:
        Path(tmp).write_text(buf.getvalue(), encoding="utf-8")
    with atomic_write(json_path) as tmp:
        Path(tmp).write_text(json.dumps({"cases": table}, indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


@dataclass(frozen=True)
class QACalibration:
    spearman: float
    low: float
    high: float
    n_cases: int

    def to_dict(self) -> dict[str, Any]:
        return {"spearman": self.spearman, "low": self.low, "high": self.high, "n_cases": self.n_cases}


def qa_calibration(qa_scores: Sequence[float], case_dice: Sequence[float], *, n_boot: int = 2000,
                   seed: int = 0) -> QACalibration:
    """Spearman correlation of ``-qa_score`` and the case Dice, with a bootstrap 95% interval."""
    q, d = np.asarray(qa_scores, dtype=np.float64), np.asarray(case_dice, dtype=np.float64)

    def rho(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
        ra, rb = a.argsort().argsort(), b.argsort().argsort()
        return float(np.corrcoef(ra, rb)[0, 1]) if a.size > 1 else float("nan")

    rng = np.random.default_rng(seed)
    boots = [rho(-q[i], d[i]) for i in (rng.integers(0, q.size, q.size) for _ in range(n_boot))]
    low, high = np.nanpercentile(boots, [2.5, 97.5]) if q.size > 1 else (float("nan"), float("nan"))
    return QACalibration(rho(-q, d), float(low), float(high), int(q.size))
