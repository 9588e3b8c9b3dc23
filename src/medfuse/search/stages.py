"""The stages of :func:`medfuse.search.search_ensembles` after its options are checked: collect the counts
of every subset in one pass (:func:`collect`), fit weights on all cases and on each held-out fold
(:func:`fitted_candidates`), and decide or apply postprocessing on the winner (:func:`postprocess_winner`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._core.typing import Connectivity
from .._core.validation import as_int
from ..errors import ValidationError
from .engine import CaseMemo, LoadedCase, labels_with_weights, load_case, memo_of, process_case
from .oof import OutOfFold
from .results import Candidate, CandidateKind
from .stats import bootstrap_scores, case_dice, confidence_interval, label_means, mean_score
from .weights import ContestedBuilder, ContestedSet, fit_class_weights, fit_member_weights, select_per_class

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Postprocessing

__all__ = ["Collected", "collect", "fitted_candidates", "postprocess_winner", "subset_candidates"]


@dataclass
class Collected:
    """Everything pass 1 leaves: counts of all subsets, contested voxels, memos."""

    subset_counts: NDArray[np.int64]  # (3, S, N, C)
    data: ContestedSet
    memos: list[CaseMemo]
    n_voxels: int
    n_contested: int


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _num_classes(oof: OutOfFold) -> int:
    if oof.num_classes is not None:
        return int(oof.num_classes)
    # every member is a label map: the largest label of the first case's reference and members
    first = oof.load(oof.cases[0])
    top = int(np.max(first.reference)) if first.reference.size else 0
    for member in first.members:
        lab = member.read_labels()
        top = max(top, int(np.max(lab)) if lab.size else 0)
    return max(top + 1, 2)


def _labels(labels: Sequence[int] | None, num_classes: int) -> list[int]:
    if labels is None:
        return list(range(1, num_classes))
    out = []
    for v in labels:
        lab = as_int(v, name="labels")
        if not 1 <= lab < num_classes:
            raise ValidationError(f"`labels` must be foreground labels 1..{num_classes - 1}; got {lab}.")
        if lab not in out:
            out.append(lab)
    if not out:
        raise ValidationError("`labels` must name at least one foreground label; got none.")
    return out


def _check_scores(scores: NDArray[np.float64], labels: Sequence[int]) -> None:
    if not np.any(np.isfinite(scores)):
        raise ValidationError(
            f"no label of {list(labels)} is present in any reference or prediction: every score is NaN. "
            "Check that the references are the right label maps (not empty) and `labels`."
        )
    if np.nanmax(scores) == 0.0:
        raise ValidationError(
            "every candidate scores 0: no prediction overlaps its reference anywhere. Check that the "
            "predictions and references use the same label numbering and the same image orientation."
        )


def _iter_loaded(oof: OutOfFold, *, num_classes: int, progress: bool, desc: str) -> Iterator[LoadedCase]:
    from .._core.progress import prefetch, progress_bar

    def produce() -> Iterator[LoadedCase]:
        for i, name in enumerate(oof.cases):
            yield load_case(oof.load(name), i, num_classes=num_classes, models=oof.models)

    loaded: Iterator[LoadedCase] = prefetch(produce(), depth=1)
    yield from progress_bar(loaded, enabled=progress, total=len(oof.cases), desc=desc)


def collect(oof: OutOfFold, *, num_classes: int, memory_limit_mb: float, seed: int, threads: int | None,
             progress: bool) -> Collected:
    n_models, n_cases = len(oof.models), len(oof.cases)
    n_subsets = 2**n_models - 1
    subset_counts = np.zeros((3, n_subsets, n_cases, num_classes), np.int64)
    fixed = np.zeros((3, n_cases, num_classes), np.float64)
    builder: ContestedBuilder | None = None
    memos: list[CaseMemo] = []
    n_voxels = n_contested = 0
    for loaded in _iter_loaded(oof, num_classes=num_classes, progress=progress, desc="search"):
        processed = process_case(loaded, models=oof.models, threads=threads)
        if builder is None:
            builder = ContestedBuilder(n_models, num_classes, budget_bytes=int(memory_limit_mb * 2**20),
                                       dtype=loaded.stack.dtype, seed=seed)
        subset_counts[:, :, loaded.index] = processed.subset_counts
        fixed[:, loaded.index] = processed.fixed_counts
        builder.add(loaded.index, processed.contested_probabilities, processed.contested_reference)
        memos.append(memo_of(loaded, processed))
        n_voxels += loaded.reference.size
        n_contested += processed.contested_reference.size
        del loaded, processed
    if builder is None:  # pragma: no cover - n_cases >= 1 is checked before
        raise ValidationError("there are no out-of-fold cases to score.")
    data = builder.build(fixed)
    return Collected(subset_counts, data, memos if data.exact else [], n_voxels, n_contested)


def _honest_folds(oof: OutOfFold, *, seed: int, notes: list[str]) -> list[NDArray[np.int64]]:
    fold_of = np.asarray([oof.folds[c] for c in oof.cases], dtype=np.int64)
    if np.unique(fold_of).size < 2:
        k = min(5, len(oof.cases))
        if k < 2:
            notes.append("a single case: no honest (cross-validated) scores.")
            return []
        fold_of = np.random.default_rng(seed).permutation(len(oof.cases)) % k
        notes.append(f"the cases all come from one fold: honest scores use a random {k}-fold split.")
    return [np.flatnonzero(fold_of == f) for f in np.unique(fold_of)]


def _indicator(mask: int, n_models: int, n_classes: int) -> NDArray[np.float64]:
    return np.array([[float(mask >> m & 1)] * n_classes for m in range(n_models)])


def _fit(data: ContestedSet, subset_counts: NDArray[np.int64], cases: NDArray[np.int64],
         kinds: Sequence[str], *, masks: NDArray[np.int64], labels: Sequence[int], fit_cap: int, seed: int
         ) -> dict[str, NDArray[np.float64]]:
    """Fitted weights (M, C) of each kind on ``cases``."""
    n_models, n_classes = data.n_members, data.n_classes
    counts = subset_counts[:, :, cases]
    dice = case_dice(*(counts[k][..., list(labels)] for k in range(3)))
    scores = np.asarray(mean_score(dice), dtype=np.float64).reshape(-1)
    best_mask = int(masks[int(np.argmax(np.where(np.isfinite(scores), scores, -np.inf)))])
    out: dict[str, NDArray[np.float64]] = {}
    sample = data.restrict(cases).sample(fit_cap, seed=seed)
    class_major = sample.class_major() if "member-weights" in kinds or "class-weights" in kinds else None
    w_members = _indicator(best_mask, n_models, n_classes)
    if "member-weights" in kinds or "class-weights" in kinds:
        w, _ = fit_member_weights(sample, w_members[:, 0], labels=labels, class_major=class_major)
        w_members = np.repeat(w[:, None], n_classes, axis=1)
        out["member-weights"] = w_members
    if "class-selection" in kinds:
        out["class-selection"] = select_per_class(counts.astype(np.float64), masks, n_members=n_models,
                                                  labels=labels)
    if "class-weights" in kinds:
        W, _ = fit_class_weights(sample, w_members, labels=labels, class_major=class_major)
        out["class-weights"] = W
    return {k: v for k, v in out.items() if k in kinds}


def _honest_counts(data: ContestedSet, per_fold: Sequence[tuple[NDArray[np.int64], Mapping[str, NDArray[Any]]]],
                   kind: str) -> NDArray[np.float64]:
    out = np.full_like(data.fixed, np.nan)
    for test, fits in per_fold:
        out[:, test] = data.restrict(test).counts(fits[kind])
    return out


def _exact_rescoring(oof: OutOfFold, fitted: Mapping[str, NDArray[np.float64]],
                     per_fold: Sequence[tuple[NDArray[np.int64], Mapping[str, NDArray[np.float64]]]], *,
                     num_classes: int, threads: int | None, progress: bool
                     ) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
    """Exact counts of the fitted weights, case by case (when the contested voxels were thinned)."""
    n_cases = len(oof.cases)
    fold_fit: dict[int, Mapping[str, NDArray[np.float64]]] = {}
    for test, fits in per_fold:
        for i in test:
            fold_fit[int(i)] = fits
    in_sample = {k: np.zeros((3, n_cases, num_classes)) for k in fitted}
    honest = {k: np.full((3, n_cases, num_classes), np.nan) for k in fitted}
    for loaded in _iter_loaded(oof, num_classes=num_classes, progress=progress, desc="exact re-scoring"):
        processed = process_case(loaded, models=oof.models, threads=threads)
        one = ContestedSet(processed.contested_probabilities, processed.contested_reference,
                           np.zeros(processed.contested_reference.size, np.int64),
                           np.ones(processed.contested_reference.size),
                           processed.fixed_counts[:, None, :].astype(np.float64))
        i = loaded.index
        for kind, W in fitted.items():
            in_sample[kind][:, i] = one.counts(W)[:, 0]
            if i in fold_fit:
                honest[kind][:, i] = one.counts(fold_fit[i][kind])[:, 0]
    return in_sample, honest


def _candidate(kind: CandidateKind, W: NDArray[np.float64], dice: NDArray[np.float64],
               honest_dice: NDArray[np.float64], models: Sequence[str], labels: Sequence[int],
               resamples: NDArray[np.float64], confidence: float) -> Candidate:
    used = [m for m in range(W.shape[0]) if np.any(W[m] > 0)]
    names = tuple(models[m] for m in used)
    weights: tuple[float, ...] | None = None
    class_weights: tuple[tuple[float, ...], ...] | None = None
    if kind in ("subset", "member-weights"):
        col = W[used, 0]
        col = col / col.max() if col.size and col.max() > 0 else col
        weights = tuple(round(float(v), 6) for v in col)
    else:
        class_weights = tuple(tuple(round(float(v), 6) for v in W[m]) for m in used)
    score = float(mean_score(dice))
    honest = score if kind == "subset" else float(mean_score(honest_dice))
    ci = confidence_interval(bootstrap_scores(dice, resamples), level=confidence)
    hci = ci if kind == "subset" else confidence_interval(bootstrap_scores(honest_dice, resamples),
                                                         level=confidence)
    means = label_means(dice)
    return Candidate(kind=kind, members=names, weights=weights, class_weights=class_weights, labels=tuple(labels),
                     per_class_dice=tuple(float(v) for v in means), score=score, ci=ci, honest_score=honest,
                     honest_ci=hci, case_dice=dice, matrix=W)


def _winner_maps(oof: OutOfFold, collected: Collected, best: Candidate, *, num_classes: int,
                 threads: int | None, progress: bool) -> Iterator[tuple[NDArray[Any], NDArray[Any], Any]]:
    """(reference, winner's labels, spacing) per case: from memory when possible, else by re-reading."""
    W = best.matrix
    if collected.memos:
        data = collected.data
        labels = data.labels(W)
        bounds = np.searchsorted(data.case, np.arange(len(collected.memos) + 1))
        for i, memo in enumerate(collected.memos):
            yield memo.reference_map(), memo.label_map(labels[bounds[i]:bounds[i + 1]]), memo.spacing_mm
        return
    for loaded in _iter_loaded(oof, num_classes=num_classes, progress=progress, desc="postprocessing"):
        processed = process_case(loaded, models=oof.models, threads=threads)
        yield loaded.reference, labels_with_weights(loaded, processed, W), loaded.spacing_mm


def _applied_score(cases: Iterator[tuple[NDArray[Any], NDArray[Any], Any]], pp: Postprocessing, *,
                   num_classes: int, labels: Sequence[int], connectivity: Connectivity) -> float:
    """Score of the winner's OOF predictions after applying ``pp``."""
    from ..metrics import confusion_matrix
    from ..postprocess import apply_postprocessing
    from .stats import counts_from_confusion

    rows = []
    for reference, prediction, spacing in cases:
        processed = apply_postprocessing(prediction, pp, spacing_mm=spacing, connectivity=connectivity)
        tp, fp, fn = counts_from_confusion(confusion_matrix(reference, processed, num_classes=num_classes))
        idx = list(labels)
        rows.append(case_dice(tp[idx], fp[idx], fn[idx]))
    return float(mean_score(np.asarray(rows)))


def _postprocessed_score(pp: Postprocessing, labels: Sequence[int]) -> float:
    """The winner's score after the accepted postprocessing (from the per-label means it measured)."""
    merged = any(isinstance(e, tuple) for e in pp.for_which_classes)
    alone = {e for e in pp.for_which_classes if isinstance(e, int)}
    values = []
    for c in labels:
        before = pp.dc_per_class_pp_all.get(c, math.nan) if merged else pp.dc_per_class_raw.get(c, math.nan)
        v = pp.dc_per_class_pp_per_class.get(c, math.nan) if c in alone else before
        values.append(v)
    arr = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(arr)) if np.any(np.isfinite(arr)) else math.nan


