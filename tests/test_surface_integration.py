"""Boundary metrics wherever Dice is: evaluate_folder(surface=True), medfuse evaluate --surface, box plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

import cv_fixtures as cvf
import medfuse
from medfuse import io
from medfuse.cli import main
from medfuse.errors import ValidationError
from medfuse.folders import evaluate_folder
from medfuse.geometry import Geometry
from medfuse.search import search_ensembles
from medfuse.search.report import render_markdown
from medfuse.search.stats import mean_score

SHAPE = (12, 20, 18)
SPACING = (2.5, 0.8, 1.1)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _blob(rng: np.random.Generator, value: int, out: np.ndarray) -> None:
    z, y, x = (int(rng.integers(2, s - 6)) for s in out.shape)
    dz, dy, dx = (int(rng.integers(2, 5)) for _ in range(3))
    out[z:z + dz, y:y + dy, x:x + dx] = value


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Three cases with labels 1-3; case c1's prediction misses label 2; label 3 only in c0 (both maps)."""
    rng = np.random.default_rng(11)
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    geometry = Geometry(SHAPE, SPACING, (0.0, 0.0, 0.0), IDENTITY)
    arrays = {}
    for i in range(3):
        ref = np.zeros(SHAPE, np.uint8)
        for value in (1, 2):
            _blob(rng, value, ref)
        if i == 0:
            ref[0:2, 0:3, 0:3] = 3
        pred = np.roll(ref, shift=(int(rng.integers(0, 2)), 1, 0), axis=(0, 1, 2))
        if i == 1:
            pred[pred == 2] = 0
        io.write_nifti(refs / f"c{i}.nii.gz", ref, geometry)
        io.write_nifti(preds / f"c{i}.nii.gz", pred, geometry)
        arrays[f"c{i}"] = (ref, pred)
    return refs, preds, arrays


