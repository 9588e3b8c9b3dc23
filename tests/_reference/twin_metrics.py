"""Slow, obviously-correct numpy twins of medfuse.metrics (for the tests only).

The metrics twins work from voxel masks, the way nnU-Net v2's evaluation does (one mask per label or
region, ``ignore_label`` as a mask), not from a confusion matrix, so they check medfuse's algebra too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    r = np.asarray(reference).astype(np.int64).ravel()
    p = np.asarray(prediction).astype(np.int64).ravel()
    if num_classes is None:
        num_classes = int(max(r.max(initial=0), p.max(initial=0))) + 1
        if np.asarray(reference).dtype == bool and np.asarray(prediction).dtype == bool:
            num_classes = max(num_classes, 2)
    k = num_classes
    return np.bincount(r * k + p, minlength=k * k).reshape(k, k)


def counts(reference: np.ndarray, prediction: np.ndarray, key: int | Sequence[int],
           ignore_label: int | None = None) -> tuple[int, int, int, int]:
    """tp, fp, fn, tn of a label or region, with nnU-Net v2's masks."""
    labels = [key] if np.isscalar(key) else list(key)  # type: ignore[arg-type]
    ref = np.isin(reference, labels)
    pred = np.isin(prediction, labels)
    use = np.ones(ref.shape, bool) if ignore_label is None else reference != ignore_label
    tp = int(np.sum(ref & pred & use))
    fp = int(np.sum(~ref & pred & use))
    fn = int(np.sum(ref & ~pred & use))
    tn = int(np.sum(~ref & ~pred & use))
    return tp, fp, fn, tn


def metrics(tp: int, fp: int, fn: int, empty: str = "nan") -> dict[str, float]:
    """Ratio metrics with medfuse's documented empty rules, written case by case."""
    empty_value = {"nan": math.nan, "one": 1.0, "zero": 0.0}[empty]
    ref_n, pred_n = tp + fn, tp + fp
    if ref_n == 0 and pred_n == 0:
        return dict.fromkeys(("dice", "iou", "precision", "recall", "volume_similarity"), empty_value)
    return {
        "dice": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "precision": tp / pred_n if pred_n > 0 else 0.0,
        "recall": tp / ref_n if ref_n > 0 else 0.0,
        "volume_similarity": 1 - abs(fn - fp) / (2 * tp + fp + fn),
    }


def nnunet_summary(per_case: list[dict[int, float]]) -> tuple[dict[int, float], float]:
    """nnU-Net v2's aggregation of one metric: nanmean over cases per label, then mean over labels != 0."""
    keys = sorted({k for case in per_case for k in case})
    mean = {}
    for k in keys:
        values = np.array([case.get(k, math.nan) for case in per_case], dtype=float)
        mean[k] = float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else math.nan
    fg = [mean[k] for k in keys if k != 0]
    return mean, float(np.mean(fg)) if fg else math.nan
