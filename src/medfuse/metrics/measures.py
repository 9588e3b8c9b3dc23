"""Overlap metrics of label maps from a confusion matrix: Dice, IoU, precision, recall, volume similarity.

Everything is derived from one ``(K, K)`` confusion matrix (:func:`.confusion.confusion_matrix`); Dice and
friends of any label or merged region then cost nothing more. Search and postprocessing code that already
holds confusion matrices scores them with :func:`overlap_from_confusion`. :func:`aggregate_cases` summarises
many cases the way nnU-Net does.

The empty rule (what a metric is when a label is absent from both maps) is explicit: ``empty="nan"``
(nnU-Net v2, the default), ``"one"`` or ``"zero"``. ``docs/metrics.md`` compares it with nnU-Net v1/v2,
MONAI and SimpleITK.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.typing import EmptyRule
from .._core.validation import as_int, as_spacing, describe
from ..errors import ValidationError
from .confusion import _EMPTY_RULES, confusion_matrix
from .results import (
    CaseSummary,
    Key,
    LabelOverlap,
    OverlapResult,
    aggregate,
)

__all__ = ["aggregate_cases", "dice", "overlap", "overlap_from_confusion"]


def _check_empty(empty: object) -> EmptyRule:
    if empty not in _EMPTY_RULES:
        raise ValidationError(
            f"`empty` must be one of {list(_EMPTY_RULES)} (the value of a metric when the label is absent "
            f"from both maps); got {empty!r}."
        )
    return empty  # type: ignore[return-value]


def _as_label_list(labels: int | Iterable[int], *, name: str) -> list[int]:
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        items: list[Any] = [labels]
    elif isinstance(labels, (str, bytes, Mapping)) or not isinstance(labels, Iterable):
        raise ValidationError(f"`{name}` must be a sequence of non-negative integer labels; got {describe(labels)}.")
    else:
        items = list(np.asarray(labels).ravel()) if isinstance(labels, np.ndarray) else list(labels)
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValidationError(f"`{name}` must hold integer labels; got {v!r} in {items!r}.")
        if v < 0:
            raise ValidationError(f"`{name}` must hold non-negative labels; got {int(v)} in {[int(i) for i in items]}.")
        out.append(int(v))
    if len(set(out)) != len(out):
        dupes = sorted({v for v in out if out.count(v) > 1})
        raise ValidationError(f"`{name}` must not repeat a label; {dupes} appear more than once in {out}.")
    return out


def _as_regions(regions: Iterable[Iterable[int]], *, name: str = "regions") -> list[tuple[int, ...]]:
    if isinstance(regions, (str, bytes, Mapping)) or not isinstance(regions, Iterable):
        raise ValidationError(f"`{name}` must be a sequence of regions (tuples of labels); got {describe(regions)}.")
    out: list[tuple[int, ...]] = []
    for region in regions:
        if isinstance(region, (int, np.integer)):
            raise ValidationError(
                f"each entry of `{name}` must be a tuple of labels merged into one region; got the bare "
                f"label {region!r} (write ({region},) or pass it in `labels`)."
            )
        labels = tuple(_as_label_list(region, name=f"{name} entry {region!r}"))
        if not labels:
            raise ValidationError(f"each entry of `{name}` must hold at least one label; got an empty region.")
        out.append(labels)
    sets = [frozenset(r) for r in out]
    for i, s in enumerate(sets):
        if s in sets[:i]:
            raise ValidationError(f"`{name}` lists the region {out[i]} twice (same labels as {out[sets.index(s)]}).")
    return out


def _check_confusion(cm: ArrayLike) -> NDArray[np.int64]:
    a = np.asarray(cm)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.dtype.kind not in "iu":
        raise ValidationError(
            f"`cm` must be a square (K, K) integer confusion matrix (rows = reference); got {describe(a)}."
        )
    if a.size and a.min() < 0:
        raise ValidationError("`cm` must hold non-negative voxel counts; it has negative entries.")
    return a.astype(np.int64, copy=False)


def _voxel_volume(spacing_mm: Sequence[float]) -> float:
    """Product of a spacing given without the maps (so without their number of axes)."""
    if np.ndim(spacing_mm) != 1 or len(spacing_mm) == 0:
        raise ValidationError(
            f"`spacing_mm` must be a sequence of one voxel size (mm) per axis; got {describe(spacing_mm)}."
        )
    return float(np.prod(as_spacing(spacing_mm, ndim=len(spacing_mm), name="spacing_mm")))


def overlap_from_confusion(
    cm: ArrayLike,
    *,
    labels: int | Iterable[int] | None = None,
    regions: Iterable[Iterable[int]] | None = None,
    ignore_label: int | None = None,
    spacing_mm: Sequence[float] | None = None,
    empty: EmptyRule = "nan",
) -> OverlapResult:
    """Overlap metrics of labels and regions from a confusion matrix (no voxel is read again).

    Parameters
    ----------
    cm : array_like of shape (K, K), integer
        Voxel counts, rows = reference label, columns = predicted label (:func:`confusion_matrix`).
        It must count every voxel: a label ``>= K`` is taken to be absent from both maps.
    labels : int or sequence of int, optional
        Labels to score. By default the foreground labels (``>= 1``) present in either map, unless
        ``regions`` is given (then only the regions are scored).
    regions : sequence of sequence of int, optional
        Regions to score, each a tuple of labels merged into one foreground (nnU-Net's region-based
        evaluation). Regions may overlap each other (e.g. BraTS's nested tumour regions); a region may
        not repeat a label, and two regions may not hold the same labels.
    ignore_label : int, optional
        Voxels whose *reference* label is ``ignore_label`` are left out of every count (nnU-Net v2);
        it may not be one of ``labels`` or be inside a region.
    spacing_mm : sequence of float, optional
        Voxel spacing, one value per axis of the maps; its product is the voxel volume used for the
        ``*_volume_mm3`` fields (NaN without it).
    empty : {"nan", "one", "zero"}
        Value of every ratio metric of a label absent from both maps. ``"nan"`` = nnU-Net v2.

    Returns
    -------
    OverlapResult
        Mapping ``label or region -> LabelOverlap``, in the order: ``labels``, then ``regions``.
    """
    table = _check_confusion(cm)
    rule = _check_empty(empty)
    k = table.shape[0]
    if ignore_label is not None:
        ignore = as_int(ignore_label, name="ignore_label", minimum=0)
        if ignore < k:
            table = table.copy()
            table[ignore, :] = 0
    else:
        ignore = None
    voxel_volume = math.nan if spacing_mm is None else _voxel_volume(spacing_mm)

    region_list = [] if regions is None else _as_regions(regions)
    inferred = labels is None and regions is None
    if labels is None:
        if regions is None:
            present = np.flatnonzero(table.sum(axis=0) + table.sum(axis=1))
            label_list = [int(v) for v in present if v != 0 and v != ignore]
        else:
            label_list = []
    else:
        label_list = _as_label_list(labels, name="labels")
    if ignore is not None:
        if ignore in label_list:
            raise ValidationError(f"`ignore_label` {ignore} must not be one of `labels` {label_list}.")
        for region in region_list:
            if ignore in region:
                raise ValidationError(f"`ignore_label` {ignore} must not be inside a region; got {region}.")

    total = int(table.sum())
    row = table.sum(axis=1)
    col = table.sum(axis=0)
    entries: dict[Key, LabelOverlap] = {}
    for lab in label_list:
        if lab < k:
            tp = int(table[lab, lab])
            fn, fp = int(row[lab]) - tp, int(col[lab]) - tp
        else:
            tp = fn = fp = 0
        entries[lab] = LabelOverlap.from_counts(tp, fp, fn, total - tp - fp - fn, empty=rule,
                                                voxel_volume_mm3=voxel_volume)
    for region in region_list:
        idx = [v for v in region if v < k]
        tp = int(table[np.ix_(idx, idx)].sum())
        n_ref, n_pred = int(row[idx].sum()), int(col[idx].sum())
        fn, fp = n_ref - tp, n_pred - tp
        entries[region] = LabelOverlap.from_counts(tp, fp, fn, total - tp - fp - fn, empty=rule,
                                                   voxel_volume_mm3=voxel_volume)
    return OverlapResult(entries, empty=rule, total_voxels=total, voxel_volume_mm3=voxel_volume,
                         labels_inferred=inferred)


def overlap(
    reference: ArrayLike,
    prediction: ArrayLike,
    *,
    labels: int | Iterable[int] | None = None,
    regions: Iterable[Iterable[int]] | None = None,
    ignore_label: int | None = None,
    spacing_mm: float | Sequence[float] | None = None,
    empty: EmptyRule = "nan",
    num_classes: int | None = None,
) -> OverlapResult:
    """Dice, IoU, precision, recall, volume similarity and voxel counts of each label or region.

    Parameters
    ----------
    reference : array_like of shape (Z, Y, X) or any shape
        Reference label map (integer or bool).
    prediction : array_like of the same shape
        Predicted label map.
    labels : int or sequence of int, optional
        Labels to score; by default the foreground labels present in either map (unless ``regions``
        is given, then only the regions).
    regions : sequence of sequence of int, optional
        Tuples of labels merged into one foreground each; regions may overlap each other.
    ignore_label : int, optional
        Reference label whose voxels are left out of every count (nnU-Net v2 semantics).
    spacing_mm : float or sequence of float, optional
        Voxel spacing in array order, one value per axis of the maps (a scalar: isotropic). Gives the
        ``*_volume_mm3`` fields (NaN without it).
    empty : {"nan", "one", "zero"}
        Value of every ratio metric of a label absent from both maps; ``"nan"`` is nnU-Net v2's rule.
    num_classes : int, optional
        Passed to :func:`confusion_matrix` (checks that no label reaches it).

    Returns
    -------
    OverlapResult
        Mapping ``label or region -> LabelOverlap``; ``.dice``, ``.foreground_mean()``, ``.to_dict()``,
        ``.to_json()``, ``.to_rows()``.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.array([0, 1, 1, 2, 2], dtype=np.uint8)
    >>> pred = np.array([0, 1, 2, 2, 2], dtype=np.uint8)
    >>> result = overlap(ref, pred)
    >>> result.dice
    {1: 0.6666666666666666, 2: 0.8}
    >>> result[2].precision, result[2].recall
    (0.6666666666666666, 1.0)
    """
    rule = _check_empty(empty)
    ref_shape = np.shape(reference)
    spacing = None if spacing_mm is None else as_spacing(spacing_mm, ndim=len(ref_shape), name="spacing_mm")
    if labels is not None:
        labels = _as_label_list(labels, name="labels")
    region_list = None if regions is None else _as_regions(regions)
    cm = confusion_matrix(reference, prediction, num_classes=num_classes)
    return overlap_from_confusion(cm, labels=labels, regions=region_list, ignore_label=ignore_label,
                                  spacing_mm=spacing, empty=rule)


@overload
def dice(reference: ArrayLike, prediction: ArrayLike, *, labels: int, empty: EmptyRule = "nan") -> float: ...
@overload
def dice(reference: NDArray[np.bool_], prediction: NDArray[np.bool_], *,
         labels: None = None, empty: EmptyRule = "nan") -> float: ...
@overload
def dice(reference: ArrayLike, prediction: ArrayLike, *, labels: Iterable[int] | None = None,
         empty: EmptyRule = "nan") -> dict[int, float]: ...
def dice(reference: ArrayLike, prediction: ArrayLike, *, labels: int | Iterable[int] | None = None,
         empty: EmptyRule = "nan") -> float | dict[int, float]:
    """Dice coefficient ``2|R ∩ P| / (|R| + |P|)``.

    Parameters
    ----------
    reference : array_like of shape (Z, Y, X) or any shape
        Reference mask (bool) or label map (integer).
    prediction : array_like of the same shape
        Predicted mask or label map.
    labels : int or sequence of int, optional
        Labels to score (label maps only): one label gives its Dice as a float, a sequence gives a dict; by
        default the foreground labels present in either map (a dict).
    empty : {"nan", "one", "zero"}
        Dice of a label absent from both maps: NaN (nnU-Net v2, default), 1 or 0. A label absent from
        one map only scores 0.

    Returns
    -------
    float or dict of int to float
        A float for two bool masks (and no ``labels``) or for one ``labels`` int; otherwise
        ``{label: dice}``. Type checkers see which (overloads), so user code needs no casts.

    Examples
    --------
    >>> import numpy as np
    >>> dice(np.array([True, True, False]), np.array([True, False, False]))
    0.6666666666666666
    >>> dice(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
    {1: 0.6666666666666666, 2: 0.6666666666666666}
    >>> dice(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), labels=2)
    0.6666666666666666
    """
    rule = _check_empty(empty)
    ref = np.asarray(reference)
    pred = np.asarray(prediction)
    if labels is None and ref.dtype == np.bool_ and pred.dtype == np.bool_:
        return overlap(ref, pred, labels=[1], empty=rule)[1].dice
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, (bool, np.bool_)):
        return overlap(ref, pred, labels=[int(labels)], empty=rule)[int(labels)].dice
    result = overlap(ref, pred, labels=labels, empty=rule)
    return {cast(int, k): v.dice for k, v in result.items()}


def aggregate_cases(results: Mapping[str, OverlapResult], *,
                    labels: Iterable[Key] | None = None) -> CaseSummary:
    """Summarise per-case results the way nnU-Net v2 does.

    Parameters
    ----------
    results : mapping of str to OverlapResult
        One result per case, by case name (the order is kept).
    labels : sequence of int or tuple of int, optional
        Keys to summarise; by default the union of the cases' keys (labels ascending, then regions).

    Returns
    -------
    CaseSummary
        ``.mean[key][field]``: NaN-ignoring mean of each field over the cases; ``.foreground_mean[field]``:
        mean over the keys other than 0 of those means (per-label first, then over labels — nnU-Net's
        order); ``.to_nnunet_dict(files)``, ``.to_csv(path)``.

    Notes
    -----
    A key missing from a case whose labels were chosen automatically (``labels=None``) was absent from
    both of its maps: it is filled in with that case's empty-rule value and zero counts, exactly as if it
    had been asked for. A key missing from a case scored with explicit ``labels`` counts as missing
    (left out of the means).
    """
    if not isinstance(results, Mapping):
        raise ValidationError(f"`results` must be a mapping of case name to OverlapResult; got {describe(results)}.")
    if not results:
        raise ValidationError("`results` must hold at least one case; got an empty mapping.")
    for case, result in results.items():
        if not isinstance(result, OverlapResult):
            raise ValidationError(
                f"`results[{case!r}]` must be an OverlapResult (from `overlap`); got {describe(result)}."
            )
    keys: list[Key] | None = None
    if labels is not None:
        keys = []
        for key in labels:
            if isinstance(key, (tuple, list)):
                keys.append(tuple(_as_label_list(key, name="labels")))
            else:
                keys.extend(_as_label_list(key, name="labels"))
    return aggregate(results, keys)
