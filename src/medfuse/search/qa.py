"""How well the per-case QA score ranks the out-of-fold cases (``search_ensembles(qa=True)``).

The QA score (:func:`medfuse.quality.case_qa`) is what a team reads on its test cases, where no reference
exists; the out-of-fold cases are the one place where it can be checked. This stage fuses the winner on
every OOF case once more, with its uncertainty maps (:func:`medfuse.fusion_uncertainty`, one pass per case),
scores each case and reports the Spearman correlation between ``-qa_score`` and the case's fused Dice (mean
over the scored labels), with a bootstrap interval over cases (:func:`medfuse.quality.qa_calibration`).

The winner's weights are those fitted on all cases; a class whose weights are all zero (per-class
selection) is fused with the member weights' mean instead for the maps (its labels are then the mean's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MIN_CASES", "QACheck", "qa_check"]

#: the correlation needs this many cases with a Dice (fewer: the scores are listed, no correlation)
MIN_CASES = 3


@dataclass(frozen=True)
class QACheck:
    """The QA score of every OOF case next to its fused Dice, and how well the score ranks the cases.

    Attributes
    ----------
    cases : tuple of str
    qa_scores : tuple of float
        The winner's QA score per case (higher = more suspicious).
    dice : tuple of float
        The winner's fused Dice per case (mean over the scored labels present).
    calibration : QACalibration or None
        Spearman correlation of ``qa_score`` with ``1 - Dice`` (1: the score orders the cases exactly from
        worst to best) and its bootstrap interval; None with fewer than :data:`MIN_CASES` cases with a Dice.
    """

    cases: tuple[str, ...]
    qa_scores: tuple[float, ...]
    dice: tuple[float, ...]
    calibration: Any
    rows: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def summary(self) -> str:
        """``"0.830 (95% CI 0.710 to 0.910, 40 cases; ...)"``: the Spearman correlation and its interval."""
        cal = self.calibration
        if cal is None:
            return f"not computed ({len(self.cases)} cases; the correlation needs at least {MIN_CASES})"
        return (f"{cal.spearman:.3f} ({cal.confidence:.0%} CI {cal.low:.3f} to {cal.high:.3f}, {cal.n_cases} cases; "
                "qa_score against 1 - Dice)")

    def worst(self, k: int = 5) -> list[tuple[str, float, float]]:
        """The ``k`` most suspicious cases: (case, qa_score, Dice)."""
        order = np.argsort(-np.asarray(self.qa_scores), kind="stable")[:k]
        return [(self.cases[i], self.qa_scores[i], self.dice[i]) for i in order]

    def to_dict(self) -> dict[str, Any]:
        calibration = None if self.calibration is None else {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)  # JSON: NaN -> null
            for k, v in self.calibration.to_dict().items()}
        return {"calibration": calibration,
                "cases": [{"case": c, "qa_score": round(q, 6), "dice": round(d, 6) if np.isfinite(d) else None}
                          for c, q, d in zip(self.cases, self.qa_scores, self.dice, strict=True)]}


def _qa_weights(W: NDArray[np.float64]) -> tuple[list[int], NDArray[np.float64]]:
    """Members with a non-zero weight and their (M', C) weights, every class column with a positive total."""
    used = [m for m in range(W.shape[0]) if W[m].any()]
    w = np.array(W[used], dtype=np.float64)
    empty = w.sum(axis=0) <= 0
    if empty.any():
        fallback = w.mean(axis=1)
        if fallback.sum() <= 0:
            fallback = np.ones(len(used))
        w[:, empty] = fallback[:, None]
    return used, w


def qa_check(loaded: Iterator[Any], best: Any, *, seed: int,
             n_bootstrap: int = 2000) -> QACheck:
    """Fuse ``best`` (a :class:`~medfuse.search.Candidate`) on every loaded case with its uncertainty maps,
    score each case's QA and compare with ``best.case_dice``."""
    from ..fusion import fuse_probabilities
    from ..quality import case_qa, qa_calibration

    used, w = _qa_weights(np.asarray(best.matrix, dtype=np.float64))
    names: list[str] = []
    scores: list[float] = []
    rows = []
    for case in loaded:
        members = [case.stack[m] for m in used]
        labels_box, maps = fuse_probabilities(members, weights=w, check=False, return_uncertainty=True)
        row = case_qa(labels_box, maps, case=case.name, spacing_mm=case.spacing_mm)
        names.append(case.name)
        scores.append(float(row.qa_score))
        rows.append(row)
    case_dice = np.asarray(best.case_dice, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        per_case = np.array([float(np.nanmean(r)) if np.isfinite(r).any() else np.nan for r in case_dice])
    n_finite = int(np.isfinite(per_case).sum())
    calibration = (qa_calibration(np.asarray(scores), per_case, n_boot=n_bootstrap, seed=seed)
                   if n_finite >= MIN_CASES else None)
    return QACheck(tuple(names), tuple(scores), tuple(float(d) for d in per_case), calibration, tuple(rows))