def subset_candidates(oof: OutOfFold, collected: Collected, masks: NDArray[np.int64], *, num_classes: int,
                      labels: Sequence[int], resamples: NDArray[np.float64], confidence: float) -> list[Candidate]:
    """One candidate per non-empty subset of the models (equal weights), scored from pass 1's counts."""
    subset_dice = case_dice(*(collected.subset_counts[k][..., list(labels)] for k in range(3)))  # (S, N, L)
    _check_scores(np.asarray(mean_score(subset_dice), dtype=np.float64).reshape(-1), labels)
    n_models = len(oof.models)
    return [_candidate("subset", _indicator(int(mask), n_models, num_classes), subset_dice[s], subset_dice[s],
                       oof.models, labels, resamples, confidence) for s, mask in enumerate(masks)]


def fitted_candidates(oof: OutOfFold, collected: Collected, kinds: Sequence[CandidateKind],
                      folds: Sequence[NDArray[np.int64]], masks: NDArray[np.int64], *, num_classes: int,
                      labels: Sequence[int], resamples: NDArray[np.float64], confidence: float, fit_cap: int,
                      seed: int, threads: int | None, progress: bool
                      ) -> tuple[list[Candidate], dict[str, NDArray[np.float64]]]:
    """Weights of each kind fitted on all cases (the candidate) and on each fold's complement (its honest
    score on the held-out fold).

    Also returns, per kind, the honest weights of every case, ``(N, M, C)``: those fitted without the case's
    fold (what the strategy comparison scores under each strategy); empty when there is a single fold.
    """
    if not kinds:
        return [], {}
    from .._core.progress import progress_bar

    data = collected.data
    fitted: dict[str, NDArray[np.float64]] = {}
    per_fold: list[tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]] = []
    all_cases = np.arange(len(oof.cases))
    steps = [(-1, all_cases), *((k, np.setdiff1d(all_cases, test)) for k, test in enumerate(folds))]
    for k, train in progress_bar(steps, enabled=progress, total=len(steps), desc="weights", unit="fit"):
        if train.size == 0:
            continue
        fits = _fit(data, collected.subset_counts, train, kinds, masks=masks, labels=labels, fit_cap=fit_cap,
                    seed=seed + 1 + k)
        if k < 0:
            fitted = fits
        else:
            per_fold.append((folds[k], fits))
    if not data.exact:
        in_sample, honest = _exact_rescoring(oof, fitted, per_fold, num_classes=num_classes, threads=threads,
                                             progress=progress)
    else:
        in_sample = {kind: data.counts(W) for kind, W in fitted.items()}
        honest = {kind: _honest_counts(data, per_fold, kind) for kind in fitted}
    out = []
    for kind in kinds:
        dice = case_dice(*(in_sample[kind][k][:, list(labels)] for k in range(3)))
        hdice = case_dice(*(honest[kind][k][:, list(labels)] for k in range(3))) if per_fold else \
            np.full_like(dice, np.nan)
        out.append(_candidate(kind, fitted[kind], dice, hdice, oof.models, labels, resamples, confidence))
    honest_weights: dict[str, NDArray[np.float64]] = {}
    if per_fold:
        for kind in kinds:
            per_case = np.full((len(oof.cases), *fitted[kind].shape), np.nan)
            for test, fits in per_fold:
                per_case[test] = fits[kind]
            honest_weights[kind] = per_case
    return out, honest_weights


def postprocess_winner(oof: OutOfFold, collected: Collected, best: Candidate, given: Postprocessing | None, *,
                       determine: bool, num_classes: int, labels: Sequence[int], connectivity: Connectivity,
                       min_object_size: Literal["none", "auto"], threads: int | None, progress: bool
                       ) -> tuple[Postprocessing | None, float | None]:
    """The postprocessing of the winner and the score it gives: ``given`` applied, or nnU-Net's decided."""
    if given is None and not determine:
        return None, None
    cases = _winner_maps(oof, collected, best, num_classes=num_classes, threads=threads, progress=progress)
    if given is not None:
        return given, _applied_score(cases, given, num_classes=num_classes, labels=labels,
                                     connectivity=connectivity)
    from ..postprocess import determine_postprocessing

    pp = determine_postprocessing(cases, num_classes=num_classes, connectivity=connectivity,
                                  min_object_size=min_object_size)
    return pp, _postprocessed_score(pp, labels)
