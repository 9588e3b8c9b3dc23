"""The search criterion: rank candidates and decide postprocessing by Dice, surface Dice (NSD) or both.

``criterion="dice"`` is the search as it always was (honest Dice, nnU-Net's postprocessing rule on
Dice). With ``"nsd"`` or ``"dice+nsd"`` every candidate's out-of-fold label maps are rebuilt (from the
compact memo of pass 1 when it fits in memory, else by re-reading) and scored with
:func:`medfuse.surface_metrics` at ``tolerance_mm``:

- :attr:`Candidate.nsd` / ``per_class_nsd``: nnU-Net's order of means (per label over cases, NaN
  skipped, then over labels), computed with the weights fitted on all cases (in-sample: the weights were
  fitted for Dice, not NSD, so the optimism is small but not zero — a note in the result says so);
- ranking: ``"nsd"`` ranks by that NSD, ``"dice+nsd"`` by the mean of the honest Dice and the NSD;
- postprocessing: nnU-Net's rule (merged foreground first, accepted when some label improves and none
  gets worse; then each label alone, accepted when it improves) with each label's score the criterion's
  (NSD, or the mean of Dice and NSD) instead of Dice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._core.typing import Connectivity
from ..errors import ValidationError
from .oof import OutOfFold
from .results import Candidate
from .stats import case_dice, label_means, mean_score

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Postprocessing
    from .stages import Collected

__all__ = ["CRITERIA", "Criterion", "check_criterion", "postprocess_by_criterion", "with_nsd"]

Criterion = Literal["dice", "nsd", "dice+nsd"]
CRITERIA: tuple[str, ...] = ("dice", "nsd", "dice+nsd")
Cases = Iterator[tuple[NDArray[Any], NDArray[Any], Any]]


def check_criterion(criterion: Any, tolerance_mm: Any, min_object_size: str) -> tuple[Criterion, float]:
    """The checked criterion and NSD tolerance (mm)."""
    if criterion not in CRITERIA:
        raise ValidationError(f"`criterion` must be one of {list(CRITERIA)}; got {criterion!r}.")
    try:
        tol = float(tolerance_mm)
    except (TypeError, ValueError):
        raise ValidationError(f"`tolerance_mm` must be a number >= 0 (mm); got {tolerance_mm!r}.") from None
    if not (np.isfinite(tol) and tol >= 0):
        raise ValidationError(f"`tolerance_mm` must be finite and >= 0 (mm); got {tolerance_mm!r}.")
    if criterion != "dice" and min_object_size != "none":
        raise ValidationError(
            f"`min_object_size` {min_object_size!r} is decided on Dice only; with `criterion` {criterion!r} use "
            "`min_object_size='none'`, or `criterion='dice'`."
        )
    return criterion, tol


def _case_scores(cases: Cases, labels: Sequence[int], num_classes: int, tolerance_mm: float, *,
                 pp: Postprocessing | None = None, connectivity: Connectivity = 6
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per case and label Dice and NSD, shape (N, L) each, of (maybe postprocessed) predictions."""
    from ..metrics import confusion_matrix, surface_metrics
    from ..postprocess import apply_postprocessing
    from .stats import counts_from_confusion

    dice_rows, nsd_rows = [], []
    idx = list(labels)
    for reference, prediction, spacing in cases:
        if pp is not None:
            prediction = apply_postprocessing(prediction, pp, spacing_mm=spacing, connectivity=connectivity)
        tp, fp, fn = counts_from_confusion(confusion_matrix(reference, prediction, num_classes=num_classes))
        dice_rows.append(case_dice(tp[idx], fp[idx], fn[idx]))
        surf = surface_metrics(reference, prediction, spacing_mm=spacing, tolerance_mm=tolerance_mm, labels=idx)
        nsd_rows.append(np.asarray([float(surf[k].nsd) for k in idx], np.float64))  # type: ignore[arg-type]
    return np.asarray(dice_rows, np.float64), np.asarray(nsd_rows, np.float64)


def with_nsd(candidates: Sequence[Candidate], maps: Any, *, criterion: Criterion, labels: Sequence[int],
             num_classes: int, tolerance_mm: float) -> list[Candidate]:
    """Every candidate with its NSD and the criterion set (``maps(candidate)`` yields its OOF cases)."""
    out = []
    for c in candidates:
        if criterion == "dice":
            out.append(c)
            continue
        _, nsd = _case_scores(maps(c), labels, num_classes, tolerance_mm)
        out.append(dataclasses.replace(
            c, nsd=float(mean_score(nsd)), per_class_nsd=tuple(float(v) for v in label_means(nsd)),
            criterion=criterion, tolerance_mm=tolerance_mm,
        ))
    return out


def _label_scores(dice: NDArray[np.float64], nsd: NDArray[np.float64], criterion: Criterion
                  ) -> NDArray[np.float64]:
    d, n = label_means(dice), label_means(nsd)
    return np.asarray(n if criterion == "nsd" else (d + n) / 2.0 if criterion == "dice+nsd" else d, np.float64)


def postprocess_by_criterion(
    oof: OutOfFold, collected: Collected, best: Candidate, given: Postprocessing | None, *, criterion: Criterion,
    tolerance_mm: float, num_classes: int, labels: Sequence[int], connectivity: Connectivity, threads: int | None,
    progress: bool,
) -> tuple[Postprocessing, float]:
    """nnU-Net's largest-component decision (or ``given``) judged by the criterion; the criterion's score after."""
    from ..postprocess import Postprocessing
    from .stages import _winner_maps

    def maps() -> Cases:
        return _winner_maps(oof, collected, best, num_classes=num_classes, threads=threads, progress=progress)

    def scores(pp: Postprocessing | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return _case_scores(maps(), labels, num_classes, tolerance_mm, pp=pp, connectivity=connectivity)

    if given is not None:
        d, n = scores(given)
        return given, float(np.nanmean(_label_scores(d, n, criterion)))
    raw_d, raw_n = scores(None)
    raw = _label_scores(raw_d, raw_n, criterion)
    merged_entry = tuple(range(1, num_classes))
    all_d, all_n = scores(Postprocessing(for_which_classes=(merged_entry,)))
    merged = _label_scores(all_d, all_n, criterion)
    ok = np.isfinite(raw) & np.isfinite(merged)
    accept_merged = bool(np.any(merged[ok] > raw[ok]) and not np.any(merged[ok] < raw[ok]))
    base, base_d = (merged, all_d) if accept_merged else (raw, raw_d)
    prefix: tuple[Any, ...] = (merged_entry,) if accept_merged else ()
    each_d, each_n = scores(Postprocessing(for_which_classes=(*prefix, *labels)))
    each = _label_scores(each_d, each_n, criterion)
    chosen = [k for i, k in enumerate(labels) if np.isfinite(each[i]) and np.isfinite(base[i]) and each[i] > base[i]]
    final = np.where(np.isin(np.asarray(labels), chosen), each, base)
    dice_means = {"raw": label_means(raw_d), "all": label_means(base_d), "each": label_means(each_d)}
    pp = Postprocessing(
        for_which_classes=(*prefix, *chosen),
        dc_per_class_raw={k: float(v) for k, v in zip(labels, dice_means["raw"], strict=True)},
        dc_per_class_pp_all={k: float(v) for k, v in zip(labels, dice_means["all"], strict=True)},
        dc_per_class_pp_per_class={k: float(v) for k, v in zip(labels, dice_means["each"], strict=True)},
        num_samples=len(oof.cases),
    )
    return pp, float(np.nanmean(final)) if np.any(np.isfinite(final)) else float("nan")
