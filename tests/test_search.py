"""search_ensembles on synthetic cross-validation sets whose right answer is known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import cv_fixtures as cvf
from medfuse.metrics import dice
from medfuse.search import Candidate, OutOfFold, SearchResult, search_ensembles

FAST = {"n_bootstrap": 200}


def _fused(cv: cvf.CVSet, case: str, weights: np.ndarray) -> np.ndarray:
    """Numpy twin: argmax of the per-class-normalised weighted mean of full-size float64 probabilities."""
    probs = np.stack([cv.predictions[m][case].astype(np.float64) for m in cv.models])  # (M, C, ...)
    w = np.asarray(weights, np.float64)
    total = w.sum(axis=0)
    values = np.einsum("mc...,mc->c...", probs, w) / np.where(total > 0, total, 1.0).reshape(-1, 1, 1, 1)
    return values.argmax(axis=0)


def _twin_scores(cv: cvf.CVSet, weights: np.ndarray, labels: list[int]) -> tuple[float, np.ndarray]:
    rows = []
    for case in cv.cases:
        d = dice(cv.phantoms[case].labels, _fused(cv, case, weights), labels=labels, empty="nan")
        rows.append([d[k] for k in labels])
    per_case = np.asarray(rows, dtype=np.float64)
    per_label = np.array([np.nanmean(col) if np.any(~np.isnan(col)) else np.nan for col in per_case.T])
    return float(np.nanmean(per_label)), per_label


# ------------------------------------------------------------------------------------------------------
# sets
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_bad() -> cvf.CVSet:
    return cvf.make_cv_set({"good": cvf.quality(0.9), "fair": cvf.quality(0.85), "bad": cvf.quality(0.45)},
                           n_cases=10, seed=1)


@pytest.fixture(scope="module")
def one_bad_result(one_bad: cvf.CVSet) -> SearchResult:
    return search_ensembles(one_bad.oof(), **FAST)


@pytest.fixture(scope="module")
def experts() -> cvf.CVSet:
    return cvf.make_cv_set({"abdomen": cvf.expert(range(1, 7)), "vessels": cvf.expert(range(7, 12))},
                           n_cases=10, seed=2)


@pytest.fixture(scope="module")
def fragments() -> cvf.CVSet:
    return cvf.make_cv_set({"a": cvf.with_fragments(cvf.quality(0.95), [2, 7]),
                            "b": cvf.with_fragments(cvf.quality(0.93), [2, 7])}, n_cases=8, seed=3)


# ------------------------------------------------------------------------------------------------------
# the answers known by construction
# ------------------------------------------------------------------------------------------------------


def test_clearly_worse_model_is_dropped(one_bad_result: SearchResult):
    res = one_bad_result
    assert "bad" not in res.best.members
    assert set(res.best.members) == {"good", "fair"}
    subsets = {c.members: c for c in res.candidates if c.kind == "subset"}
    assert len(subsets) == 7
    assert subsets[("good", "fair")].score > subsets[("good", "fair", "bad")].score + 0.02
    assert subsets[("bad",)].score < 0.5 < subsets[("good",)].score
    # candidates are ranked by their ranking score
    ranks = [c.ranking_score for c in res.candidates]
    assert ranks == sorted(ranks, reverse=True)


def test_fitted_candidates_show_their_overfitting(one_bad_result: SearchResult):
    fitted = [c for c in one_bad_result.candidates if c.kind != "subset"]
    assert {c.kind for c in fitted} == {"member-weights", "class-selection", "class-weights"}
    best_subset = max(c.score for c in one_bad_result.candidates if c.kind == "subset")
    for c in fitted:
        assert math.isfinite(c.honest_score)
        if c.kind != "class-selection":  # weights start at the best subset: never below it in-sample
            assert c.score >= best_subset - 1e-12
    per_class = next(c for c in fitted if c.kind == "class-weights")
    assert per_class.score > per_class.honest_score  # fitted on the same cases: optimistic in-sample


def test_class_experts_need_per_class_weights(experts: cvf.CVSet):
    res = search_ensembles(experts.oof(), postprocessing="none", **FAST)
    assert res.best.kind == "class-weights"
    assert res.best.members == ("abdomen", "vessels")
    best_subset = max(c.score for c in res.candidates if c.kind == "subset")
    assert res.best.honest_score > best_subset + 0.1
    assert res.best.class_weights is not None and len(res.best.class_weights) == 2
    W = np.asarray(res.best.class_weights)
    # each label leans on its expert
    assert np.all(W[0, 1:7] >= W[1, 1:7]) and np.all(W[1, 7:12] >= W[0, 7:12])
    wf = res.weights_file()
    assert wf["members"] == ["abdomen", "vessels"] and np.asarray(wf["weights"]).shape == (2, 12)
    assert "--weights-file" in res.fuse_command()


def test_fragments_are_removed_for_those_labels_only(fragments: cvf.CVSet):
    res = search_ensembles(fragments.oof(), learn_weights="none", class_selection=False, **FAST)
    pp = res.postprocessing
    assert pp is not None
    assert pp.for_which_classes == (2, 7)
    assert res.postprocessed_score is not None and res.postprocessed_score > res.best.score
    for c in (2, 7):
        assert pp.dc_per_class_pp_per_class[c] > pp.dc_per_class_raw[c]
    assert "--postprocessing" in res.fuse_command()


def test_identical_models_tie_to_the_simplest(one_bad: cvf.CVSet):
    cv = cvf.identical(cvf.CVSet(one_bad.phantoms, {"good": one_bad.predictions["good"]}, one_bad.folds),
                       "good", ["copy1", "copy2"])
    res = search_ensembles(cv.oof(), postprocessing="none", **FAST)
    assert res.best.members == ("good",)
    assert res.best.kind == "subset"
    scores = {c.score for c in res.candidates}
    assert max(scores) - min(scores) < 1e-12  # every candidate is the same fusion
    assert res.fuse_command() == "medfuse fuse TEST/good -o OUT"


# ------------------------------------------------------------------------------------------------------
# the numbers are right
# ------------------------------------------------------------------------------------------------------


def test_scores_equal_an_independent_fusion_and_dice(one_bad: cvf.CVSet, one_bad_result: SearchResult):
    labels = list(range(1, 12))
    checked = 0
    for cand in one_bad_result.candidates:
        if cand.kind == "subset" and cand.n_members == 1:
            continue
        score, per_label = _twin_scores(one_bad, cand.matrix, labels)
        assert cand.score == pytest.approx(score, abs=1e-12)
        np.testing.assert_allclose(cand.per_class_dice, per_label, atol=1e-12)
        checked += 1
    assert checked == 7


def test_cropped_and_full_members_give_the_same_result(one_bad: cvf.CVSet, one_bad_result: SearchResult):
    full = search_ensembles(one_bad.oof(crop=False), learn_weights="none", class_selection=False,
                            postprocessing="none", **FAST)
    mine = {c.members: c.score for c in one_bad_result.candidates if c.kind == "subset"}
    assert {c.members: c.score for c in full.candidates} == pytest.approx(mine, abs=1e-12)


def test_bootstrap_intervals_bracket_the_scores(one_bad_result: SearchResult):
    for c in one_bad_result.candidates:
        lo, hi = c.ci
        assert lo <= c.score <= hi
        assert hi - lo < 0.3


def test_hard_members_count_as_one_hot(one_bad: cvf.CVSet):
    res = search_ensembles(one_bad.oof(hard=["fair"]), learn_weights="none", class_selection=False,
                           postprocessing="none", n_bootstrap=0)
    by = {c.members: c for c in res.candidates}
    hard_fair = np.stack([np.eye(12)[one_bad.predictions["fair"][c].argmax(0)].transpose(3, 0, 1, 2)
                          for c in one_bad.cases])
    cv = cvf.CVSet(one_bad.phantoms, {"good": one_bad.predictions["good"],
                                      "fair": dict(zip(one_bad.cases, hard_fair, strict=True)),
                                      "bad": one_bad.predictions["bad"]}, one_bad.folds)
    w = np.zeros((3, 12))
    w[[0, 1]] = 1
    score, _ = _twin_scores(cv, w, list(range(1, 12)))
    assert by[("good", "fair")].score == pytest.approx(score, abs=1e-12)


def test_thinned_contested_voxels_are_rescored_exactly(one_bad: cvf.CVSet, one_bad_result: SearchResult):
    res = search_ensembles(one_bad.oof(), memory_limit_mb=0.05, **FAST)
    assert any("memory_limit_mb" in n for n in res.notes)
    subsets = {c.members: c.score for c in res.candidates if c.kind == "subset"}
    assert subsets == {c.members: c.score for c in one_bad_result.candidates if c.kind == "subset"}
    for c in res.candidates:
        if c.kind != "subset":
            assert c.score == pytest.approx(_twin_scores(one_bad, c.matrix, list(range(1, 12)))[0], abs=1e-12)
    assert res.postprocessing is not None


def test_labels_restrict_the_score(one_bad: cvf.CVSet):
    res = search_ensembles(one_bad.oof(), labels=[3, 2], learn_weights="none", postprocessing="none",
                           n_bootstrap=0)
    assert res.labels == (3, 2)
    c = next(c for c in res.candidates if c.members == ("good", "fair"))
    score, per_label = _twin_scores(one_bad, c.matrix, [3, 2])
    assert c.score == pytest.approx(score, abs=1e-12)
    assert c.dice_of(2) == pytest.approx(per_label[1], abs=1e-12)


def test_single_fold_gets_random_honest_folds(one_bad: cvf.CVSet):
    cv = cvf.CVSet(one_bad.phantoms, {m: one_bad.predictions[m] for m in ("good", "fair")},
                   dict.fromkeys(one_bad.folds, 0))
    res = search_ensembles(cv.oof(), learn_weights="members", class_selection=False, postprocessing="none",
                           n_bootstrap=0)
    assert any("random 5-fold" in n for n in res.notes)
    assert all(math.isfinite(c.honest_score) for c in res.candidates)


# ------------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------------


def test_result_json(one_bad_result: SearchResult, tmp_path):
    path = tmp_path / "search.json"
    text = one_bad_result.to_json(path)
    data = json.loads(path.read_text())
    assert data == json.loads(text)
    best = data["best"]
    assert best["members"] == list(one_bad_result.best.members)
    assert best["score"] == pytest.approx(one_bad_result.best.score, abs=1e-6)
    assert best["postprocessing"] == one_bad_result.postprocessing.to_dict()
    assert len(data["candidates"]) == len(one_bad_result.candidates)
    assert set(best["per_class_dice"]) == {str(k) for k in range(1, 12)}
    assert best["fuse_command"].startswith("medfuse fuse ")


def test_candidate_is_frozen(one_bad_result: SearchResult):
    c: Candidate = one_bad_result.best
    with pytest.raises(AttributeError):
        c.score = 1.0  # type: ignore[misc]
    assert c.name == " + ".join(c.members) or "(" in c.name


def test_out_of_fold_from_arrays_checks_cases():
    ref = {"a": np.zeros((4, 4, 4), np.uint8)}
    with pytest.raises(Exception, match="lacks 1 cases"):
        OutOfFold.from_arrays(ref, {"m": {}})


def test_fuse_probabilities_reproduces_every_candidate(one_bad: cvf.CVSet, one_bad_result: SearchResult):
    """What `medfuse fuse` computes with a candidate's weights scores what the search reported."""
    from medfuse.fusion import fuse_probabilities

    labels = list(range(1, 12))
    for cand in one_bad_result.candidates:
        weights = np.asarray(cand.class_weights if cand.class_weights is not None else cand.weights)
        rows = []
        for case in one_bad.cases:
            fused = fuse_probabilities([one_bad.predictions[m][case] for m in cand.members], weights=weights)
            d = dice(one_bad.phantoms[case].labels, fused, labels=labels, empty="nan")
            rows.append([d[k] for k in labels])
        per_case = np.asarray(rows)
        np.testing.assert_allclose(per_case, cand.case_dice, atol=1e-12)


