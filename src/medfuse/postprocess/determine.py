"""Which postprocessing helps: nnU-Net's rule on validation cases, in one pass over them
(:func:`determine_postprocessing`).

Each case is labelled once into components (:mod:`.components`); every candidate removal is then scored
exactly from counts, without relabelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.typing import Connectivity
from .._core.validation import as_int, as_spacing, check_same_shape, describe
from ..errors import ValidationError
from .components import _check_labels, _components, _voxel_volume, check_connectivity
from .jsonfile import Entry, Postprocessing

__all__ = ["determine_postprocessing"]


# ------------------------------------------------------------------------------------------------------
# determining postprocessing on validation cases
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CaseRecord:
    """What one case contributes: raw counts and its components, enough to score any removal exactly.

    Class components (connected components of each predicted label) carry their label, voxel count,
    true-positive count and the foreground component (all labels merged) that contains them.
    """

    voxel_volume: float
    tp: NDArray[np.int64]  # (K,) raw true positives per label
    pred: NDArray[np.int64]  # (K,) predicted voxels per label
    ref: NDArray[np.int64]  # (K,) reference voxels per label
    comp_label: NDArray[np.int64]  # (n1,)
    comp_size: NDArray[np.int64]  # (n1,)
    comp_tp: NDArray[np.int64]  # (n1,)
    comp_parent: NDArray[np.int64]  # (n1,) index into fg_size
    fg_size: NDArray[np.int64]  # (n2,) voxels of each merged-foreground component


def _record(reference: ArrayLike, prediction: ArrayLike, spacing: Any, *, index: int, num_classes: int,
            connectivity: int) -> _CaseRecord:
    from ..metrics.confusion import confusion_matrix

    ref, _ = _check_labels(reference, name=f"cases[{index}] reference")
    pred, _ = _check_labels(prediction, name=f"cases[{index}] prediction")
    check_same_shape(ref, pred, names=(f"cases[{index}] reference", f"cases[{index}] prediction"))
    sp = as_spacing(spacing, ndim=3, name=f"cases[{index}] spacing_mm")
    try:
        cm = confusion_matrix(ref, pred, num_classes=num_classes)
    except ValidationError as exc:
        raise ValidationError(f"case {index}: {exc}") from None
    ref, pred = np.ascontiguousarray(ref), np.ascontiguousarray(pred)
    mask = pred != 0
    fg = np.flatnonzero(mask)  # nonzero() of a bool mask is ~4x faster than of the labels
    pf = pred.reshape(-1)[fg]
    hit = pf == ref.reshape(-1)[fg]
    cc, n1 = _components(pred, connectivity)
    c1 = cc.reshape(-1)[fg].astype(np.int64)
    del cc
    cc, n2 = _components(mask, connectivity)
    del mask
    c2 = cc.reshape(-1)[fg].astype(np.int64)
    del cc
    label = np.zeros(n1 + 1, dtype=np.int64)
    label[c1] = pf
    parent = np.zeros(n1 + 1, dtype=np.int64)
    parent[c1] = c2 - 1
    return _CaseRecord(
        voxel_volume=_voxel_volume(sp),
        tp=np.diagonal(cm).astype(np.int64), pred=cm.sum(axis=0), ref=cm.sum(axis=1),
        comp_label=label[1:], comp_size=np.bincount(c1, minlength=n1 + 1)[1:],
        comp_tp=np.bincount(c1[hit], minlength=n1 + 1)[1:], comp_parent=parent[1:],
        fg_size=np.bincount(c2, minlength=n2 + 1)[1:],
    )


def _dice_after(rec: _CaseRecord, removed: NDArray[np.bool_], k: int) -> NDArray[np.float64]:
    """(K-1,) Dice of labels 1..K-1 after removing the flagged class components (nan: absent in both)."""
    lab = rec.comp_label[removed]
    tp = rec.tp - np.bincount(lab, weights=rec.comp_tp[removed], minlength=k).astype(np.int64)
    pred = rec.pred - np.bincount(lab, weights=rec.comp_size[removed], minlength=k).astype(np.int64)
    denom = (pred + rec.ref)[1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * tp[1:] / denom, np.nan)


def _merged_removal(rec: _CaseRecord, min_size: float | None) -> NDArray[np.bool_]:
    """Class components removed by keeping the largest merged-foreground component(s)."""
    if rec.fg_size.size == 0:
        return np.zeros(0, dtype=bool)
    drop: NDArray[np.bool_] = rec.fg_size != rec.fg_size.max()
    if min_size is not None:
        drop &= rec.fg_size * rec.voxel_volume < min_size
    out: NDArray[np.bool_] = drop[rec.comp_parent]
    return out


def _largest_per_label(rec: _CaseRecord, alive: NDArray[np.bool_], k: int) -> NDArray[np.int64]:
    best = np.zeros(k, dtype=np.int64)
    np.maximum.at(best, rec.comp_label[alive], rec.comp_size[alive])
    return best


def _per_label_removal(rec: _CaseRecord, alive: NDArray[np.bool_], min_sizes: NDArray[np.float64],
                       k: int) -> NDArray[np.bool_]:
    """Class components removed (besides those already gone) by keeping each label's largest component."""
    best = _largest_per_label(rec, alive, k)
    size = rec.comp_size
    drop: NDArray[np.bool_] = alive & (size != best[rec.comp_label])
    drop &= size * rec.voxel_volume < min_sizes[rec.comp_label]
    return drop


