"""Slow, obviously-correct numpy twins of the search kernels (compared with them in tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def confusion(reference: NDArray[Any], labels: NDArray[Any], n_classes: int) -> NDArray[np.int64]:
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (reference.astype(np.int64), labels.astype(np.int64)), 1)
    return cm


def subset_confusions(stack: NDArray[Any], reference: NDArray[Any], masks: NDArray[Any]) -> NDArray[np.int64]:
    """Confusion matrix of the argmax of each subset's mean (float64), subsets given as bit masks."""
    n_members, n_classes = stack.shape[:2]
    p = stack.astype(np.float64)
    out = []
    for mask in masks:
        chosen = [m for m in range(n_members) if int(mask) >> m & 1]
        labels = p[chosen].mean(axis=0).argmax(axis=0)
        out.append(confusion(reference, labels, n_classes))
    return np.asarray(out, dtype=np.int64).reshape(len(masks), n_classes, n_classes)


def safe_voxels(stack: NDArray[Any], margin: float) -> NDArray[np.bool_]:
    """Voxels where all members agree and the winner's smallest probability beats every other's largest."""
    p = stack.astype(np.float32)
    arg = p.argmax(axis=1)  # (M, N)
    unanimous = (arg == arg[0]).all(axis=0)
    winner = arg[0]
    n = p.shape[2]
    top = np.take_along_axis(p, winner[None, None, :].repeat(p.shape[0], 0), axis=1)[:, 0]  # (M, N)
    others = p.copy()
    others[:, winner, np.arange(n)] = -np.inf
    return unanimous & (top.min(axis=0).astype(np.float64) * (1 - margin) > others.max(axis=(0, 1)))


def weighted_labels(P: NDArray[Any], weights: NDArray[Any]) -> NDArray[np.int64]:
    """Argmax of the per-class-normalised weighted mean; P (n, M, C), weights (M, C)."""
    w = np.asarray(weights, np.float64)
    values = np.einsum("nmc,mc->nc", P.astype(np.float64), w) / w.sum(axis=0)
    return values.argmax(axis=1)