def test_members_with_different_boxes(one_bad: cvf.CVSet):
    """A cropped member (v1) and a full-size one (v2) fused over the union of their boxes."""
    from medfuse.geometry import crop_to_box

    preds = {"good": {}, "fair": {}}
    boxes = {"good": {}, "fair": {}}
    for c in one_bad.cases:
        box = one_bad.phantoms[c].crop_bbox
        preds["good"][c] = np.ascontiguousarray(crop_to_box(one_bad.predictions["good"][c], box))
        boxes["good"][c] = box
        preds["fair"][c] = one_bad.predictions["fair"][c].astype(np.float32)  # full size, float32
    oof = OutOfFold.from_arrays({c: ph.labels for c, ph in one_bad.phantoms.items()}, preds, folds=one_bad.folds,
                                boxes=boxes)
    res = search_ensembles(oof, learn_weights="none", class_selection=False, postprocessing="none",
                           n_bootstrap=0)
    pair = next(c for c in res.candidates if c.members == ("good", "fair"))
    cv = cvf.CVSet(one_bad.phantoms, {m: one_bad.predictions[m] for m in ("good", "fair")}, one_bad.folds)
    score, _ = _twin_scores(cv, np.ones((2, 12)), list(range(1, 12)))
    assert pair.score == pytest.approx(score, abs=1e-12)
