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


def _deepmind_surface(ref: NDArray[Any], pred: NDArray[Any], spacing: tuple[float, ...],
                      tolerances: tuple[float, ...]) -> dict[int, tuple[float, ...]]:
    """DeepMind ``surface-distance`` the way its README scores a label map: per label, bool masks, then
    ``compute_surface_distances`` and the reductions (HD, HD95, average distances, NSD per tolerance)."""
    sd = import_optional("surface_distance")
    if not hasattr(np, "Inf"):  # surface-distance 0.1 predates numpy 2
        setattr(np, "Inf", np.inf)  # noqa: B010 (what surface-distance reads)
    out: dict[int, tuple[float, ...]] = {}
    for c in np.union1d(np.unique(ref), np.unique(pred))[1:]:
        r, p = ref == c, pred == c
        if not (r.any() and p.any()):
            continue  # the empty rules differ on purpose (docs/metrics.md): compared where both hold it
        d = sd.compute_surface_distances(r, p, spacing)
        asd = sd.compute_average_surface_distance(d)
        out[int(c)] = (sd.compute_robust_hausdorff(d, 100), sd.compute_robust_hausdorff(d, 95), *asd,
                       *(sd.compute_surface_dice_at_tolerance(d, t) for t in tolerances))
    return out


def _same_surface(ours: Any, theirs: dict[int, tuple[float, ...]]) -> bool:
    """Every value of ``theirs`` equal to medfuse's within 1e-9 relative."""
    def close(a: float, b: float) -> bool:
        return a == b or abs(a - b) <= 1e-9 * abs(b)

    return bool(theirs) and all(
        all(close(float(a), float(b)) for a, b in zip(
            (ours[c].hd, ours[c].hd95, ours[c].asd_ref_to_pred, ours[c].asd_pred_to_ref, *ours[c].nsd), v,
            strict=True))
        for c, v in theirs.items())