def test_evaluate_folder_surface_equals_surface_metrics_per_case(pair, tmp_path):
    refs, preds, arrays = pair
    ev = evaluate_folder(refs, preds, surface=True, tolerance_mm=(1.0, 2.0), progress=False,
                         json_path=tmp_path / "summary.json", csv_path=tmp_path / "cases.csv")
    s = ev.surface
    assert s is not None and s.names == ("HD", "HD95", "ASSD", "MASD", "NSD", "NSD@2")
    for case, (ref, pred) in arrays.items():
        spacing = io.read_nifti(refs / f"{case}.nii.gz")[1].spacing  # as stored (float32 in NIfTI)
        want = medfuse.surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=(1.0, 2.0))
        for k in ev.labels:
            got = s.per_case[case][k]
            if k not in want:  # absent from both maps
                assert all(math.isnan(v) for v in got.values())
                continue
            w = want[k]
            assert got["HD"] == w.hd and got["HD95"] == w.hd95 and got["ASSD"] == w.assd and got["MASD"] == w.masd
            assert (got["NSD"], got["NSD@2"]) == w.nsd
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary["metric_per_case"][0]["metrics"]["1"]
    assert {"Dice", "HD", "HD95", "ASSD", "MASD", "NSD", "NSD@2"} <= set(entry)
    assert summary["mean"]["1"]["HD95"] == pytest.approx(np.mean([s.per_case[c][1]["HD95"] for c in arrays]))
    assert summary["surface"]["tolerance_mm"] == [1.0, 2.0]
    with open(tmp_path / "cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"dice", "hd", "hd95", "assd", "masd", "nsd", "nsd@2"} <= set(rows[0])
    row = next(r for r in rows if r["case"] == "c0" and r["label"] == "1")
    assert float(row["hd95"]) == pytest.approx(s.per_case["c0"][1]["HD95"])


def test_means_follow_the_empty_rules(pair):
    refs, preds, arrays = pair
    s = evaluate_folder(refs, preds, surface=True, progress=False).surface
    assert s is not None
    # label 2 is missing from c1's prediction: inf there, and its mean is inf, never a finite mean
    assert math.isinf(s.per_case["c1"][2]["HD"]) and s.per_case["c1"][2]["NSD"] == 0.0
    assert math.isinf(s.mean[2]["HD"]) and math.isinf(s.mean[2]["ASSD"]) and s.inf_cases[2] == 1
    assert s.mean[2]["NSD"] == pytest.approx(np.mean([s.per_case[c][2]["NSD"] for c in arrays]))
    assert math.isinf(s.foreground_mean["HD95"])
    # label 3 is only in c0 (both maps): NaN elsewhere, left out of its mean
    assert math.isnan(s.per_case["c1"][3]["HD"]) and s.mean[3]["HD"] == s.per_case["c0"][3]["HD"]
    assert math.isfinite(s.mean[1]["HD"]) and s.inf_cases[1] == 0


def test_surface_of_regions_uses_the_merged_masks(pair):
    refs, preds, arrays = pair
    ev = evaluate_folder(refs, preds, regions=[(1, 2), (2,)], surface=True, progress=False)
    assert ev.labels == ((1, 2), (2,))
    for case, (ref, pred) in arrays.items():
        spacing = io.read_nifti(refs / f"{case}.nii.gz")[1].spacing
        want = medfuse.surface_metrics(np.isin(ref, (1, 2)), np.isin(pred, (1, 2)), spacing_mm=spacing)[1]
        assert ev.surface is not None and ev.surface.per_case[case][(1, 2)]["HD95"] == want.hd95
        assert ev.summary.per_case[case][(1, 2)].dice == medfuse.dice(np.isin(ref, (1, 2)), np.isin(pred, (1, 2)))


def test_surface_refuses_ignore_label_and_bad_options(pair):
    refs, preds, _ = pair
    with pytest.raises(ValidationError, match="ignore_label"):
        evaluate_folder(refs, preds, surface=True, ignore_label=3, progress=False)
    with pytest.raises(ValidationError, match="percentile"):
        evaluate_folder(refs, preds, surface=True, percentile=120, progress=False)
    with pytest.raises(ValidationError, match="tolerance_mm"):
        evaluate_folder(refs, preds, surface=True, tolerance_mm=-1, progress=False)


def test_cli_surface_json_to_stdout_table_and_plots(pair, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    refs, preds, _ = pair
    plot = tmp_path / "dice.png"
    assert main(["evaluate", str(refs), str(preds), "--surface", "--tolerance", "1,2", "--json", "-",
                 "--plot", str(plot), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # stdout holds the JSON only
    assert "NSD@2" in data["mean"]["1"] and data["foreground_mean"]["HD"] == math.inf
    assert "HD95 (mm)" in err and "foreground mean" in err and "absent from exactly one map" in err
    for name in ("hd", "hd95", "assd", "masd", "nsd", "nsd@2"):
        assert (tmp_path / f"dice_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.exists()


def test_cli_surface_flags_in_messages(pair, capsys):
    refs, preds, _ = pair
    assert main(["evaluate", str(refs), str(preds), "--surface", "--ignore-label", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`--surface`" in err and "`--ignore-label`" in err


# ------------------------------------------------------------------------------------------------------
# search: criterion="dice" | "nsd" | "dice+nsd"
# ------------------------------------------------------------------------------------------------------

FAST = {"n_bootstrap": 0, "learn_weights": "none", "class_selection": False}


@pytest.fixture(scope="module")
def cv() -> cvf.CVSet:
    return cvf.make_cv_set({"good": cvf.quality(0.9), "bad": cvf.quality(0.5)}, n_cases=4, shape=(16, 40, 40), seed=4)


def _nsd_of_single_model(cv: cvf.CVSet, model: str, labels: tuple[int, ...]) -> float:
    rows = []
    for case in cv.cases:
        ph = cv.phantoms[case]
        pred = cv.predictions[model][case].argmax(axis=0)
        r = medfuse.surface_metrics(ph.labels, pred, spacing_mm=ph.spacing, tolerance_mm=1.0, labels=labels)
        rows.append([r[k].nsd for k in labels])
    return float(mean_score(np.asarray(rows, np.float64)))


def test_search_by_nsd_scores_every_candidate_both_ways(cv):
    res = search_ensembles(cv.oof(), criterion="nsd", postprocessing="none", **FAST)
    assert res.settings["criterion"] == "nsd"
    for c in res.candidates:
        assert math.isfinite(c.nsd) and math.isfinite(c.score) and c.ranking_score == c.nsd
    by_name = {c.name: c for c in res.candidates}
    assert by_name["good"].nsd == pytest.approx(_nsd_of_single_model(cv, "good", res.labels), rel=1e-12)
    assert by_name["bad"].nsd == pytest.approx(_nsd_of_single_model(cv, "bad", res.labels), rel=1e-12)
    ranks = [c.nsd for c in res.candidates]
    assert ranks == sorted(ranks, reverse=True)
    assert res.best.nsd >= max(ranks) - 1e-4
    report = render_markdown(res)
    lines = report.splitlines()
    header = lines[lines.index("## Candidates") + 2]
    assert "OOF score" in header and "NSD" in header and "ranking (nsd)" in header
    assert "Ranked by **nsd**" in report
    entry = res.to_dict()["candidates"][0]
    assert entry["nsd"] == pytest.approx(res.candidates[0].nsd, abs=1e-6) and "per_class_nsd" in entry


def test_dice_plus_nsd_ranks_by_the_mean_and_dice_leaves_nsd_out(cv):
    both = search_ensembles(cv.oof(), criterion="dice+nsd", postprocessing="none", **FAST)
    for c in both.candidates:
        assert c.ranking_score == pytest.approx((c.honest_score + c.nsd) / 2)
    plain = search_ensembles(cv.oof(), postprocessing="none", **FAST)
    assert all(math.isnan(c.nsd) for c in plain.candidates) and "nsd" not in plain.to_dict()["candidates"][0]
    assert [c.name for c in plain.candidates] == sorted((c.name for c in plain.candidates),
                                                        key=lambda n: -{c.name: c.score for c in plain.candidates}[n])


def test_postprocessing_by_nsd_removes_far_fragments():
    cv = cvf.make_cv_set({"a": cvf.with_fragments(cvf.quality(0.95), [2, 7])}, n_cases=4, shape=(24, 48, 48), seed=3)
    res = search_ensembles(cv.oof(), criterion="nsd", postprocessing="determine", **FAST)
    pp = res.postprocessing
    assert pp is not None
    kept_alone = {e for e in pp.for_which_classes if isinstance(e, int)}
    merged = any(isinstance(e, tuple) for e in pp.for_which_classes)
    assert merged or {2, 7} <= kept_alone
    assert res.postprocessed_score is not None and res.postprocessed_score > res.best.nsd


def test_search_criterion_is_checked(cv):
    with pytest.raises(ValidationError, match="criterion"):
        search_ensembles(cv.oof(), criterion="hd95", **FAST)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="min_object_size"):
        search_ensembles(cv.oof(), criterion="nsd", min_object_size="auto", **FAST)
    with pytest.raises(ValidationError, match="tolerance_mm"):
        search_ensembles(cv.oof(), criterion="nsd", tolerance_mm=-1, **FAST)


def test_evaluate_surface_on_the_real_case_equals_surface_metrics(real_data, tmp_path):
    """The real 768x768x107 case against a copy shifted by 2 voxels with label 5 removed."""
    ref, geometry = io.read_nifti(real_data / "case_labels.nii.gz")
    pred = np.roll(ref, 2, axis=-1)
    pred[pred == 5] = 0
    io.write_nifti(tmp_path / "refs" / "case.nii.gz", ref, geometry)
    io.write_nifti(tmp_path / "preds" / "case.nii.gz", pred, geometry)
    ev = evaluate_folder(tmp_path / "refs", tmp_path / "preds", surface=True, tolerance_mm=(1, 2), progress=False)
    want = medfuse.surface_metrics(ref, pred, spacing_mm=geometry.spacing, tolerance_mm=(1, 2))
    s = ev.surface
    assert s is not None and set(s.keys) == set(range(1, 12))
    for k in s.keys:
        got = s.per_case["case"][k]
        assert (got["HD95"], got["ASSD"], got["NSD"], got["NSD@2"]) == (want[k].hd95, want[k].assd, *want[k].nsd)
    assert math.isinf(s.mean[5]["HD95"]) and s.mean[5]["NSD"] == 0.0 and s.inf_cases[5] == 1


def test_surface_options_without_surface_are_refused(pair, capsys):
    refs, preds, _ = pair
    with pytest.raises(ValidationError, match=r"`tolerance_mm` only applies.*`surface=True`"):
        evaluate_folder(refs, preds, tolerance_mm=2, progress=False)
    with pytest.raises(ValidationError, match=r"`percentile` only applies"):
        evaluate_folder(refs, preds, percentile=90, progress=False)
    assert main(["evaluate", str(refs), str(preds), "--tolerance", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`--tolerance` only applies" in err and "`--surface`" in err


def test_cli_search_criterion_writes_both_numbers(cv, tmp_path, capsys):
    roots = cvf.write_cv_folders(cv, tmp_path / "cv")
    out = tmp_path / "out"
    assert main(["search", *map(str, roots), "-o", str(out), "--criterion", "dice+nsd", "--tolerance", "2",
                 "--bootstrap", "0", "--learn-weights", "none", "--no-class-selection", "--postprocessing", "none",
                 "--no-progress"]) == 0
    assert "ranked by dice+nsd" in capsys.readouterr().out
    data = json.loads((out / "search.json").read_text())
    assert data["settings"]["criterion"] == "dice+nsd" and data["settings"]["tolerance_mm"] == 2.0
    assert all(c["nsd"] is not None and c["score"] is not None for c in data["candidates"])
    assert "ranking (dice+nsd)" in (out / "report.md").read_text()
    assert main(["search", *map(str, roots), "-o", str(tmp_path / "o2"), "--criterion", "nsd",
                 "--min-object-size", "auto", "--no-progress"]) == 2
    assert "`--min-object-size`" in capsys.readouterr().err
