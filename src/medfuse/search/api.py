"""Choose the best ensemble on out-of-fold predictions: which models, which weights, which postprocessing.

:func:`search_ensembles` scores, on the models' out-of-fold (OOF) validation predictions,

- every non-empty subset of the M models (equal-weight mean of probabilities), all from ONE read of each
  member of each case (see :mod:`medfuse.search.scoring`);
- learned weights: one per model, and one per model and class ("class experts"), fitted by coordinate
  ascent on the exact OOF Dice (see :mod:`medfuse.search.weights`);
- per-class model selection: each label from the subset best at that label;

with bootstrap confidence intervals over cases, an honest (cross-validated) score for every fitted
candidate, and nnU-Net's largest-component postprocessing decided on the winner's OOF predictions.

How the winner is chosen
------------------------
Candidates are ranked by their honest score: the score itself for subsets (nothing is fitted), and for
fitted candidates the score of weights fitted on the other folds, on each held-out fold in turn. A
candidate within ``tie_tolerance`` of the top is a tie; ties go to the simpler candidate: fewer members,
then equal weights before member weights before per-class selection before per-class weights.
With ``criterion="nsd"`` or ``"dice+nsd"`` the ranking score is the surface Dice or the mean of the
honest Dice and the surface Dice instead (see :mod:`medfuse.search.criterion`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._core.typing import Connectivity
from .._core.validation import as_int, as_threads
from ..errors import ValidationError
from .criterion import Criterion, check_criterion, postprocess_by_criterion, with_nsd
from .oof import OutOfFold, assemble_oof
from .results import Candidate, CandidateKind, SearchResult
from .scoring import subset_masks
from .stages import (
    Collected,
    _finite,
    _honest_folds,
    _iter_loaded,
    _labels,
    _num_classes,
    _winner_maps,
    collect,
    fitted_candidates,
    postprocess_winner,
    subset_candidates,
)
from .stats import (
    bootstrap_resamples,
)
from .strategies import Strategy, check_strategies, compare_strategies

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Postprocessing

__all__ = ["Candidate", "CandidateKind", "SearchResult", "search_ensembles"]

# ------------------------------------------------------------------------------------------------------
# the search: validate, collect, fit, rank, postprocess
# ------------------------------------------------------------------------------------------------------

LearnWeights = Literal["none", "members", "classes"]


@dataclass(frozen=True)
class _Options:
    """The checked options of one search."""

    n_boot: int
    confidence: float
    tie_tolerance: float
    learn_weights: LearnWeights
    class_selection: bool
    postprocessing: Any
    connectivity: Connectivity
    min_object_size: Literal["none", "auto"]
    cap: int
    fit_cap: int
    memory_limit_mb: float
    seed: int
    threads: int | None
    progress: bool


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
    criterion: Criterion = "dice",
    tolerance_mm: float = 1.0,
    strategies: Sequence[Strategy] = ("mean",),
    qa: bool = True,
) -> SearchResult:
    """Find the ensemble of models, weights and postprocessing with the best out-of-fold Dice.

    Parameters
    ----------
    models : sequence of path-like, or OutOfFold
        Model cross-validation folders (``fold_<k>/validation_raw/`` or ``fold_<k>/validation/`` inside;
        see :func:`medfuse.search.oof.assemble_oof`), or out-of-fold predictions already assembled (e.g. from
        arrays with :meth:`medfuse.search.oof.OutOfFold.from_arrays`).
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
    criterion : {"dice", "nsd", "dice+nsd"}, default "dice"
        What ranks the candidates and decides the postprocessing: the honest mean foreground Dice, the
        mean foreground surface Dice (NSD at ``tolerance_mm``), or the mean of the two. With "nsd" or
        "dice+nsd" every candidate is scored both ways (see :mod:`medfuse.search.criterion`; costs one
        :func:`medfuse.surface_metrics` per candidate and case, and three per case for postprocessing).
    tolerance_mm : float, default 1.0
        NSD tolerance in mm.
    strategies : sequence of {"mean", "log", "vote", "staple"}, default ("mean",)
        Also score every equal-weight subset, and every learned weighting (with the honest weights: fitted
        without each case's fold), under these fusion strategies (one more pass over the cases; see
        :mod:`medfuse.search.strategies`): ``result.strategies`` says which strategy wins and by how much,
        and the report shows the comparison. Only ``"mean"`` (the default): no extra pass.
    qa : bool, default True
        Check the per-case QA score (:func:`medfuse.quality.case_qa`) on the out-of-fold cases: the winner
        is fused once more on every case with its uncertainty maps, and ``result.qa`` (and the report)
        give the Spearman correlation between the QA score and the case's fused Dice, with a bootstrap
        interval (:mod:`medfuse.search.qa`; one more pass over the cases).

    Returns
    -------
    SearchResult

    Raises
    ------
    ValidationError, CaseMismatchError, FormatError, GeometryMismatchError
        Bad options or inputs (see :func:`medfuse.search.oof.assemble_oof`); no label present in any case; every
        candidate scoring 0.
    """
    chosen = check_strategies(strategies)
    if not isinstance(qa, bool):
        raise ValidationError(f"`qa` must be True or False; got {qa!r}.")
    opts = _validate(n_bootstrap=n_bootstrap, confidence=confidence, tie_tolerance=tie_tolerance,
                     learn_weights=learn_weights, class_selection=class_selection, postprocessing=postprocessing,
                     connectivity=connectivity, min_object_size=min_object_size, max_members=max_members,
                     max_fit_voxels=max_fit_voxels, memory_limit_mb=memory_limit_mb, seed=seed, threads=threads,
                     progress=progress)
    crit, tol = check_criterion(criterion, tolerance_mm, opts.min_object_size)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    oof = models if isinstance(models, OutOfFold) else assemble_oof(models, references=references, names=names)
    _check_size(oof, opts.cap)
    notes = list(oof.notes)
    timings["assemble"] = time.perf_counter() - t0

    t = time.perf_counter()
    num_classes = _num_classes(oof)
    label_list = _labels(labels, num_classes)
    given_pp = _given_postprocessing(opts.postprocessing, num_classes)  # read before the long pass
    collected = collect(oof, num_classes=num_classes, memory_limit_mb=opts.memory_limit_mb, seed=opts.seed,
                        threads=opts.threads, progress=opts.progress)
    timings["pass"] = time.perf_counter() - t
    notes.extend(_pass_notes(collected, opts.memory_limit_mb))

    t = time.perf_counter()
    resamples = bootstrap_resamples(len(oof.cases), n_resamples=opts.n_boot, seed=opts.seed)
    masks = subset_masks(len(oof.models))
    candidates = subset_candidates(oof, collected, masks, num_classes=num_classes, labels=label_list,
                                   resamples=resamples, confidence=opts.confidence)
    folds = _honest_folds(oof, seed=opts.seed, notes=notes)
    fitted, honest_weights = fitted_candidates(
        oof, collected, _fitted_kinds(opts, len(oof.models)), folds, masks, num_classes=num_classes,
        labels=label_list, resamples=resamples, confidence=opts.confidence, fit_cap=opts.fit_cap, seed=opts.seed,
        threads=opts.threads, progress=opts.progress)
    candidates += fitted
    timings["fit"] = time.perf_counter() - t

    if crit != "dice":
        t = time.perf_counter()
        candidates = with_nsd(candidates, lambda c: _winner_maps(oof, collected, c, num_classes=num_classes,
                                                                 threads=opts.threads, progress=False),
                              criterion=crit, labels=label_list, num_classes=num_classes, tolerance_mm=tol)
        notes.append(f"ranked by {crit} (NSD at {tol:g} mm); NSD of fitted candidates uses the weights fitted on "
                     "all cases (in-sample).")
        timings["nsd"] = time.perf_counter() - t
    ranked, best = _rank(candidates, oof.models, opts.tie_tolerance)
    t = time.perf_counter()
    pp: Postprocessing | None
    pp_score: float | None
    if crit != "dice" and (given_pp is not None or opts.postprocessing == "determine"):
        pp, pp_score = postprocess_by_criterion(
            oof, collected, best, given_pp, criterion=crit, tolerance_mm=tol, num_classes=num_classes,
            labels=label_list, connectivity=opts.connectivity, threads=opts.threads, progress=opts.progress)
    else:
        pp, pp_score = postprocess_winner(
            oof, collected, best, given_pp, determine=opts.postprocessing == "determine", num_classes=num_classes,
            labels=label_list, connectivity=opts.connectivity, min_object_size=opts.min_object_size,
            threads=opts.threads, progress=opts.progress)
    timings["postprocessing"] = time.perf_counter() - t
    comparison = None
    if chosen != ("mean",):
        t = time.perf_counter()
        comparison = compare_strategies(_iter_loaded(oof, num_classes=num_classes, progress=opts.progress,
                                                     desc="strategies"),
                                        chosen, models=oof.models, masks=masks, num_classes=num_classes,
                                        labels=label_list, weightings=honest_weights)
        notes.append(comparison.summary() + ".")
        timings["strategies"] = time.perf_counter() - t
    qa_result = None
    if qa:
        from .qa import qa_check

        t = time.perf_counter()
        qa_result = qa_check(_iter_loaded(oof, num_classes=num_classes, progress=opts.progress, desc="QA"), best,
                             seed=opts.seed)
        notes.append(f"QA score on the OOF cases: {qa_result.summary()}.")
        timings["qa"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return SearchResult(
        best=best, candidates=tuple(ranked), postprocessing=pp, postprocessed_score=pp_score,
        models=oof.models, sources=oof.sources, cases=oof.cases, num_classes=num_classes,
        labels=tuple(label_list), notes=tuple(notes), timings=timings,
        settings={**_settings(opts, given_pp is not None, len(folds)), "criterion": crit,
                  **({"tolerance_mm": tol} if crit != "dice" else {}), "strategies": list(chosen)},
        strategies=comparison, qa=qa_result,
    )


def _validate(*, n_bootstrap: Any, confidence: Any, tie_tolerance: Any, learn_weights: Any, class_selection: bool,
              postprocessing: Any, connectivity: Any, min_object_size: Any, max_members: Any, max_fit_voxels: Any,
              memory_limit_mb: Any, seed: Any, threads: Any, progress: bool) -> _Options:
    """Check every option before any file is read."""
    from ..postprocess import Postprocessing
    from ..postprocess.components import check_connectivity

    n_boot = as_int(n_bootstrap, name="n_bootstrap", minimum=0)
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValidationError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    if not (isinstance(tie_tolerance, (int, float)) and 0 <= tie_tolerance < 1):
        raise ValidationError(f"`tie_tolerance` must be in [0, 1); got {tie_tolerance!r}.")
    if learn_weights not in ("none", "members", "classes"):
        raise ValidationError(f"`learn_weights` must be 'none', 'members' or 'classes'; got {learn_weights!r}.")
    if not isinstance(postprocessing, (str, os.PathLike, Postprocessing)):
        raise ValidationError(
            f"`postprocessing` must be 'determine', 'none', a postprocessing.json path or a Postprocessing; "
            f"got {type(postprocessing).__name__}."
        )
    check_connectivity(connectivity)
    if min_object_size not in ("none", "auto"):
        raise ValidationError(f"`min_object_size` must be 'none' or 'auto'; got {min_object_size!r}.")
    cap = as_int(max_members, name="max_members", minimum=1)
    if cap > 12:
        raise ValidationError(f"`max_members` must be at most 12 ({2**12 - 1} subsets); got {cap}.")
    fit_cap = as_int(max_fit_voxels, name="max_fit_voxels", minimum=1000)
    if not (isinstance(memory_limit_mb, (int, float)) and memory_limit_mb > 0):
        raise ValidationError(f"`memory_limit_mb` must be a positive number; got {memory_limit_mb!r}.")
    return _Options(n_boot=n_boot, confidence=float(confidence), tie_tolerance=float(tie_tolerance),
                    learn_weights=learn_weights, class_selection=class_selection, postprocessing=postprocessing,
                    connectivity=connectivity, min_object_size=min_object_size, cap=cap, fit_cap=fit_cap,
                    memory_limit_mb=float(memory_limit_mb), seed=as_int(seed, name="seed", minimum=0),
                    threads=as_threads(threads), progress=progress)


def _check_size(oof: OutOfFold, cap: int) -> None:
    n_models = len(oof.models)
    if n_models > cap:
        raise ValidationError(
            f"{n_models} models give {2**n_models - 1} subsets; `max_members` is {cap}. Leave the weakest models "
            "out, or raise `max_members` (at most 12)."
        )
    if not oof.cases:
        raise ValidationError("there are no out-of-fold cases to score.")


def _given_postprocessing(postprocessing: Any, num_classes: int) -> Postprocessing | None:
    if isinstance(postprocessing, str) and postprocessing in ("determine", "none"):
        return None
    from ..postprocess import Postprocessing

    return Postprocessing.read(postprocessing, num_classes=num_classes)


def _pass_notes(collected: Collected, memory_limit_mb: float) -> list[str]:
    notes = []
    if not collected.data.exact:
        notes.append(f"the contested voxels exceeded memory_limit_mb={memory_limit_mb:g}: weights were fitted on a "
                     "sample and re-scored exactly in a second pass over the predictions.")
    frac = collected.n_contested / max(collected.n_voxels, 1)
    notes.append(f"{collected.n_contested} of {collected.n_voxels} voxels ({100 * frac:.2f}%) are contested "
                 "(their label can depend on the weights); all others are decided whatever the weights.")
    return notes


def _fitted_kinds(opts: _Options, n_models: int) -> list[CandidateKind]:
    kinds: list[CandidateKind] = []
    if n_models > 1:
        if opts.learn_weights in ("members", "classes"):
            kinds.append("member-weights")
        if opts.class_selection:
            kinds.append("class-selection")
        if opts.learn_weights == "classes":
            kinds.append("class-weights")
    return kinds


def _rank(candidates: Sequence[Candidate], models: Sequence[str], tie_tolerance: float
          ) -> tuple[list[Candidate], Candidate]:
    """Candidates by honest score; the winner is the simplest within ``tie_tolerance`` of the top."""

    def order(c: Candidate) -> tuple[int, ...]:  # among equals, the models given first
        return tuple(models.index(m) for m in c.members)

    ranked = sorted(candidates, key=lambda c: (-_finite(c.ranking_score), c.complexity, order(c)))
    top = _finite(ranked[0].ranking_score)
    best = min((c for c in ranked if _finite(c.ranking_score) >= top - tie_tolerance),
               key=lambda c: (c.complexity, -_finite(c.ranking_score), order(c)))
    return ranked, best


def _settings(opts: _Options, given: bool, n_folds: int) -> dict[str, Any]:
    postprocessing = opts.postprocessing if isinstance(opts.postprocessing, str) and not given else "given"
    return {
        "learn_weights": opts.learn_weights, "class_selection": opts.class_selection,
        "postprocessing": postprocessing, "connectivity": opts.connectivity,
        "min_object_size": opts.min_object_size, "n_bootstrap": opts.n_boot, "confidence": opts.confidence,
        "tie_tolerance": opts.tie_tolerance, "max_fit_voxels": opts.fit_cap,
        "memory_limit_mb": opts.memory_limit_mb, "seed": opts.seed, "honest_folds": n_folds,
    }
