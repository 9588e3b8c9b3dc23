"""Choose the best ensemble on out-of-fold predictions: which models, which weights, which postprocessing.

:func:`search_ensembles` scores, on the models' out-of-fold (OOF) validation predictions,

- every non-empty subset of the M models (equal-weight mean of probabilities), all from ONE read of each
  member of each case (see :mod:`medfuse._search_pass`);
- learned weights: one per model, and one per model and class ("class experts"), fitted by coordinate
  ascent on the exact OOF Dice (see :mod:`medfuse._search_weights`);
- per-class model selection: each label from the subset best at that label;

with bootstrap confidence intervals over cases, an honest (cross-validated) score for every fitted
candidate, and nnU-Net's largest-component postprocessing decided on the winner's OOF predictions.

How the winner is chosen
------------------------
Candidates are ranked by their honest score: the score itself for subsets (nothing is fitted), and for
fitted candidates the score of weights fitted on the other folds, on each held-out fold in turn. A
candidate within ``tie_tolerance`` of the top is a tie; ties go to the simpler candidate: fewer members,
then equal weights before member weights before per-class selection before per-class weights.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from .._core.typing import Connectivity
from .._core.validation import as_int
from ..errors import ValidationError
from .engine import CaseMemo, LoadedCase, labels_with_weights, load_case, memo_of, process_case
from .oof import OutOfFold, assemble_oof
from .results import Candidate, CandidateKind, SearchResult
from .scoring import subset_masks
from .stats import (
    bootstrap_resamples,
    bootstrap_scores,
    case_dice,
    confidence_interval,
    label_means,
    mean_score,
)
from .weights import ContestedBuilder, ContestedSet, fit_class_weights, fit_member_weights, select_per_class

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Postprocessing

__all__ = ["Candidate", "CandidateKind", "SearchResult", "search_ensembles"]

# ------------------------------------------------------------------------------------------------------
# the search
# ------------------------------------------------------------------------------------------------------

LearnWeights = Literal["none", "members", "classes"]


@dataclass
class _Collected:
    """Everything pass 1 leaves: counts of all subsets, contested voxels, memos."""

    subset_counts: NDArray[np.int64]  # (3, S, N, C)
    data: ContestedSet
    memos: list[CaseMemo]
    n_voxels: int
    n_contested: int


def search_ensembles(
    models: Sequence[str | os.PathLike[str]] | OutOfFold,
    *,
    references: str | os.PathLike[str] | None = None,
    names: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    learn_weights: LearnWeights = "classes",
    class_selection: bool = True,
    postprocessing: Literal["determine", "none"] | str | os.PathLike[str] | Postprocessing = "determine",
    connectivity: Connectivity = 6,
    min_object_size: Literal["none", "auto"] = "none",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    tie_tolerance: float = 1e-4,
    max_members: int = 8,
    max_fit_voxels: int = 250_000,
    memory_limit_mb: float = 2048.0,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Find the ensemble of models, weights and postprocessing with the best out-of-fold Dice.

    Parameters
    ----------
    models : sequence of path-like, or OutOfFold
        Model cross-validation folders (``fold_<k>/validation_raw/`` or ``fold_<k>/validation/`` inside;
        see :func:`medfuse.oof.assemble_oof`), or out-of-fold predictions already assembled (e.g. from
        arrays with :meth:`medfuse.oof.OutOfFold.from_arrays`).
    references : path-like, optional
        Folder of reference label maps (default: the first model folder's ``gt_niftis/``).
    names : sequence of str, optional
        Model names (default: the folders' names).
    labels : sequence of int, optional
        Foreground labels to score (default all, ``1..C-1``).
    learn_weights : {"classes", "members", "none"}
        Fit one weight per model ("members"), also one per model and class ("classes"), or nothing.
    class_selection : bool
        Also try per-class model selection (each label from the subset best at it).
    postprocessing : {"determine", "none"}, path-like or Postprocessing
        "determine": decide nnU-Net's largest-component postprocessing on the winner's OOF predictions.
        A ``postprocessing.json`` (or :class:`~medfuse.postprocess.Postprocessing`): apply that one to the
        winner's OOF predictions and report the score it gives.
    connectivity : {6, 18, 26}
        Connectivity of the components (6 as nnU-Net v1 / PaddleSeg).
    min_object_size : {"none", "auto"}
        "auto": remove only components smaller than the smallest largest-component seen (nnU-Net's
        advanced postprocessing), recorded in ``min_valid_object_sizes``.
    n_bootstrap : int
        Bootstrap resamples of the cases for the confidence intervals (0: none).
    confidence : float
        Confidence level of the intervals.
    tie_tolerance : float
        Candidates within this of the top ranking score tie; ties go to the simpler candidate.
    max_members : int
        Refuse more models than this (2**M - 1 subsets); at most 12.
    max_fit_voxels : int
        Contested voxels the weight fitting uses at most (a uniform sample beyond; the final scores are
        exact all the same).
    memory_limit_mb : float
        Memory for the contested voxels of all cases. Beyond it they are thinned (sampled) and the
        weighted candidates are re-scored exactly in an extra pass over the predictions.
    seed : int
        Seed of every random choice (bootstrap, samples, random folds).
    threads : int, optional
        Threads of the numba kernels (default numba's).
    progress : bool
        Show progress bars (tqdm, when installed).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValidationError, CaseMismatchError, FormatError, GeometryMismatchError
        Bad options or inputs (see :func:`medfuse.oof.assemble_oof`); no label present in any case; every
        candidate scoring 0.
    """
    n_boot = as_int(n_bootstrap, name="n_bootstrap", minimum=0)
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValidationError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    if not (isinstance(tie_tolerance, (int, float)) and 0 <= tie_tolerance < 1):
        raise ValidationError(f"`tie_tolerance` must be in [0, 1); got {tie_tolerance!r}.")
    if learn_weights not in ("none", "members", "classes"):
        raise ValidationError(f"`learn_weights` must be 'none', 'members' or 'classes'; got {learn_weights!r}.")
    from ..postprocess import Postprocessing

    if not isinstance(postprocessing, (str, os.PathLike, Postprocessing)):
        raise ValidationError(
            f"`postprocessing` must be 'determine', 'none', a postprocessing.json path or a Postprocessing; "
            f"got {type(postprocessing).__name__}."
        )
    if isinstance(connectivity, bool) or connectivity not in (6, 18, 26):
        raise ValidationError(f"`connectivity` must be 6, 18 or 26; got {connectivity!r}.")
    if min_object_size not in ("none", "auto"):
        raise ValidationError(f"`min_object_size` must be 'none' or 'auto'; got {min_object_size!r}.")
    cap = as_int(max_members, name="max_members", minimum=1)
    if cap > 12:
        raise ValidationError(f"`max_members` must be at most 12 ({2**12 - 1} subsets); got {cap}.")
    fit_cap = as_int(max_fit_voxels, name="max_fit_voxels", minimum=1000)
    if not (isinstance(memory_limit_mb, (int, float)) and memory_limit_mb > 0):
        raise ValidationError(f"`memory_limit_mb` must be a positive number; got {memory_limit_mb!r}.")
    seed = as_int(seed, name="seed", minimum=0)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    oof = models if isinstance(models, OutOfFold) else assemble_oof(models, references=references, names=names)
    n_models, n_cases = len(oof.models), len(oof.cases)
    if n_models > cap:
        raise ValidationError(
            f"{n_models} models give {2**n_models - 1} subsets; `max_members` is {cap}. Leave the weakest models "
            "out, or raise `max_members` (at most 12)."
        )
    if n_cases == 0:
        raise ValidationError("there are no out-of-fold cases to score.")
    notes = list(oof.notes)
    timings["assemble"] = time.perf_counter() - t0

    t = time.perf_counter()
    num_classes = _num_classes(oof)
    label_list = _labels(labels, num_classes)
    given_pp = None
    if not (isinstance(postprocessing, str) and postprocessing in ("determine", "none")):
        given_pp = Postprocessing.read(postprocessing, num_classes=num_classes)  # before the long pass
    collected = _collect(oof, num_classes=num_classes, memory_limit_mb=float(memory_limit_mb), seed=seed,
                         threads=threads, progress=progress)
    timings["pass"] = time.perf_counter() - t
    data = collected.data
    exact = data.exact
    if not exact:
        notes.append(f"the contested voxels exceeded memory_limit_mb={memory_limit_mb:g}: weights were fitted on a "
                     "sample and re-scored exactly in a second pass over the predictions.")
    frac = collected.n_contested / max(collected.n_voxels, 1)
    notes.append(f"{collected.n_contested} of {collected.n_voxels} voxels ({100 * frac:.2f}%) are contested "
                 "(their label can depend on the weights); all others are decided whatever the weights.")

    resamples = bootstrap_resamples(n_cases, n_resamples=n_boot, seed=seed)
    masks = subset_masks(n_models)
    subset_dice = case_dice(*(collected.subset_counts[k][..., label_list] for k in range(3)))  # (S, N, L)
    subset_scores = np.asarray(mean_score(subset_dice), dtype=np.float64).reshape(-1)
    _check_scores(subset_scores, label_list)

    candidates: list[Candidate] = []
    for s, mask in enumerate(masks):
        w = np.array([[float(int(mask) >> m & 1)] * num_classes for m in range(n_models)])
        candidates.append(_candidate("subset", w, subset_dice[s], subset_dice[s], oof.models, label_list,
                                     resamples, confidence))

    t = time.perf_counter()
    fitted_kinds: list[CandidateKind] = []
    if n_models > 1:
        if learn_weights in ("members", "classes"):
            fitted_kinds.append("member-weights")
        if class_selection:
            fitted_kinds.append("class-selection")
        if learn_weights == "classes":
            fitted_kinds.append("class-weights")
    folds = _honest_folds(oof, seed=seed, notes=notes)
    fitted: dict[str, NDArray[np.float64]] = {}
    per_fold: list[tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]] = []
    if fitted_kinds:
        from .._core.progress import progress_bar

        all_cases = np.arange(n_cases)
        steps = [(-1, all_cases), *((k, np.setdiff1d(all_cases, test)) for k, test in enumerate(folds))]
        for k, train in progress_bar(steps, enabled=progress, total=len(steps), desc="weights", unit="fit"):
            if train.size == 0:
                continue
            fits = _fit(data, collected.subset_counts, train, fitted_kinds, masks=masks, labels=label_list,
                        fit_cap=fit_cap, seed=seed + 1 + k)
            if k < 0:
                fitted = fits
            else:
                per_fold.append((folds[k], fits))
        if not exact:
            in_sample, honest = _exact_rescoring(oof, fitted, per_fold, num_classes=num_classes, threads=threads,
                                                 progress=progress)
        else:
            in_sample = {kind: data.counts(W) for kind, W in fitted.items()}
            honest = {kind: _honest_counts(data, per_fold, kind) for kind in fitted}
        for kind in fitted_kinds:
            dice = case_dice(*(in_sample[kind][k][:, label_list] for k in range(3)))
            hdice = case_dice(*(honest[kind][k][:, label_list] for k in range(3))) if per_fold else \
                np.full_like(dice, np.nan)
            candidates.append(_candidate(kind, fitted[kind], dice, hdice, oof.models, label_list, resamples,
                                         confidence))
    timings["fit"] = time.perf_counter() - t

    def order(c: Candidate) -> tuple[int, ...]:  # among equals, the models given first
        return tuple(oof.models.index(m) for m in c.members)

    ranked = sorted(candidates, key=lambda c: (-_finite(c.ranking_score), c.complexity, order(c)))
    top = _finite(ranked[0].ranking_score)
    best = min((c for c in ranked if _finite(c.ranking_score) >= top - tie_tolerance),
               key=lambda c: (c.complexity, -_finite(c.ranking_score), order(c)))

    t = time.perf_counter()
    pp = given_pp
    pp_score = None
    if given_pp is not None:
        cases_iter = _winner_maps(oof, collected, best, num_classes=num_classes, threads=threads,
                                  progress=progress)
        pp_score = _applied_score(cases_iter, given_pp, num_classes=num_classes, labels=label_list,
                                  connectivity=connectivity)
    elif postprocessing == "determine":
        from ..postprocess import determine_postprocessing

        cases_iter = _winner_maps(oof, collected, best, num_classes=num_classes, threads=threads,
                                  progress=progress)
        pp = determine_postprocessing(cases_iter, num_classes=num_classes, connectivity=connectivity,
                                      min_object_size=min_object_size)
        pp_score = _postprocessed_score(pp, label_list)
    timings["postprocessing"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    settings = {
        "learn_weights": learn_weights, "class_selection": class_selection,
        "postprocessing": postprocessing if isinstance(postprocessing, str) and given_pp is None else "given",
        "connectivity": connectivity, "min_object_size": min_object_size, "n_bootstrap": n_boot,
        "confidence": confidence, "tie_tolerance": tie_tolerance, "max_fit_voxels": fit_cap,
        "memory_limit_mb": memory_limit_mb, "seed": seed, "honest_folds": len(folds),
    }
    return SearchResult(
        best=best, candidates=tuple(ranked), postprocessing=pp, postprocessed_score=pp_score,
        models=oof.models, sources=oof.sources, cases=oof.cases, num_classes=num_classes,
        labels=tuple(label_list), notes=tuple(notes), timings=timings, settings=settings,
    )


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


def _collect(oof: OutOfFold, *, num_classes: int, memory_limit_mb: float, seed: int, threads: int | None,
             progress: bool) -> _Collected:
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
    return _Collected(subset_counts, data, memos if data.exact else [], n_voxels, n_contested)


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


def _winner_maps(oof: OutOfFold, collected: _Collected, best: Candidate, *, num_classes: int,
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
