"""search_ensembles(qa=True): the winner's per-case QA score next to its fused Dice on the OOF cases, checked
against case_qa of fuse_probabilities(return_uncertainty=True) on the same members, and scipy's Spearman."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medfuse import case_qa, fuse_probabilities, synthetic
from medfuse.errors import ValidationError
from medfuse.search import search_ensembles
from medfuse.search.oof import OutOfFold
from medfuse.search.report import render_markdown

C = 4


@pytest.fixture(scope="module")
def oof():
    """Eight cases of varying difficulty; three models of different quality."""
    phantoms = {f"c{i}": synthetic.phantom((10, 20, 20), num_labels=C - 1, seed=70 + i) for i in range(8)}
    preds: dict[str, dict[str, np.ndarray]] = {m: {} for m in ("a", "b", "c")}
    for i, (case, ph) in enumerate(phantoms.items()):
        for j, m in enumerate(preds):
            q = 0.95 - 0.05 * j - 0.04 * i
            preds[m][case] = synthetic.simulate_probabilities(ph, quality=q, seed=10 * i + j).astype(np.float32)
    refs = {c: ph.labels for c, ph in phantoms.items()}
    return OutOfFold.from_arrays(refs, preds, folds={c: i % 2 for i, c in enumerate(phantoms)}), preds, refs


def test_qa_scores_and_spearman_of_the_winner(oof):
    data, preds, refs = oof
    result = search_ensembles(data, n_bootstrap=0, learn_weights="none", class_selection=False,
                              postprocessing="none")
    qa = result.qa
    assert qa is not None and qa.cases == tuple(refs)
    best = result.best
    used = [m for m in best.members]
    for case, score in zip(qa.cases, qa.qa_scores, strict=True):
        labels, maps = fuse_probabilities([preds[m][case] for m in used], return_uncertainty=True)
        assert score == pytest.approx(case_qa(labels, maps, case=case).qa_score, abs=1e-6)
    dice = np.nanmean(best.case_dice, axis=1)
    np.testing.assert_allclose(qa.dice, dice)
    rho = stats.spearmanr(qa.qa_scores, 1.0 - dice).statistic
    assert qa.calibration.spearman == pytest.approx(rho)
    assert qa.calibration.low <= qa.calibration.spearman <= qa.calibration.high
    # the worst case by QA score is listed first in the report, and in the notes and the JSON
    text = render_markdown(result)
    assert "## QA score on the out-of-fold cases" in text and qa.worst(1)[0][0] in text
    assert any(n.startswith("QA score on the OOF cases") for n in result.notes)
    assert result.to_dict()["qa"]["calibration"]["spearman"] == pytest.approx(rho)


def test_qa_can_be_skipped_and_is_checked(oof):
    data, _, _ = oof
    result = search_ensembles(data, n_bootstrap=0, learn_weights="none", class_selection=False,
                              postprocessing="none", qa=False)
    assert result.qa is None and "qa" not in result.to_dict()
    with pytest.raises(ValidationError, match="`qa`"):
        search_ensembles(data, n_bootstrap=0, learn_weights="none", class_selection=False, postprocessing="none",
                         qa="yes")


def test_qa_json_is_valid_when_the_correlation_is_undefined():
    """Identical cases (the same Dice): Spearman is NaN, and the JSON says null (not NaN); two cases: no
    correlation at all, the scores are still listed."""
    import json

    ph = synthetic.phantom((8, 12, 12), num_labels=2, seed=1)
    p = synthetic.simulate_probabilities(ph, quality=0.9, seed=1).astype(np.float32)
    names = ("a", "b", "c")
    data = OutOfFold.from_arrays({c: ph.labels for c in names}, {m: {c: p for c in names} for m in ("m", "n")},
                                 folds={c: i % 2 for i, c in enumerate(names)})
    result = search_ensembles(data, n_bootstrap=0, learn_weights="none", class_selection=False,
                              postprocessing="none")
    assert result.qa is not None and result.qa.calibration is not None
    assert np.isnan(result.qa.calibration.spearman)
    assert '"spearman": null' in json.dumps(result.to_dict(), allow_nan=False)
    two = OutOfFold.from_arrays({c: ph.labels for c in names[:2]}, {m: {c: p for c in names[:2]} for m in "mn"},
                                folds={"a": 0, "b": 1})
    result = search_ensembles(two, n_bootstrap=0, learn_weights="none", class_selection=False,
                              postprocessing="none")
    assert result.qa is not None and result.qa.calibration is None and len(result.qa.qa_scores) == 2
    assert "not computed" in render_markdown(result)
    json.dumps(result.to_dict(), allow_nan=False)
