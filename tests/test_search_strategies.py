"""search_ensembles(strategies=...) and `medfuse search --strategies`: every equal-weight subset scored under
each strategy by one scorer, checked against fusions and Dice computed here with numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse import synthetic
from medfuse.errors import ValidationError
from medfuse.search import search_ensembles
from medfuse.search.oof import OutOfFold
from medfuse.search.strategies import check_strategies

C = 4


@pytest.fixture(scope="module")
def oof():
    """Four cases; models: good, good-ish, poor, and one that never predicts label 2 (missing organ)."""
    phantoms = {f"c{i}": synthetic.phantom((12, 24, 24), num_labels=C - 1, seed=40 + i) for i in range(4)}
    preds: dict[str, dict[str, np.ndarray]] = {m: {} for m in ("good", "fair", "poor", "no2")}
    for i, (case, ph) in enumerate(phantoms.items()):
        for j, (m, q) in enumerate([("good", 0.9), ("fair", 0.8), ("poor", 0.55), ("no2", 0.85)]):
            p = synthetic.simulate_probabilities(ph, quality=q, seed=100 * i + j).astype(np.float32)
            if m == "no2":
                p[0] += p[2]
                p[2] = 0.0
            preds[m][case] = p
    refs = {c: ph.labels for c, ph in phantoms.items()}
    return OutOfFold.from_arrays(refs, preds, folds={c: i % 2 for i, c in enumerate(phantoms)}), preds, refs


def _dice_score(fused: dict[str, np.ndarray], refs: dict[str, np.ndarray]) -> float:
    per_label = []
    for k in range(1, C):
        vals = []
        for case, r in refs.items():
            a, b = r == k, fused[case] == k
            if a.any() or b.any():
                vals.append(2 * np.sum(a & b) / (a.sum() + b.sum()))
        if vals:
            per_label.append(np.mean(vals))
    return float(np.mean(per_label))


def test_every_subset_under_every_strategy_matches_numpy(oof):
    data, preds, refs = oof
    result = search_ensembles(data, strategies=("mean", "log", "vote", "staple"), n_bootstrap=0,
                              learn_weights="none", class_selection=False, postprocessing="none")
    comp = result.strategies
    assert comp is not None and {b.strategy for b in comp.best} == {"mean", "log", "vote", "staple"}
    models = list(preds)
    for size in (1, 2, 3):
        for subset in itertools.combinations(models, size):
            name = "+".join(subset)
            ps = {c: [preds[m][c] for m in subset] for c in refs}
            argmax = {c: [p.argmax(0) for p in ps[c]] for c in refs}
            want = {
                "mean": {c: ref.fuse_probabilities(ps[c]) for c in refs},
                "log": {c: ref.fuse_probabilities(ps[c], space="log") for c in refs},
                "vote": {c: ref.majority_vote(argmax[c]) for c in refs},
            }
            for s, fused in want.items():
                assert comp.scores[s][name] == pytest.approx(_dice_score(fused, refs), abs=1e-9), (s, name)
    # the winner and its margin are what the scores say
    best = {s: max(d.values()) for s, d in comp.scores.items()}
    order = sorted(best, key=lambda s: -best[s])
    assert comp.winner.strategy == order[0]
    assert comp.margin == pytest.approx(best[order[0]] - best[order[1]])
    assert comp.winner.strategy in _strategy_note(result) and "wins" in _strategy_note(result)
    # the mean strategy agrees with the main search's subset candidates
    subsets = {"+".join(c.members): c.score for c in result.candidates if c.kind == "subset"}
    for name, score in comp.scores["mean"].items():
        assert score == pytest.approx(subsets[name], abs=1e-6)
    d = result.to_dict()
    assert d["strategies"]["winner"] == comp.winner.strategy and d["settings"]["strategies"] == [
        "mean", "log", "vote", "staple"]


def test_staple_goes_through_the_public_function(oof, monkeypatch):
    import medfuse.fusion.staple as staple_module

    data, _, _ = oof
    calls = []
    real = staple_module.staple

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(staple_module, "staple", spy)
    result = search_ensembles(data, strategies=("vote", "staple"), n_bootstrap=0, learn_weights="none",
                              class_selection=False, postprocessing="none")
    assert result.strategies is not None and calls and min(calls) == 2
    assert "mean" not in result.strategies.scores


def test_default_runs_no_strategy_pass(oof):
    data, _, _ = oof
    result = search_ensembles(data, n_bootstrap=0, learn_weights="none", class_selection=False,
                              postprocessing="none")
    assert result.strategies is None and "strategies" not in result.to_dict()


@pytest.mark.parametrize("bad", [(), ("mean", "mean"), ("median",), 3])
def test_bad_strategies(bad):
    with pytest.raises(ValidationError, match="strategies"):
        check_strategies(bad)


def test_cli_strategies(oof, tmp_path, capsys):
    from medfuse.cli.main import main

    code = main(["search", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--strategies", "mean,geometric"])
    assert code != 0
    assert "--strategies" in capsys.readouterr().err


def test_learned_weightings_are_scored_under_each_strategy_with_honest_folds(oof, monkeypatch):
    """Each learned weighting is scored under mean, log and vote (member weights) with the weights fitted
    without the case's fold: the mean rows equal the main search's honest scores, the log and vote rows
    equal numpy fusions with the same per-case weights."""
    import medfuse.search.api as api

    data, preds, refs = oof
    seen = {}
    real = api.compare_strategies

    def spy(*args, **kwargs):
        seen.update(kwargs["weightings"])
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "compare_strategies", spy)
    result = search_ensembles(data, strategies=("mean", "log", "vote", "staple"), n_bootstrap=0,
                              learn_weights="classes", class_selection=True, postprocessing="none")
    comp = result.strategies
    assert comp is not None
    rows = {(b.strategy, b.weighting): b for b in comp.weighted}
    kinds = {"member-weights", "class-selection", "class-weights"}
    assert set(seen) == kinds
    assert set(rows) == {(s, k) for s in ("mean", "log") for k in kinds} | {("vote", "member-weights")}
    # no STAPLE row with weights, and every case has the weights of the folds that left it out
    cases = list(refs)
    for W in seen.values():
        assert W.shape == (len(cases), len(preds), C) and np.isfinite(W).all()
    honest = {c.kind: c.honest_score for c in result.candidates if c.kind != "subset"}
    for kind in kinds:
        assert rows[("mean", kind)].score == pytest.approx(honest[kind], abs=1e-6), kind
    models = list(preds)
    W = seen["member-weights"]
    for strategy in ("log", "vote"):
        fused = {}
        for i, case in enumerate(cases):
            w = W[i, :, 0]
            used = [m for m in range(len(models)) if w[m] > 0]
            ps = [preds[models[m]][case] for m in used]
            fused[case] = (ref.fuse_probabilities(ps, weights=w[used], space="log") if strategy == "log"
                           else ref.majority_vote([p.argmax(0) for p in ps], weights=w[used]))
        assert rows[(strategy, "member-weights")].score == pytest.approx(_dice_score(fused, refs), abs=1e-9)
    # the overall best row is the best of subsets and weightings, and the report names it
    everything = [*comp.best, *comp.weighted]
    assert comp.overall.score == max(r.score for r in everything)
    assert comp.overall.label in _strategy_note(result)
    from medfuse.search.report import render_markdown

    text = render_markdown(result)
    assert "Learned weightings under each strategy" in text and comp.overall.label in text
    assert result.to_dict()["strategies"]["overall"]["weighting"] == comp.overall.weighting


def _strategy_note(result) -> str:
    return next(n for n in result.notes if n.startswith("strategy "))
