"""Largest-connected-component postprocessing, as nnU-Net v1 / PaddleSeg MedicalSeg apply and choose it.

* :func:`keep_largest_component` — for each entry (a label, or a tuple of labels merged into one region)
  keep only its largest connected component (every component tied for largest is kept); the removed
  voxels become background (0). With ``min_valid_object_sizes`` only components smaller than the entry's
  size in mm³ are removed (the largest is always kept).
* :func:`apply_postprocessing` — the same, driven by a ``postprocessing.json`` (:class:`Postprocessing`).
* :func:`determine_postprocessing` — nnU-Net's rule on validation cases, in one pass over them.

Connectivity: nnU-Net v1 / PaddleSeg use scipy's default, 6 (face neighbours) — the default here; nnU-Net
v2 uses 26. With the optional ``connected-components-3d`` package (extra ``cc``) one labelling pass covers
every label at once; without it, scipy labels each label inside its bounding box. Both give the same
output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._optional import import_optional
from ._pp_json import Entry, JsonLayout, Postprocessing, entry_key, normalize_entries
from ._pp_json import _parse_min_sizes as parse_min_sizes
from ._typing import Connectivity
from ._validation import as_int, as_label_map, as_spacing, check_same_shape, describe
from .errors import MissingDependencyError, ValidationError

__all__ = [
    "JsonLayout",
    "Postprocessing",
    "apply_postprocessing",
    "determine_postprocessing",
    "keep_largest_component",
]

_RANK = {6: 1, 18: 2, 26: 3}


def _get_cc3d() -> ModuleType | None:
    """The cc3d module, or None when it is not installed (scipy is used then)."""
    try:
        return import_optional("cc3d", purpose="fast connected components")
    except MissingDependencyError:
        return None


def _check_connectivity(connectivity: object) -> int:
    if isinstance(connectivity, bool) or connectivity not in _RANK:
        raise ValidationError(
            f"`connectivity` must be 6 (faces, nnU-Net v1 / PaddleSeg), 18 or 26 (nnU-Net v2); got {connectivity!r}."
        )
    return int(connectivity)  # type: ignore[call-overload,unused-ignore]


def _components(volume: NDArray[Any], connectivity: int) -> tuple[NDArray[Any], int]:
    """Connected components of every nonzero value of a 3D array (different values never connect).

    Returns the component map (0 = background, components numbered 1..n without gaps) and n.
    """
    cc3d = _get_cc3d()
    if cc3d is not None:
        out, n = cc3d.connected_components(volume, connectivity=connectivity, return_N=True, out_dtype=np.uint32)
        return out, int(n)
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, _RANK[connectivity])
    if volume.dtype == np.bool_:
        lmap, n = ndimage.label(volume, structure=structure)
        return lmap, int(n)
    out = np.zeros(volume.shape, dtype=np.uint32)
    n = 0
    if volume.size == 0:
        return out, 0
    top = int(volume.max())
    if top < 1 << 16:
        boxes = ndimage.find_objects(volume.astype(np.int32, copy=False) if volume.dtype.kind == "i" else volume)
        items = [(v, box) for v, box in enumerate(boxes, start=1) if box is not None]
    else:  # huge label values: one full-size pass per value
        items = [(int(v), tuple(slice(None) for _ in range(3))) for v in np.unique(volume[volume > 0])]
    for value, box in items:
        mask = volume[box] == value
        lmap, k = ndimage.label(mask, structure=structure)
        view = out[box]
        view[mask] = lmap[mask].astype(np.uint32) + np.uint32(n)
        n += int(k)
    return out, n


def _voxel_volume(spacing: Sequence[float]) -> float:
    # the product in ITK order (x, y, z), exactly as nnU-Net computes volume_per_voxel
    return float(np.prod(np.asarray(spacing[::-1], dtype=np.float64)))


def _drop_per_label(result: NDArray[Any], labels: Sequence[int], connectivity: int,
                    min_sizes: Mapping[int | frozenset[int], float] | None, voxel_volume: float) -> None:
    """In place: for each of ``labels`` keep its largest component(s) (and those not below the min size)."""
    flat = result.reshape(-1)
    fg = np.flatnonzero(flat != 0)
    if fg.size == 0:
        return
    values = flat[fg]
    sel = np.isin(values, np.asarray(labels))
    if not sel.any():
        return
    fg, values = fg[sel], values[sel]
    cc, n = _components(result, connectivity)
    ids = cc.reshape(-1)[fg]
    del cc
    sizes = np.bincount(ids, minlength=n + 1)
    label_of = np.zeros(n + 1, dtype=np.int64)
    label_of[ids] = values
    comps = np.flatnonzero(sizes)  # the components of the selected labels
    comp_label, comp_size = label_of[comps], sizes[comps]
    uniq, inv = np.unique(comp_label, return_inverse=True)
    best = np.zeros(uniq.size, dtype=np.int64)
    np.maximum.at(best, inv, comp_size)
    remove = comp_size != best[inv]
    if min_sizes is not None:
        threshold = np.array([min_sizes[int(u)] for u in uniq], dtype=np.float64)
        remove &= comp_size * voxel_volume < threshold[inv]
    if remove.any():
        drop = np.zeros(n + 1, dtype=bool)
        drop[comps[remove]] = True
        flat[fg[drop[ids]]] = 0


def _drop_in_region(result: NDArray[Any], labels: Sequence[int], connectivity: int,
                    min_size: float | None, voxel_volume: float) -> None:
    """In place: merge ``labels`` into one region and keep its largest component(s)."""
    flat = result.reshape(-1)
    fg = np.flatnonzero(flat != 0)
    fg = fg[np.isin(flat[fg], np.asarray(labels))]
    if fg.size == 0:
        return
    mask = np.zeros(result.shape, dtype=bool)
    mask.reshape(-1)[fg] = True
    cc, n = _components(mask, connectivity)
    del mask
    ids = cc.reshape(-1)[fg]
    del cc
    sizes = np.bincount(ids, minlength=n + 1)
    remove = sizes != sizes[1:].max()
    remove[0] = False
    if min_size is not None:
        remove &= sizes * voxel_volume < min_size
    if remove.any():
        flat[fg[remove[ids]]] = 0


def _check_labels(labels: ArrayLike, *, name: str) -> tuple[NDArray[Any], bool]:
    a = np.asarray(labels)
    was_bool = a.dtype == np.bool_
    a = as_label_map(a, name=name, ndim=3)
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValidationError(f"`{name}` must hold non-negative labels; got {int(a.min())}.")
    return a, was_bool


def keep_largest_component(
    labels: ArrayLike,
    *,
    for_which_classes: Iterable[int | Sequence[int]] | None = None,
    connectivity: Connectivity = 6,
    min_valid_object_sizes: Mapping[Any, float] | str | None = None,
    spacing_mm: float | Sequence[float] | None = None,
) -> NDArray[Any]:
    """Keep only the largest connected component of each label (or merged group of labels).

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), integer or bool
        Label map (0 = background). Not modified.
    for_which_classes : iterable of int or of sequences of int, optional
        Entries processed in order. An int ``c``: components of label ``c``. A sequence ``(a, b, ...)``:
        those labels merged into one region, whose components are found together. Default: every
        foreground label present, each on its own.
    connectivity : {6, 18, 26}
        Voxel neighbourhood: 6 (faces; nnU-Net v1 / PaddleSeg, the default), 18, or 26 (nnU-Net v2).
    min_valid_object_sizes : mapping of entry to float, or its str(), optional
        Minimum size in mm³ per entry (tuple keys for merged entries): only non-largest components smaller
        than it are removed. Needs ``spacing_mm``.
    spacing_mm : float or sequence of 3 float, optional
        Voxel size in mm ``(z, y, x)``; only used with ``min_valid_object_sizes``.

    Returns
    -------
    ndarray of shape (Z, Y, X), same dtype as ``labels``
        A new label map where removed voxels are 0. Every component tied for the largest is kept.
    """
    a, was_bool = _check_labels(labels, name="labels")
    conn = _check_connectivity(connectivity)
    result = np.array(a, order="C", copy=True)
    if for_which_classes is None:
        flat = result.reshape(-1)
        entries: tuple[Entry, ...] = tuple(int(v) for v in np.unique(flat[np.flatnonzero(flat != 0)]))
    else:
        entries = normalize_entries(list(for_which_classes))
    sizes = parse_min_sizes(min_valid_object_sizes)
    lookup: dict[int | frozenset[int], float] | None = None
    vv = 1.0
    if sizes is not None:
        if spacing_mm is None:
            raise ValidationError(
                "`spacing_mm` is required with `min_valid_object_sizes` (sizes are in mm³); pass the voxel "
                "spacing (z, y, x) of `labels`."
            )
        vv = _voxel_volume(as_spacing(spacing_mm, ndim=3))
        lookup = {entry_key(k): float(v) for k, v in sizes.items()}
        missing = [e for e in entries if entry_key(e) not in lookup]
        if missing:
            raise ValidationError(
                f"`min_valid_object_sizes` has no size for {missing} of `for_which_classes`; give every entry "
                "a size."
            )
    elif spacing_mm is not None:
        as_spacing(spacing_mm, ndim=3)
    i = 0
    while i < len(entries):
        entry = entries[i]
        if isinstance(entry, tuple):
            size = None if lookup is None else lookup[entry_key(entry)]
            _drop_in_region(result, entry, conn, size, vv)
            i += 1
            continue
        batch = []  # consecutive single labels are independent: one labelling pass for all of them
        while i < len(entries) and isinstance(entries[i], int):
            batch.append(int(entries[i]))  # type: ignore[arg-type]
            i += 1
        _drop_per_label(result, batch, conn, lookup, vv)
    return result.view(np.bool_) if was_bool else result


def apply_postprocessing(
    labels: ArrayLike,
    postprocessing: Postprocessing | Mapping[str, Any] | str | Any,
    *,
    spacing_mm: float | Sequence[float] | None = None,
    connectivity: Connectivity = 6,
) -> NDArray[Any]:
    """Apply a ``postprocessing.json`` to a label map.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), integer or bool
        Label map; not modified.
    postprocessing : Postprocessing, path-like or dict
        What to do (:meth:`Postprocessing.read` accepts all three).
    spacing_mm : float or sequence of 3 float, optional
        Voxel size in mm ``(z, y, x)``; required when the file sets ``min_valid_object_sizes``.
    connectivity : {6, 18, 26}
        6 for nnU-Net v1 / PaddleSeg files (their scipy default), 26 to mimic nnU-Net v2.

    Returns
    -------
    ndarray of shape (Z, Y, X), same dtype as ``labels``
    """
    pp = Postprocessing.read(postprocessing)
    return keep_largest_component(
        labels, for_which_classes=pp.for_which_classes, connectivity=connectivity,
        min_valid_object_sizes=pp.min_valid_object_sizes, spacing_mm=spacing_mm,
    )


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
    from .metrics import confusion_matrix

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
    conn = _check_connectivity(connectivity)
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
