"""``medfuse search``, the report files, and bad input (clear errors, nothing half-written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cv_fixtures as cvf
from medfuse import io
from medfuse.cli import main
from medfuse.errors import ValidationError
from medfuse.postprocess import Postprocessing
from medfuse.search import OutOfFold, search_ensembles
from medfuse.search.report import render_html, render_markdown, write_search_outputs


@pytest.fixture(scope="module")
def cv() -> cvf.CVSet:
    return cvf.make_cv_set({"3d_fullres": cvf.with_fragments(cvf.quality(0.93), [2]),
                            "2d": cvf.expert(range(1, 7)), "cascade": cvf.quality(0.5)},
                           n_cases=6, shape=(24, 48, 48), seed=11)


@pytest.fixture(scope="module")
def roots(cv: cvf.CVSet, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return cvf.write_cv_folders(cv, tmp_path_factory.mktemp("cv"))


def test_cli_writes_the_report(roots: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out"
    code = main(["search", *map(str, roots), "-o", str(out), "--bootstrap", "100", "--html", "--plots",
                 "--no-progress"])
    assert code == 0
    files = {p.name for p in out.iterdir()}
    assert {"search.json", "report.md", "report.html", "postprocessing.json", "ranking.png",
            "dice_boxplot.png"} <= files
    assert not [f for f in files if "medfuse-tmp" in f]
    data = json.loads((out / "search.json").read_text())
    best = data["best"]
    assert set(best) >= {"members", "weights", "postprocessing", "score"}
    assert set(best["members"]) <= {"3d_fullres", "2d", "cascade"}
    pp = Postprocessing.read(out / "postprocessing.json", num_classes=12)
    assert pp.to_dict() == best["postprocessing"]
    assert json.loads((out / "postprocessing.json").read_text()) == best["postprocessing"]
    report = (out / "report.md").read_text()
    assert best["fuse_command"] in report
    assert "medfuse fuse TEST/" in capsys.readouterr().out
    if best["kind"] in ("class-weights", "class-selection"):
        weights = json.loads((out / "weights.json").read_text())
        assert weights["format"] == "medfuse-weights/1" and weights["members"] == best["members"]
    for c in data["candidates"]:
        assert c["name"] in report


def test_cli_bad_input_leaves_nothing(roots: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out"
    bad_pp = tmp_path / "pp.json"
    bad_pp.write_text(json.dumps({"for_which_classes": [1], "min_valid_object_sizes": "None", "colour": "red"}))
    code = main(["search", *map(str, roots), "-o", str(out), "--postprocessing", str(bad_pp), "--no-progress"])
    assert code == 2
    assert "colour" in capsys.readouterr().err
    assert not out.exists()


def test_postprocessing_json_with_labels_out_of_range(roots: list[Path], tmp_path: Path):
    pp = tmp_path / "pp.json"
    pp.write_text(json.dumps({"for_which_classes": [1, 40], "min_valid_object_sizes": "None"}))
    with pytest.raises(ValidationError, match="40"):
        search_ensembles(roots, postprocessing=pp, n_bootstrap=0)


def test_given_postprocessing_is_scored(cv: cvf.CVSet):
    res = search_ensembles(cv.oof(), learn_weights="none", class_selection=False, n_bootstrap=0,
                           postprocessing=Postprocessing(for_which_classes=(2,)))
    assert res.postprocessing is not None and res.postprocessing.for_which_classes == (2,)
    determined = search_ensembles(cv.oof(), learn_weights="none", class_selection=False, n_bootstrap=0)
    if determined.postprocessing is not None and determined.postprocessing.for_which_classes == (2,):
        assert res.postprocessed_score == pytest.approx(determined.postprocessed_score, abs=1e-12)
    assert res.postprocessed_score is not None and res.postprocessed_score > res.best.score


def test_output_inside_a_model_folder_is_refused(roots: list[Path]):
    code = main(["search", *map(str, roots), "-o", str(roots[0] / "out"), "--no-progress"])
    assert code == 2
    assert not (roots[0] / "out").exists()


def test_report_renders_without_postprocessing(cv: cvf.CVSet, tmp_path: Path):
    res = search_ensembles(cv.oof(), postprocessing="none", n_bootstrap=0)
    md = render_markdown(res, label_names={1: "kidney_left"})
    assert "Not determined" in md and "1 kidney_left" in md
    page = render_html(md)
    assert page.count("<table>") == md.count("|---|---|") or "<table>" in page
    written = write_search_outputs(res, tmp_path / "o")
    assert {p.name for p in written} >= {"search.json", "report.md"}
    assert not (tmp_path / "o" / "postprocessing.json").exists()


# ------------------------------------------------------------------------------------------------------
# bad input (in memory)
# ------------------------------------------------------------------------------------------------------


def _oof(refs, preds, **kw) -> OutOfFold:
    return OutOfFold.from_arrays(refs, preds, **kw)


def _soft(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float16)[labels].transpose(3, 0, 1, 2).copy()


def test_all_zero_scores():
    refs = {f"c{i}": np.pad(np.ones((2, 2, 2), np.uint8), 1) for i in range(3)}
    preds = {"m": {c: _soft(np.zeros_like(r)) for c, r in refs.items()}}
    with pytest.raises(ValidationError, match="every candidate scores 0"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_nan_scores():
    refs = {f"c{i}": np.zeros((4, 4, 4), np.uint8) for i in range(3)}
    preds = {"m": {c: _soft(r) for c, r in refs.items()}}
    with pytest.raises(ValidationError, match="every score is NaN"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_nan_probabilities():
    refs = {f"c{i}": np.pad(np.ones((2, 2, 2), np.uint8), 1) for i in range(3)}
    preds = {"m": {c: _soft(r) for c, r in refs.items()}, "n": {c: _soft(r) for c, r in refs.items()}}
    preds["n"]["c1"][1, 0, 0, 0] = np.nan
    with pytest.raises(ValidationError, match=r"case 'c1': model 'n' class 1 holds 1 non-finite value\(s\) \(NaN"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_reference_labels_beyond_the_models():
    refs = {f"c{i}": np.pad(np.full((2, 2, 2), 1 + i, np.uint8), 1) for i in range(4)}
    preds = {"m": {c: _soft(np.minimum(r, 2)) for c, r in refs.items()}}
    with pytest.raises(ValidationError, match=r"case 'c2': the reference has labels \[3\]"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_members_with_different_class_counts():
    refs = {"c0": np.pad(np.ones((2, 2, 2), np.uint8), 1)}
    preds = {"m": {"c0": _soft(refs["c0"], 3)}, "n": {"c0": _soft(refs["c0"], 4)}}
    with pytest.raises(ValidationError, match="4 probability channels"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_too_many_models():
    refs = {"c0": np.pad(np.ones((2, 2, 2), np.uint8), 1)}
    preds = {f"m{i}": {"c0": _soft(refs["c0"])} for i in range(4)}
    with pytest.raises(ValidationError, match="max_members"):
        search_ensembles(_oof(refs, preds), max_members=3)


@pytest.mark.parametrize(("option", "value"), [("learn_weights", "all"), ("confidence", 1.5),
                                               ("connectivity", 8), ("n_bootstrap", -1),
                                               ("tie_tolerance", -0.1), ("labels", [0]), ("postprocessing", 3)])
def test_bad_options(option, value):
    refs = {"c0": np.pad(np.ones((2, 2, 2), np.uint8), 1)}
    preds = {"m": {"c0": _soft(refs["c0"])}}
    with pytest.raises(ValidationError, match=option if option != "labels" else "labels"):
        search_ensembles(_oof(refs, preds), **{option: value})


def test_prediction_box_that_does_not_fit():
    refs = {"c0": np.pad(np.ones((2, 2, 2), np.uint8), 1)}
    preds = {"m": {"c0": _soft(np.ones((2, 2, 2), np.uint8))}}
    with pytest.raises(ValidationError, match="spatial shape"):
        search_ensembles(_oof(refs, preds), n_bootstrap=0)


def test_fuse_folders_with_the_winner_reproduces_its_oof_score(roots: list[Path], cv: cvf.CVSet, tmp_path: Path):
    """End to end: the winner's members, weights and postprocessing, applied by medfuse.fuse_folders to
    each fold's validation predictions, give the OOF score the search reported."""
    from medfuse.folders import fuse_folders
    from medfuse.metrics import dice

    res = search_ensembles(roots, n_bootstrap=0)
    best = res.best
    out = tmp_path / "search"
    write_search_outputs(res, out)
    weights = res.weights_file()["weights"] if best.class_weights is not None else list(best.weights or ())
    pp = out / "postprocessing.json"
    rows = []
    for k in sorted(set(cv.folds.values())):
        members = [next(r for r in roots if r.name == m) / f"fold_{k}" / "validation_raw" for m in best.members]
        fused = tmp_path / f"fused_{k}"
        fuse_folders(members, fused, weights=weights, postprocessing=pp, progress=False)
        for case in sorted(c for c, f in cv.folds.items() if f == k):
            labels, _ = io.read_nifti(fused / f"{case}.nii.gz")
            d = dice(cv.phantoms[case].labels, labels, labels=list(range(1, 12)), empty="nan")
            rows.append([d[c] for c in range(1, 12)])
    per_case = np.asarray(rows)
    per_label = [np.nanmean(col) for col in per_case.T if np.any(~np.isnan(col))]
    expected = res.postprocessed_score if res.postprocessed_score is not None else best.score
    assert float(np.mean(per_label)) == pytest.approx(expected, abs=1e-9)
