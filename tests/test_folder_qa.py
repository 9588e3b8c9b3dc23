"""fuse_folders(qa=True, save_uncertainty=...) on synthetic v1 folders, against the numpy twin of the maps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from _reference.twin_uncertainty import uncertainty_twin
from medfuse import io
from medfuse.errors import ValidationError
from medfuse.folders import fuse_folders
from medfuse.fusion.uncertainty import UncertaintyMaps
from medfuse.quality import case_qa
from test_ensemble import Cases

C = 5


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Cases:
    return Cases(tmp_path_factory.mktemp("cvqa"), n_cases=3)


def _twin_maps(members, fused, weights=None) -> UncertaintyMaps:
    t = uncertainty_twin(members, fused, weights=weights, num_classes=C)
    return UncertaintyMaps(entropy=t["entropy"].astype(np.float32),
                           mutual_information=t["mutual_information"].astype(np.float32),
                           disagreement=t["disagreement"].astype(np.float32), member_volumes=t["member_volumes"],
                           member_overlap=t["member_overlap"], fused_volumes=t["fused_volumes"],
                           member_shares=t["member_shares"])


def _assert_row(row, expected):
    assert row.case == expected.case
    assert row.class_volumes == expected.class_volumes
    assert row.qa_score == pytest.approx(expected.qa_score, rel=1e-4, abs=1e-6)
    assert row.components.keys() == expected.components.keys()
    for k, v in expected.components.items():
        assert row.components[k] == pytest.approx(v, rel=1e-3, abs=1e-5), k
    for k, v in expected.volume_cv.items():
        assert row.volume_cv[k] == pytest.approx(v, rel=1e-9), k


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_qa_rows_equal_the_in_memory_computation_and_are_sorted(cases, tmp_path):
    out = tmp_path / "fused"
    weights = [1.0, 2.0, 0.5]
    report = fuse_folders(cases.members, out, weights=weights, qa=True, save_uncertainty=["entropy", "disagreement"],
                          progress=False)
    assert [r.case for r in report.qa] and sorted(r.case for r in report.qa) == sorted(cases.phantoms)
    scores = [r.qa_score for r in report.qa]
    assert scores == sorted(scores, reverse=True)
    rows = _csv_rows(out / "qa.csv")
    assert [r["case"] for r in rows] == [r.case for r in report.qa]
    assert [float(r["qa_score"]) for r in rows] == pytest.approx(scores, rel=1e-5)  # csv: 6 significant digits
    data = json.loads((out / "qa.json").read_text())
    assert [r["case"] for r in data["cases"]] == [r.case for r in report.qa]
    by_case = {r.case: r for r in report.qa}
    for case, ph in cases.phantoms.items():
        labels, _ = io.read_nifti(out / f"{case}.nii.gz")
        maps = _twin_maps(cases.full[case], labels, weights)
        _assert_row(by_case[case], case_qa(labels, maps, case=case, spacing_mm=ph.geometry.spacing))
        for name in ("entropy", "disagreement"):  # saved maps: original geometry, float32, = the twin
            saved, g = io.read_nifti(out / "uncertainty" / f"{case}_{name}.nii.gz")
            assert g == ph.geometry and saved.dtype == np.float32
            np.testing.assert_allclose(saved, maps.map(name), atol=3e-5)
        box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
        outside = np.ones(ph.geometry.shape, bool)
        outside[box] = False
        assert outside.any() and not saved[outside].any()  # 0 outside the fused domain
        assert not (out / f"{case}_mutual_information.nii.gz").exists()
    assert json.loads((out / "fusion.json").read_text())["qa"] is True
    assert report.to_dict()["qa"][0]["case"] == report.qa[0].case


def test_log_space_maps_are_of_the_linear_mean(cases, tmp_path):
    report = fuse_folders(cases.members, tmp_path / "log", space="log", qa=True, progress=False)
    by_case = {r.case: r for r in report.qa}
    for case, ph in cases.phantoms.items():
        labels, _ = io.read_nifti(tmp_path / "log" / f"{case}.nii.gz")
        maps = _twin_maps(cases.full[case], labels)
        _assert_row(by_case[case], case_qa(labels, maps, case=case, spacing_mm=ph.geometry.spacing))


def test_resume_keeps_every_qa_row(cases, tmp_path):
    out = tmp_path / "resume"
    first = fuse_folders(cases.members, out, qa=True, cases=["case_1"], progress=False)
    assert [r.case for r in first.qa] == ["case_1"]
    assert len(_csv_rows(out / "qa.csv")) == 1
    second = fuse_folders(cases.members, out, qa=True, progress=False)
    assert second.skipped == ("case_1",) and set(second.written) == {"case_0", "case_2"}
    assert sorted(r.case for r in second.qa) == sorted(cases.phantoms)
    third = fuse_folders(cases.members, out, qa=True, progress=False)
    assert third.written == () and third.qa == second.qa
    assert [r["case"] for r in _csv_rows(out / "qa.csv")] == [r.case for r in second.qa]
    # QA settings are fusion settings: a run without QA (or other maps) does not mix into this folder
    with pytest.raises(ValidationError, match="other settings"):
        fuse_folders(cases.members, out, progress=False)
    with pytest.raises(ValidationError, match="other settings"):
        fuse_folders(cases.members, out, qa=True, save_uncertainty=["entropy"], progress=False)


@pytest.mark.parametrize("method", ["vote", "staple"])
def test_vote_and_staple_maps_from_the_members_labels(cases, tmp_path, method):
    out = tmp_path / method
    report = fuse_folders(cases.members, out, method=method, qa=True, save_uncertainty=["entropy"], progress=False)
    by_case = {r.case: r for r in report.qa}
    for case, ph in cases.phantoms.items():
        labels, _ = io.read_nifti(out / f"{case}.nii.gz")
        hard = [m.argmax(axis=0).astype(np.uint8) for m in cases.full[case]]
        maps = _twin_maps(hard, labels)
        _assert_row(by_case[case], case_qa(labels, maps, case=case, spacing_mm=ph.geometry.spacing))
        saved = io.read_nifti(out / "uncertainty" / f"{case}_entropy.nii.gz")[0]
        np.testing.assert_allclose(saved, maps.entropy, atol=3e-5)


def test_qa_arguments_are_checked(cases, tmp_path):
    with pytest.raises(ValidationError, match="qa=True"):
        fuse_folders(cases.members, tmp_path / "a", save_uncertainty=["entropy"], progress=False)
    with pytest.raises(ValidationError, match=r"save_uncertainty.*unknown"):
        fuse_folders(cases.members, tmp_path / "b", qa=True, save_uncertainty=["entropie"], progress=False)
    with pytest.raises(ValidationError, match="`qa`"):
        fuse_folders(cases.members, tmp_path / "c", qa="yes", progress=False)  # type: ignore[arg-type]


def test_no_qa_keeps_the_fingerprint(cases, tmp_path):
    a = fuse_folders(cases.members, tmp_path / "a", cases=["case_0"], progress=False)
    b = fuse_folders(cases.members, tmp_path / "b", cases=["case_0"], qa=False, save_uncertainty=(), progress=False)
    assert a.fingerprint == b.fingerprint and a.qa == ()
    assert not (tmp_path / "a" / "qa.csv").exists()
