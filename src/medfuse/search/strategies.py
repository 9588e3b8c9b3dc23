"""Fusion strategies compared on the out-of-fold predictions (``search_ensembles(strategies=...)``).

Every non-empty subset of the models is fused, case by case, under each strategy asked for:

* ``"mean"``: argmax of the mean probability (:func:`medfuse.fuse_probabilities`);
* ``"log"``: argmax of the geometric mean (``space="log"``; for softmax outputs, the averaged logits);
* ``"vote"``: majority vote of the members' argmax maps (ties: lowest label);
* ``"staple"``: multi-label STAPLE of the members' argmax maps (:func:`medfuse.staple`, its public function;
  undecided voxels count as background).

All strategies are scored by the same code: per case and label Dice of the fused map over the whole
reference (outside the members' boxes the prediction is background), then nnU-Net's mean (per label over
cases, then over labels). Nothing is fitted on equal-weight subsets, so these scores are already honest
(out-of-fold). A subset of one model is that model's argmax under every strategy (computed once).

Learned weightings are scored under each strategy that takes them, with the same honest cross-validation
as the main search: every case is fused with the weights fitted *without its fold* (the weights of
``search_ensembles``' honest scores) and the scores are pooled over the held-out folds. The weights are the
ones the search fits (on the mean's exact objective); the strategies that take them:

* member weights: ``"mean"``, ``"log"`` (weighted geometric mean) and ``"vote"`` (weighted vote);
* per-class selection and per-class weights: ``"mean"`` and ``"log"`` (weights normalised per class; a
  class whose weights are all zero is never chosen, as in the search);
* ``"staple"`` takes no weights (its raters' reliabilities are estimated by EM), so it is scored on
  equal-weight subsets only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from .stats import case_dice, label_means, mean_score

__all__ = ["STRATEGIES", "Strategy", "StrategyComparison", "StrategyScore", "check_strategies", "compare_strategies"]

Strategy = Literal["mean", "log", "vote", "staple"]
STRATEGIES: tuple[str, ...] = ("mean", "log", "vote", "staple")


def check_strategies(strategies: object) -> tuple[str, ...]:
    """Validate ``strategies=``: a non-empty sequence of distinct names from :data:`STRATEGIES`."""
    if isinstance(strategies, str):
        strategies = (strategies,)
    if not isinstance(strategies, Sequence) or not strategies:
        raise ValidationError(f"`strategies` must be a non-empty sequence among {list(STRATEGIES)}, e.g. "
                              f"('mean', 'log', 'vote', 'staple'); got {strategies!r}.")
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or len(set(strategies)) != len(strategies):
        raise ValidationError(f"`strategies` must name distinct strategies among {list(STRATEGIES)}; got "
                              f"{list(strategies)}.")
    return tuple(str(s) for s in strategies)


@dataclass(frozen=True)
class StrategyScore:
    """The best equal-weight subset of the models under one strategy, or one learned weighting under it.

    ``weighting`` is ``"subset"`` (equal weights; ``members`` is the best subset) or a candidate kind
    (``"member-weights"``, ``"class-selection"``, ``"class-weights"``: honest, out-of-fold weights;
    ``members`` are the models with a non-zero weight in any fold).
    """

    strategy: str
    members: tuple[str, ...]
    score: float
    per_label: dict[int, float] = field(default_factory=dict)
    weighting: str = "subset"

    @property
    def label(self) -> str:
        """``"strategy, weighting"`` as the report names a row."""
        what = "equal weights" if self.weighting == "subset" else self.weighting.replace("-", " ")
        return f"{self.strategy} ({what})"

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "weighting": self.weighting, "members": list(self.members),
                "score": round(self.score, 6),
                "per_label": {str(k): round(v, 6) for k, v in self.per_label.items()}}


@dataclass(frozen=True)
class StrategyComparison:
    """Every subset scored under every strategy, and every learned weighting under each strategy that takes
    it; :attr:`best` holds the best equal-weight subset per strategy, best first, :attr:`weighted` the
    honest score of each (strategy, weighting) pair, best first."""

    best: tuple[StrategyScore, ...]
    #: score of every subset (members joined by "+") under each strategy
    scores: dict[str, dict[str, float]]
    weighted: tuple[StrategyScore, ...] = ()

    @property
    def overall(self) -> StrategyScore:
        """The best row of all, equal-weight subsets and learned weightings together (honest scores)."""
        rows = [*self.best, *self.weighted]
        return max(rows, key=lambda r: r.score if np.isfinite(r.score) else -np.inf)

    @property
    def winner(self) -> StrategyScore:
        return self.best[0]

    @property
    def margin(self) -> float:
        """How much the winning strategy's best subset beats the runner-up strategy's best (Dice points)."""
        return self.best[0].score - self.best[1].score if len(self.best) > 1 else 0.0

    def summary(self) -> str:
        w = self.winner
        if len(self.best) == 1:
            text = f"strategy {w.strategy!r} ({'+'.join(w.members)}): {w.score:.4f}"
        else:
            r = self.best[1]
            text = (f"strategy {w.strategy!r} wins ({'+'.join(w.members)}: {w.score:.4f}), by {self.margin:+.4f} "
                    f"Dice over {r.strategy!r} ({'+'.join(r.members)}: {r.score:.4f}); equal-weight subsets, "
                    "nothing fitted, so the scores are out-of-fold")
        if self.weighted:
            o = self.overall
            runner = max((r for r in (*self.best, *self.weighted) if r is not o),
                         key=lambda r: r.score if np.isfinite(r.score) else -np.inf)
            text += (f"; with learned weights (fitted without each case's fold), the best is {o.label}: "
                     f"{o.score:.4f}, {o.score - runner.score:+.4f} over {runner.label}")
        return text

    def to_dict(self) -> dict[str, Any]:
        out = {"winner": self.winner.strategy, "margin": round(self.margin, 6),
               "best": [b.to_dict() for b in self.best],
               "scores": {s: {k: round(v, 6) for k, v in d.items()} for s, d in self.scores.items()}}
        if self.weighted:
            o = self.overall
            out |= {"weighted": [b.to_dict() for b in self.weighted],
                    "overall": {"strategy": o.strategy, "weighting": o.weighting, "score": round(o.score, 6)}}
        return out


def _fused(strategy: str, stack: NDArray[Any], argmaxes: Sequence[NDArray[Any]], idx: Sequence[int],
           num_classes: int) -> NDArray[Any]:
    from ..fusion import fuse_probabilities, majority_vote
    from ..fusion.staple import staple  # medfuse.staple, its public function

    if len(idx) == 1:
        return argmaxes[idx[0]]
    if strategy in ("mean", "log"):
        return fuse_probabilities([stack[m] for m in idx], space="log" if strategy == "log" else "probability",
                                  check=False)
    maps = [argmaxes[m] for m in idx]
    if strategy == "vote":
        return majority_vote(maps, num_classes=num_classes)
    out: NDArray[Any] = staple(maps, num_classes=num_classes)
    return out


def _counts(reference: NDArray[np.uint8], box: Any, fused: NDArray[Any], num_classes: int
            ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """tp, fp, fn per class of ``fused`` (over ``box``; background outside) against the whole reference."""
    inside = reference[tuple(slice(lo, hi) for lo, hi in box)]
    k = num_classes + 1  # STAPLE's undecided label (num_classes) is no class
    pred = np.minimum(fused.astype(np.int64), num_classes)
    cm = np.bincount(inside.astype(np.int64).ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)
    ref_total = np.bincount(reference.ravel(), minlength=k)[:k]
    tp = np.diagonal(cm).copy()
    fp = cm.sum(axis=0) - tp  # (background's fp outside the box is not needed: only foreground is scored)
    fn = ref_total - tp  # outside the box the prediction is background: every reference voxel there is missed
    return tp[:num_classes], fp[:num_classes], fn[:num_classes]


def compare_strategies(loaded: Iterator[Any], strategies: Sequence[str], *, models: Sequence[str],
                       masks: NDArray[np.int64], num_classes: int, labels: Sequence[int],
                       weightings: Mapping[str, NDArray[np.float64]] | None = None) -> StrategyComparison:
    """Score every subset (``masks``, bit m = model m) under every strategy, and every learned weighting
    (``weightings``: kind -> honest per-case weights ``(N, M, C)``, NaN for a case without any) under each
    strategy that takes it; see the module docstring."""
    case_rows: dict[str, list[NDArray[np.float64]]] = {s: [] for s in strategies}
    pairs = [(s, kind) for kind in (weightings or {}) for s in strategies if _takes(s, kind)]
    weighted_rows: dict[tuple[str, str], list[NDArray[np.float64]]] = {p: [] for p in pairs}
    lab = list(labels)
    for i, case in enumerate(loaded):
        argmaxes = [_argmax(case.stack[m]) for m in range(case.stack.shape[0])]
        for s in strategies:
            rows = []
            for mask in masks:
                idx = [m for m in range(len(models)) if int(mask) >> m & 1]
                tp, fp, fn = _counts(case.reference, case.box, _fused(s, case.stack, argmaxes, idx, num_classes),
                                     num_classes)
                rows.append(case_dice(tp[lab], fp[lab], fn[lab]))
            case_rows[s].append(np.stack(rows))  # (S, L)
        for s, kind in pairs:
            W = (weightings or {})[kind][i]
            if not np.isfinite(W).all():
                weighted_rows[(s, kind)].append(np.full(len(lab), np.nan))
                continue
            fused = _fused_weighted(s, case.stack, argmaxes, W)
            tp, fp, fn = _counts(case.reference, case.box, fused, num_classes)
            weighted_rows[(s, kind)].append(case_dice(tp[lab], fp[lab], fn[lab]))
    scores: dict[str, dict[str, float]] = {}
    best: list[StrategyScore] = []
    for s in strategies:
        dice = np.stack(case_rows[s], axis=1)  # (S, N, L)
        per_subset = np.atleast_1d(np.asarray(mean_score(dice), dtype=np.float64))
        names = ["+".join(m for i, m in enumerate(models) if int(mask) >> i & 1) for mask in masks]
        scores[s] = {n: float(v) for n, v in zip(names, per_subset, strict=True)}
        top = int(np.nanargmax(np.where(np.isnan(per_subset), -np.inf, per_subset)))
        per_label = label_means(dice[top])
        best.append(StrategyScore(s, tuple(names[top].split("+")), float(per_subset[top]),
                                  {k: float(v) for k, v in zip(lab, per_label, strict=True)}))
    best.sort(key=lambda b: -b.score if np.isfinite(b.score) else np.inf)
    weighted: list[StrategyScore] = []
    for (s, kind), rows in weighted_rows.items():
        dice = np.stack(rows)  # (N, L); cases without honest weights are NaN rows, left out of the means
        dice = dice[~np.isnan(dice).all(axis=1)] if dice.size else dice
        if not len(dice):
            continue
        W_all = (weightings or {})[kind]
        used = np.nansum(W_all, axis=(0, 2)) > 0
        per_label = label_means(dice)
        weighted.append(StrategyScore(s, tuple(m for m, u in zip(models, used, strict=True) if u),
                                      float(mean_score(dice)), {k: float(v) for k, v in zip(lab, per_label,
                                                                                          strict=True)}, kind))
    weighted.sort(key=lambda b: -b.score if np.isfinite(b.score) else np.inf)
    return StrategyComparison(tuple(best), scores, tuple(weighted))


def _takes(strategy: str, kind: str) -> bool:
    """Whether ``strategy`` can fuse with weights of ``kind`` (module docstring)."""
    if strategy in ("mean", "log"):
        return True
    return strategy == "vote" and kind == "member-weights"


def _fused_weighted(strategy: str, stack: NDArray[Any], argmaxes: Sequence[NDArray[Any]],
                    weights: NDArray[np.float64]) -> NDArray[Any]:
    """Labels of the ``(M, C)`` weighted fusion of one case under ``strategy`` (mean, log or vote).

    Mean and log: the search's rule, class by class in float32: ``sum_m (W[m, c] / T_c) v_m[c]`` with
    ``v = p`` or ``log(max(p, 1e-6))``, a class whose total ``T_c`` is 0 never chosen, ties to the lowest
    class (two float32 planes of memory; members with an all-zero row are not read).
    """
    from .._core.labels import label_dtype
    from ..fusion import majority_vote
    from ..fusion.run import DEFAULT_EPS

    used = [m for m in range(weights.shape[0]) if weights[m].any()]
    if strategy == "vote":
        return majority_vote([argmaxes[m] for m in used], weights=weights[used, 0], tie="lowest")
    total = weights.sum(axis=0)
    best = np.full(stack.shape[2:], -np.inf, dtype=np.float32)
    out = np.zeros(stack.shape[2:], dtype=label_dtype(weights.shape[1] - 1))  # uint16 above 256 classes
    plane = np.empty_like(best)
    term = np.empty_like(best)
    for c in range(weights.shape[1]):
        if total[c] <= 0:
            continue
        plane.fill(0.0)
        for m in used:
            if weights[m, c] == 0:
                continue
            np.copyto(term, stack[m, c], casting="unsafe")
            if strategy == "log":
                np.maximum(term, np.float32(DEFAULT_EPS), out=term)
                np.log(term, out=term)
            term *= np.float32(weights[m, c] / total[c])
            plane += term
        better = plane > best
        out[better] = c
        np.copyto(best, plane, where=better)
    return out


def _argmax(probabilities: NDArray[Any]) -> NDArray[Any]:
    from ..fusion import fuse_probabilities

    return fuse_probabilities([probabilities], check=False)
