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
(out-of-fold); learned weights are fitted for the probability mean only, and compared there by the main
search. A subset of one model is that model's argmax under every strategy (computed once).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    """The best equal-weight subset of the models under one strategy."""

    strategy: str
    members: tuple[str, ...]
    score: float
    per_label: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "members": list(self.members), "score": round(self.score, 6),
                "per_label": {str(k): round(v, 6) for k, v in self.per_label.items()}}


@dataclass(frozen=True)
class StrategyComparison:
    """Every subset scored under every strategy; the best per strategy, best first."""

    best: tuple[StrategyScore, ...]
    #: score of every subset (members joined by "+") under each strategy
    scores: dict[str, dict[str, float]]

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
            return f"strategy {w.strategy!r} ({'+'.join(w.members)}): {w.score:.4f}"
        r = self.best[1]
        return (f"strategy {w.strategy!r} wins ({'+'.join(w.members)}: {w.score:.4f}), by {self.margin:+.4f} Dice "
                f"over {r.strategy!r} ({'+'.join(r.members)}: {r.score:.4f}); equal-weight subsets, nothing "
                "fitted, so the scores are out-of-fold")

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner.strategy, "margin": round(self.margin, 6),
                "best": [b.to_dict() for b in self.best],
                "scores": {s: {k: round(v, 6) for k, v in d.items()} for s, d in self.scores.items()}}


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
                       masks: NDArray[np.int64], num_classes: int, labels: Sequence[int]) -> StrategyComparison:
    """Score every subset (``masks``, bit m = model m) under every strategy; see the module docstring."""
    case_rows: dict[str, list[NDArray[np.float64]]] = {s: [] for s in strategies}
    lab = list(labels)
    for case in loaded:
        argmaxes = [_argmax(case.stack[m]) for m in range(case.stack.shape[0])]
        for s in strategies:
            rows = []
            for mask in masks:
                idx = [m for m in range(len(models)) if int(mask) >> m & 1]
                tp, fp, fn = _counts(case.reference, case.box, _fused(s, case.stack, argmaxes, idx, num_classes),
                                     num_classes)
                rows.append(case_dice(tp[lab], fp[lab], fn[lab]))
            case_rows[s].append(np.stack(rows))  # (S, L)
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
    return StrategyComparison(tuple(best), scores)


def _argmax(probabilities: NDArray[Any]) -> NDArray[Any]:
    from ..fusion import fuse_probabilities

    return fuse_probabilities([probabilities], check=False)
