"""Result types of the ensemble search: :class:`Candidate` and :class:`SearchResult` (frozen)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Postprocessing
    from .qa import QACheck
    from .strategies import StrategyComparison

__all__ = ["Candidate", "CandidateKind", "SearchResult"]

#: How a candidate fuses its members.
CandidateKind = Literal["subset", "member-weights", "class-selection", "class-weights"]
_COMPLEXITY: dict[str, int] = {"subset": 0, "member-weights": 1, "class-selection": 2, "class-weights": 3}
_KIND_TEXT = {"subset": "equal weights", "member-weights": "member weights",
              "class-selection": "per-class selection", "class-weights": "per-class weights"}


def _round(x: float, digits: int = 6) -> float | None:
    return None if not math.isfinite(x) else round(float(x), digits)


@dataclass(frozen=True)
class Candidate:
    """One way to fuse the models, and how well it does on the out-of-fold cases.

    Attributes
    ----------
    kind : {"subset", "member-weights", "class-selection", "class-weights"}
    members : tuple of str
        Models with a non-zero weight, in the order of :attr:`SearchResult.models`.
    weights : tuple of float or None
        One weight per member (kinds "subset" / "member-weights", largest = 1); None for the class kinds.
    class_weights : tuple of tuple of float, or None
        Class kinds: per member, one weight per class ``0..C-1``. Class c's fused value is the
        ``class_weights[:, c]``-weighted mean of the members' class-c probabilities; the label is the argmax
        (ties to the lowest class).
    labels : tuple of int
        The labels scored.
    per_class_dice : tuple of float
        Mean Dice over cases of each of :attr:`labels` (NaN: absent from every reference and prediction).
    score : float
        OOF mean foreground Dice (nnU-Net's order: mean over cases per label, then over labels). For
        fitted candidates this is in-sample (weights fitted on all cases).
    ci : tuple of float
        Bootstrap confidence interval of :attr:`score` over cases.
    honest_score : float
        Fitted candidates: cross-validated score (weights fitted on the other folds, scored on each held-out
        fold). Subsets: equal to :attr:`score`.
    honest_ci : tuple of float
    nsd : float
        OOF mean foreground surface Dice at :attr:`tolerance_mm` (nnU-Net's order of means), with the
        weights fitted on all cases; NaN unless the search's criterion involves NSD.
    per_class_nsd : tuple of float
        Mean NSD over cases of each of :attr:`labels` (empty unless computed).
    criterion : {"dice", "nsd", "dice+nsd"}
        What :attr:`ranking_score` measures.
    tolerance_mm : float or None
        NSD tolerance (mm) when NSD was computed.
    """

    kind: CandidateKind
    members: tuple[str, ...]
    weights: tuple[float, ...] | None
    class_weights: tuple[tuple[float, ...], ...] | None
    labels: tuple[int, ...]
    per_class_dice: tuple[float, ...]
    score: float
    ci: tuple[float, float]
    honest_score: float
    honest_ci: tuple[float, float]
    case_dice: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)), compare=False, repr=False)
    matrix: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)), compare=False, repr=False)
    nsd: float = math.nan
    per_class_nsd: tuple[float, ...] = ()
    criterion: Literal["dice", "nsd", "dice+nsd"] = "dice"
    tolerance_mm: float | None = None

    @property
    def name(self) -> str:
        """Readable name, e.g. ``"3d_fullres + 2d (member weights)"``."""
        joined = " + ".join(self.members)
        return joined if self.kind == "subset" else f"{joined} ({_KIND_TEXT[self.kind]})"

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def per_class_weights(self) -> bool:
        """Whether :attr:`weights` holds one weight per member and class."""
        return self.class_weights is not None

    @property
    def ranking_score(self) -> float:
        """What candidates are ranked by: the honest Dice (:attr:`honest_score` when finite, else
        :attr:`score`) for criterion "dice", :attr:`nsd` for "nsd", their mean for "dice+nsd"."""
        dice = self.honest_score if math.isfinite(self.honest_score) else self.score
        if self.criterion == "nsd":
            return self.nsd
        if self.criterion == "dice+nsd":
            return (dice + self.nsd) / 2.0
        return dice

    @property
    def complexity(self) -> tuple[int, int]:
        """Sort key of simplicity: (members, kind) — smaller is simpler."""
        return (self.n_members, _COMPLEXITY[self.kind])

    def dice_of(self, label: int) -> float:
        """Mean Dice of one label."""
        return self.per_class_dice[self.labels.index(label)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (NaN becomes null)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "members": list(self.members),
            "weights": [list(w) for w in self.class_weights] if self.class_weights is not None
            else list(self.weights or ()),
            "score": _round(self.score),
            "ci": [_round(v) for v in self.ci],
            "honest_score": _round(self.honest_score),
            "honest_ci": [_round(v) for v in self.honest_ci],
            "per_class_dice": {str(k): _round(v) for k, v in zip(self.labels, self.per_class_dice, strict=True)},
            **({} if not self.per_class_nsd else {
                "nsd": _round(self.nsd), "tolerance_mm": self.tolerance_mm, "criterion": self.criterion,
                "ranking_score": _round(self.ranking_score),
                "per_class_nsd": {str(k): _round(v) for k, v in zip(self.labels, self.per_class_nsd, strict=True)},
            }),
        }


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search_ensembles` found.

    Attributes
    ----------
    best : Candidate
        The winner (see the module docstring for the rule).
    candidates : tuple of Candidate
        Every candidate, best first.
    postprocessing : Postprocessing or None
        Largest-component postprocessing decided on the winner's OOF predictions (None when not asked).
    postprocessed_score : float or None
        The winner's score after that postprocessing, measured by the search's criterion (mean foreground
        Dice by default; NSD, or the mean of Dice and NSD, with ``criterion="nsd"`` / ``"dice+nsd"``).
    models, sources, cases : tuple of str
        Model names, where they were read from, and the OOF case names.
    num_classes : int
    labels : tuple of int
        The labels scored.
    notes : tuple of str
        Facts worth knowing (fold assignment, sampling, ...).
    timings : mapping of str to float
        Seconds spent per stage.
    settings : mapping of str to Any
        The options of the run.
    strategies : StrategyComparison or None
        With ``strategies=`` beyond ``("mean",)``: every equal-weight subset scored under each strategy,
        the winning strategy and its margin (:mod:`medfuse.search.strategies`).
    qa : QACheck or None
        With ``qa=True`` (the default): the winner's per-case QA score next to its fused Dice, and the
        Spearman correlation between them with its bootstrap interval (:mod:`medfuse.search.qa`).
    """

    best: Candidate
    candidates: tuple[Candidate, ...]
    postprocessing: Postprocessing | None
    postprocessed_score: float | None
    models: tuple[str, ...]
    sources: tuple[str, ...]
    cases: tuple[str, ...]
    num_classes: int
    labels: tuple[int, ...]
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    strategies: StrategyComparison | None = None
    qa: QACheck | None = None

    def __repr__(self) -> str:
        return (f"SearchResult(best={self.best.name!r}, score={self.best.score:.4f}, "
                f"honest_score={self.best.honest_score:.4f}, candidates={len(self.candidates)}, "
                f"models={list(self.models)}, cases={len(self.cases)})")

    def _repr_html_(self) -> str:
        from .._core.display import html_table

        rows = [[i, c.name, c.score, c.honest_score, f"{c.ci[0]:.4f} - {c.ci[1]:.4f}"]
                for i, c in enumerate(self.candidates, start=1)]
        pp = "" if self.postprocessed_score is None else f"; after postprocessing {self.postprocessed_score:.4f}"
        return html_table(["rank", "candidate", "OOF Dice", "honest Dice", "CI"], rows, max_rows=10,
                          caption=f"Ensemble search over {len(self.cases)} out-of-fold cases: best "
                          f"{self.best.name}{pp}")

    def weights_file(self, candidate: Candidate | None = None) -> dict[str, Any]:
        """The ``--weights-file`` JSON object of a candidate (default the winner) for ``medfuse fuse``.

        Format ``medfuse-weights/1``: ``{"format": "medfuse-weights/1", "members": [names],
        "classes": C, "weights": [[w for class 0..C-1] per member]}`` (one row per member, in the order
        the member folders are given to ``medfuse fuse``).
        """
        c = candidate or self.best
        rows = [list(w) for w in c.class_weights] if c.class_weights is not None else \
            [[float(w)] * self.num_classes for w in c.weights or ()]
        return {"format": "medfuse-weights/1", "members": list(c.members), "classes": self.num_classes,
                "weights": rows}

    def fuse_command(self, candidate: Candidate | None = None, *, test_folders: Mapping[str, str] | None = None,
                     output: str = "OUT", postprocessing_file: str | None = "postprocessing.json",
                     weights_file: str = "weights.json") -> str:
        """The ``medfuse fuse`` command that applies a candidate (default the winner) to test predictions.

        ``test_folders`` maps model names to their test prediction folders (placeholders
        ``TEST/<model>`` otherwise).
        """
        c = candidate or self.best
        folders = [(test_folders or {}).get(m, f"TEST/{m}") for m in c.members]
        parts = ["medfuse", "fuse", *(_quote(f) for f in folders), "-o", _quote(output)]
        if c.class_weights is not None:
            parts += ["--weights-file", _quote(weights_file)]
        elif c.weights is not None and len(set(c.weights)) > 1:
            parts += ["--weights", ",".join(_fmt(w) for w in c.weights)]
        if postprocessing_file is not None and c is self.best and self.postprocessing is not None \
                and self.postprocessing.for_which_classes:
            parts += ["--postprocessing", _quote(postprocessing_file)]
        return " ".join(parts)

    def to_dict(self, *, weights_file: str = "weights.json", postprocessing_file: str = "postprocessing.json"
                ) -> dict[str, Any]:
        """JSON-ready description: ``best`` (members, weights, postprocessing, score, ...) and ``candidates``.

        ``weights_file`` and ``postprocessing_file`` are the paths the ``fuse_command`` refers to.
        """
        best = self.best.to_dict()
        best["postprocessing"] = self.postprocessing.to_dict() if self.postprocessing is not None else None
        best["postprocessed_score"] = None if self.postprocessed_score is None else _round(self.postprocessed_score)
        best["fuse_command"] = self.fuse_command(weights_file=weights_file, postprocessing_file=postprocessing_file)
        if self.best.per_class_weights:
            best["weights_file"] = self.weights_file()
        return {
            "format": "medfuse-search/1",
            "best": best,
            "candidates": [c.to_dict() for c in self.candidates],
            "models": list(self.models),
            "sources": list(self.sources),
            "num_cases": len(self.cases),
            "cases": list(self.cases),
            "num_classes": self.num_classes,
            "labels": list(self.labels),
            "notes": list(self.notes),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "settings": dict(self.settings),
            **({"strategies": self.strategies.to_dict()} if self.strategies is not None else {}),
            **({"qa": self.qa.to_dict()} if self.qa is not None else {}),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The :meth:`to_dict` object as JSON text; also written (atomically) to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            from ..io import atomic_write

            with atomic_write(Path(path)) as tmp:
                Path(tmp).write_text(text + "\n", encoding="utf-8")
        return text


def _fmt(w: float) -> str:
    return f"{w:g}"


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(str(s))