def _nanmean(rows: list[NDArray[np.float64]], width: int) -> NDArray[np.float64]:
    if not rows:
        return np.full(width, np.nan)
    arr = np.vstack(rows)
    valid = ~np.isnan(arr)
    count = valid.sum(axis=0)
    total = np.where(valid, arr, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def determine_postprocessing(
    cases: Iterable[tuple[ArrayLike, ArrayLike, Any] | tuple[ArrayLike, ArrayLike]],
    *,
    num_classes: int,
    connectivity: Connectivity = 6,
    min_object_size: Literal["none", "auto"] = "none",
    dice_threshold: float = 0.0,
    validation_raw: str = "validation_raw",
    validation_final: str = "validation_raw_postprocessed",
) -> Postprocessing:
    """Choose largest-component postprocessing on validation cases, with nnU-Net v1's rule, in one pass.

    The rule (nnU-Net v1 ``determine_postprocessing``, which PaddleSeg MedicalSeg ports): first treat all
    foreground labels as one region and keep its largest component; accept that if the mean Dice of some
    label improves by more than ``dice_threshold`` and none gets worse. Then, on top of the accepted
    result (or the raw predictions), keep each label's largest component alone; accept it for every label
    whose mean Dice improves by more than ``dice_threshold``. Mean Dice is the nan-mean over cases (a label
    absent from both maps of a case does not count).

    Parameters
    ----------
    cases : iterable of (reference, prediction, spacing_mm)
        Read once (a generator that loads one case at a time keeps memory flat). ``reference`` and
        ``prediction`` are (Z, Y, X) integer label maps; ``spacing_mm`` is ``(z, y, x)`` or None (1 mm).
    num_classes : int
        Number of classes K including background; labels 1..K-1 are considered.
    connectivity : {6, 18, 26}
        6 as nnU-Net v1 / PaddleSeg (default), 26 as nnU-Net v2.
    min_object_size : {"none", "auto"}
        ``"auto"`` is nnU-Net's ``advanced_postprocessing``: only components smaller than the smallest
        kept (largest) component seen on the validation cases are removed (per entry, in mm³), and those
        sizes are written to ``min_valid_object_sizes``.
    dice_threshold : float
        Minimal improvement of mean Dice for acceptance (nnU-Net's default 0).
    validation_raw, validation_final : str
        Folder names recorded in the result (nnU-Net's bookkeeping).

    Returns
    -------
    Postprocessing
        ``for_which_classes`` (the merged entry as a tuple of all labels first, when accepted),
        ``min_valid_object_sizes``, the mean Dice per label raw / after the merged step / after the
        per-label step, and ``num_samples``.

    Notes
    -----
    Each case is reduced to a few counts per connected component (two labelling passes: per label and
    merged foreground), from which the Dice after any of the candidate removals, with or without size
    thresholds, follows exactly; the cases are not kept.
    """
    k = as_int(num_classes, name="num_classes", minimum=2)
    conn = check_connectivity(connectivity)
    if min_object_size not in ("none", "auto"):
        raise ValidationError(f"`min_object_size` must be 'none' or 'auto'; got {min_object_size!r}.")
    thr = float(dice_threshold) if isinstance(dice_threshold, (int, float)) and not isinstance(
        dice_threshold, bool) else float("nan")
    if not np.isfinite(thr):
        raise ValidationError(f"`dice_threshold` must be a finite number; got {dice_threshold!r}.")
    if isinstance(cases, (str, bytes)) or not isinstance(cases, Iterable):
        raise ValidationError(
            f"`cases` must be an iterable of (reference, prediction, spacing_mm); got {describe(cases)}."
        )
    records: list[_CaseRecord] = []
    for i, case in enumerate(cases):
        if not isinstance(case, (tuple, list)) or len(case) not in (2, 3):
            raise ValidationError(f"`cases[{i}]` must be (reference, prediction, spacing_mm); got {describe(case)}.")
        spacing = case[2] if len(case) == 3 else None
        records.append(_record(case[0], case[1], spacing, index=i, num_classes=k, connectivity=conn))
    if not records:
        raise ValidationError("`cases` is empty; determining postprocessing needs validation cases.")
    classes = tuple(range(1, k))
    advanced = min_object_size == "auto"
    nothing = [np.zeros(r.comp_label.size, dtype=bool) for r in records]

    raw = _nanmean([_dice_after(r, m, k) for r, m in zip(records, nothing, strict=True)], k - 1)

    # 1. all foreground merged
    fg_min: float | None = None
    if advanced:
        kept = [r.fg_size.max() * r.voxel_volume for r in records if r.fg_size.size]
        fg_min = float(min(kept)) if kept else None
    merged = [_merged_removal(r, fg_min) for r in records]
    pp_all = _nanmean([_dice_after(r, m, k) for r, m in zip(records, merged, strict=True)], k - 1)
    do_fg = bool(np.any(pp_all > raw + thr)) and not bool(np.any(pp_all < raw))
    entries: list[Entry] = []
    sizes: dict[Entry, float] = {}
    if do_fg:
        entries.append(classes)
        if fg_min is not None:
            sizes[classes] = fg_min

    # 2. each label alone, on top of step 1 when accepted
    pp_per_class: dict[int, float] = {}
    if len(classes) > 1:
        alive = [~m if do_fg else ~n for m, n in zip(merged, nothing, strict=True)]
        label_min = np.full(k, np.inf)
        if advanced:
            for r, a in zip(records, alive, strict=True):
                best = _largest_per_label(r, a, k) * r.voxel_volume
                label_min = np.where(best > 0, np.minimum(label_min, best), label_min)
        before = pp_all if do_fg else raw
        after = _nanmean([
            _dice_after(r, (~a) | _per_label_removal(r, a, label_min, k), k)
            for r, a in zip(records, alive, strict=True)
        ], k - 1)
        for c in classes:
            pp_per_class[c] = float(after[c - 1])
            if after[c - 1] > before[c - 1] + thr:
                entries.append(c)
                if advanced and np.isfinite(label_min[c]):
                    sizes[c] = float(label_min[c])
    return Postprocessing(
        for_which_classes=tuple(entries),
        min_valid_object_sizes=sizes if advanced else None,
        dc_per_class_raw={c: float(raw[c - 1]) for c in classes},
        dc_per_class_pp_all={c: float(pp_all[c - 1]) for c in classes},
        dc_per_class_pp_per_class=pp_per_class,
        num_samples=len(records),
        validation_raw=validation_raw,
        validation_final=validation_final,
    )
