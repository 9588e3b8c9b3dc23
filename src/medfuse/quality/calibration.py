"""How well the QA score ranks cases: Spearman correlation with the fused case Dice and a bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.validation import as_int, describe
from ..errors import ValidationError

__all__ = ["QACalibration", "qa_calibration", "spearman"]


@dataclass(frozen=True)
class QACalibration:
    """Rank agreement of ``qa_score`` with the case Dice.

    Attributes
    ----------
    spearman : float
        Spearman correlation of ``qa_score`` with the Dice *loss* ``1 - Dice`` (equivalently, minus the
        correlation with Dice): 1 when the score ranks the cases exactly from worst to best Dice, 0 when it
        ranks them at random. NaN when either is constant.
    low, high : float
        Percentile bootstrap interval of ``spearman`` (cases resampled with replacement).
    n_cases : int
        Cases used (those with a finite Dice).
    confidence : float
        Level of the interval.
    n_boot : int
        Bootstrap resamples.
    """

    spearman: float
    low: float
    high: float
    n_cases: int
    confidence: float = 0.95
    n_boot: int = 2000

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return {"spearman": self.spearman, "low": self.low, "high": self.high, "n_cases": self.n_cases,
                "confidence": self.confidence, "n_boot": self.n_boot}

    def __str__(self) -> str:
        return (f"Spearman {self.spearman:.3f} (qa_score vs 1 - Dice), {self.confidence:.0%} interval "
                f"[{self.low:.3f}, {self.high:.3f}] over {self.n_cases} cases")


def _ranks(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    out: NDArray[np.float64] = np.asarray(rankdata(a, axis=-1), dtype=np.float64)
    return out


def _pearson_rows(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    num = (xc * yc).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: NDArray[np.float64] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation of two equally long 1-D sequences (average ranks for ties; NaN when one is
    constant)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    return float(_pearson_rows(_ranks(a), _ranks(b)))


def _as_vector(x: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"`{name}` must be a sequence of numbers, one per case; got {describe(x)}.") from None
    if a.ndim != 1:
        raise ValidationError(f"`{name}` must be one number per case (1-D); got {describe(a)}.")
    return a


def qa_calibration(qa_scores: ArrayLike, case_dice: ArrayLike, *, n_boot: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> QACalibration:
    """Spearman correlation of ``qa_scores`` with the Dice loss of the cases, with a bootstrap interval.

    Parameters
    ----------
    qa_scores : array_like of shape (N,)
        ``CaseQA.qa_score`` of each case (finite).
    case_dice : array_like of shape (N,)
        The fused case Dice against the reference, same order. Cases with a NaN Dice (nothing to score)
        are left out.
    n_boot : int, default 2000
        Bootstrap resamples of the cases (with replacement); resamples whose scores or Dice are all equal
        are skipped.
    seed : int, default 0
        Seed of the resampling: the same inputs and seed give the same interval.
    confidence : float in (0, 1), default 0.95
        Level of the percentile interval.

    Returns
    -------
    QACalibration
        ``spearman`` = Spearman(qa_score, 1 - Dice): positive when higher scores go with lower Dice.

    Raises
    ------
    ValidationError
        Different lengths, a non-finite score, fewer than 3 cases with a Dice, or a bad option.
    """
    scores = _as_vector(qa_scores, "qa_scores")
    dice = _as_vector(case_dice, "case_dice")
    if scores.shape != dice.shape:
        raise ValidationError(
            f"`qa_scores` and `case_dice` must have one entry per case each; got {scores.size} and {dice.size}."
        )
    if not np.isfinite(scores).all():
        raise ValidationError("`qa_scores` must be finite; got NaN or inf. Pass CaseQA.qa_score values.")
    n_boot = as_int(n_boot, name="n_boot", minimum=1)
    seed = as_int(seed, name="seed", minimum=0)
    if not 0.0 < float(confidence) < 1.0:
        raise ValidationError(f"`confidence` must be in (0, 1), e.g. 0.95; got {confidence!r}.")
    keep = np.isfinite(dice)
    scores, loss = scores[keep], 1.0 - dice[keep]
    n = int(scores.size)
    if n < 3:
        raise ValidationError(f"qa_calibration needs at least 3 cases with a finite Dice; got {n}.")
    rho = spearman(scores, loss)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, (1 << 22) // n)
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        boot[start:start + idx.shape[0]] = _pearson_rows(_ranks(scores[idx]), _ranks(loss[idx]))
    boot = boot[np.isfinite(boot)]
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha])) if boot.size else (np.nan, np.nan)
    return QACalibration(spearman=rho, low=low, high=high, n_cases=n, confidence=float(confidence), n_boot=n_boot)
