"""Scores of the ensemble search: Dice from counts, nnU-Net's mean, bootstrap confidence intervals.

The score of a candidate is nnU-Net's "foreground mean" Dice: Dice per case and label, averaged over
cases per label (cases where the label is absent from both reference and prediction do not count), then
averaged over labels (labels absent everywhere do not count). It is what
:meth:`medfuse.metrics.CaseSummary.foreground_mean` reports, computed here from counts so that thousands of
candidates can be scored without building result objects.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["bootstrap_resamples", "bootstrap_scores", "case_dice", "confidence_interval", "counts_from_confusion",
           "label_means",
           "mean_score"]


def counts_from_confusion(cm: NDArray[np.integer[Any]]) -> tuple[NDArray[np.int64], ...]:
    """``(tp, fp, fn)`` per class from confusion matrices ``(..., C, C)`` (rows = reference)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1).copy()
    fp = cm.sum(axis=-2) - tp
    fn = cm.sum(axis=-1) - tp
    return tp, fp, fn


def case_dice(tp: NDArray[Any], fp: NDArray[Any], fn: NDArray[Any]) -> NDArray[np.float64]:
    """Dice ``2 tp / (2 tp + fp + fn)`` elementwise; NaN where the label is absent from both maps."""
    tp = np.asarray(tp, dtype=np.float64)
    denominator = 2.0 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2.0 * tp / np.where(denominator > 0, denominator, 1.0), np.nan)


def label_means(dice: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mean over cases (axis -2) of ``(..., cases, labels)`` Dice, NaN-skipping; NaN for all-NaN labels."""
    valid = ~np.isnan(dice)
    n = valid.sum(axis=-2)
    total = np.where(valid, dice, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def mean_score(dice: NDArray[np.float64]) -> NDArray[np.float64] | float:
    """nnU-Net's foreground mean of ``(..., cases, labels)`` Dice (NaN when no label is present anywhere)."""
    means = label_means(dice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmean(means, axis=-1)
    return float(out) if np.ndim(out) == 0 else np.asarray(out, dtype=np.float64)


def bootstrap_scores(dice: NDArray[np.float64], resamples: NDArray[np.float64]) -> NDArray[np.float64]:
    """Score of each bootstrap resample of the cases.

    Parameters
    ----------
    dice : ndarray of shape (N, L)
        Per-case, per-label Dice (NaN = label absent from both maps).
    resamples : ndarray of shape (B, N)
        How many times each case is drawn in each resample (rows sum to N).

    Returns
    -------
    ndarray of shape (B,)
    """
    valid = ~np.isnan(dice)
    total = resamples @ np.where(valid, dice, 0.0)
    n = resamples @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(n > 0, total / np.maximum(n, 1e-300), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(means, axis=1), dtype=np.float64)


def bootstrap_resamples(n_cases: int, *, n_resamples: int, seed: int) -> NDArray[np.float64]:
    """Multiplicities ``(B, N)`` of cases in ``B`` resamples with replacement (shared by all candidates)."""
    if n_cases == 0 or n_resamples == 0:
        return np.zeros((n_resamples, n_cases), np.float64)
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_cases, np.full(n_cases, 1.0 / n_cases), size=n_resamples).astype(np.float64)


def confidence_interval(scores: NDArray[np.float64], *, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap scores (NaN, NaN when there are none)."""
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))
