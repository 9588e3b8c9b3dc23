"""The peers ``medfuse bench`` times medfuse against: nnU-Net v2's running sum, numpy stacks, MONAI's
MeanEnsemble, a one-hot vote, bincount Dice; and the checks that medfuse and the peer agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.optional import import_optional

__all__: list[str] = []


def _nnunet_v2_style(members: Sequence[NDArray[Any]]) -> NDArray[Any]:
    """nnU-Net v2's ensembling: a float32 running sum of the members, divided, then argmax."""
    acc = members[0].astype(np.float32)
    for m in members[1:]:
        acc += m
    acc /= len(members)
    labels: NDArray[Any] = acc.argmax(0).astype(np.uint8)
    return labels


def _numpy_mean_stack(members: Sequence[NDArray[Any]]) -> NDArray[Any]:
    labels: NDArray[Any] = np.mean(np.stack(members), axis=0).argmax(0).astype(np.uint8)
    return labels


def _monai_mean(members: Sequence[NDArray[Any]]) -> NDArray[Any]:
    torch = import_optional("torch")
    from monai.transforms import MeanEnsemble  # type: ignore[import-not-found]

    tensors = [torch.from_numpy(m) for m in members]
    return np.asarray(MeanEnsemble()(tensors).argmax(0).numpy(), dtype=np.uint8)


def _numpy_onehot_vote(maps: Sequence[NDArray[Any]], k: int) -> NDArray[Any]:
    classes = np.arange(k, dtype=maps[0].dtype).reshape((k,) + (1,) * maps[0].ndim)
    counts = np.zeros((k, *maps[0].shape), dtype=np.uint8)
    for m in maps:
        counts += m[None] == classes
    labels: NDArray[Any] = counts.argmax(0).astype(np.uint8)
    return labels


def _bincount_dice(ref: NDArray[Any], pred: NDArray[Any], k: int) -> dict[int, float]:
    cm = np.bincount((ref.astype(np.intp) * k + pred).ravel(), minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    size = cm.sum(0) + cm.sum(1)
    return {c: float(2 * tp[c] / size[c]) if size[c] else float("nan") for c in range(1, k)}


def _confusion_dice(ref: NDArray[Any], pred: NDArray[Any], k: int) -> dict[int, float]:
    from ..metrics import confusion_matrix

    cm = confusion_matrix(ref, pred, num_classes=k)
    tp = np.diag(cm).astype(np.float64)
    size = cm.sum(0) + cm.sum(1)
    return {c: float(2 * tp[c] / size[c]) if size[c] else float("nan") for c in range(1, k)}


def _same_dice(a: Any, b: Any) -> bool:
    keys = set(a) & set(b)
    return bool(keys) and all(abs(a[k] - b[k]) < 1e-9 or (np.isnan(a[k]) and np.isnan(b[k])) for k in keys)
