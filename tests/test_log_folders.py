"""fuse_folders(space="log") and `medfuse fuse --space log` on synthetic v1 folders, against a float64 twin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfuse import io
from medfuse.errors import ValidationError
from medfuse.folders import fuse_folders
from test_ensemble import Cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Cases:
    return Cases(tmp_path_factory.mktemp("cvlog"), n_cases=2)


def _log_reference(members, weights, eps=1e-6):
    w = np.asarray(weights, dtype=np.float64)
    logs = sum(wi * np.log(np.maximum(m, eps)) for wi, m in zip(w, members, strict=True)) / w.sum()
    srt = np.sort(logs, axis=0)
    return logs, srt[-1] - srt[-2]


def test_log_space_folder_fusion_matches_float64_twin(cases, tmp_path):
    out = tmp_path / "fused"
    weights = [1.0, 2.0, 0.5]
    report = fuse_folders(cases.members, out, weights=weights, space="log", save_probabilities=True, progress=False)
    assert report.space == "log" and report.to_dict()["space"] == "log"
    meta = json.loads((out / "fusion.json").read_text())
    assert meta["space"] == "log" and meta["eps"] == pytest.approx(1e-6)
    differs = 0
    for case in cases.phantoms:
        labels, _ = io.read_nifti(out / f"{case}.nii.gz")
        logs, gap = _log_reference(cases.full[case], weights)
        clear = gap > 1e-3
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(labels[clear], logs.argmax(0)[clear])
        linear = sum(w * m for w, m in zip(weights, cases.full[case], strict=True)).argmax(0)
        differs += int((linear != logs.argmax(0)).sum())
        saved = np.load(out / f"{case}.npz")["softmax"].astype(np.float32)
        np.testing.assert_allclose(saved.sum(axis=0), 1.0, atol=5e-3)  # normalised geometric mean
    assert differs > 0  # the synthetic members make the two spaces disagree somewhere


def test_probability_space_fingerprint_is_unchanged_by_the_new_keyword(cases, tmp_path):
    a = fuse_folders(cases.members, tmp_path / "a", progress=False)
    b = fuse_folders(cases.members, tmp_path / "b", progress=False, space="probability")
    c = fuse_folders(cases.members, tmp_path / "c", progress=False, space="log")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert "space" not in json.loads((tmp_path / "a" / "fusion.json").read_text())


def test_log_space_needs_the_mean_and_a_valid_eps(cases, tmp_path):
    with pytest.raises(ValidationError, match="method='mean'"):
        fuse_folders(cases.members, tmp_path / "v", method="vote", space="log", progress=False)
    with pytest.raises(ValidationError, match="eps"):
        fuse_folders(cases.members, tmp_path / "e", space="log", eps=0.0, progress=False)
    with pytest.raises(ValidationError, match="space"):
        fuse_folders(cases.members, tmp_path / "s", space="geometric", progress=False)  # type: ignore[arg-type]


def test_cli_space_log(cases, tmp_path, capsys):
    from medfuse.cli.main import main

    out = tmp_path / "cli"
    assert main(["fuse", *map(str, cases.members), "-o", str(out), "--space", "log", "--no-progress"]) == 0
    assert json.loads((out / "fusion.json").read_text())["space"] == "log"
    api = fuse_folders(cases.members, tmp_path / "api", space="log", progress=False)
    for case in cases.phantoms:
        np.testing.assert_array_equal(io.read_nifti(out / f"{case}.nii.gz")[0],
                                      io.read_nifti(api.output / f"{case}.nii.gz")[0])
    code = main(["fuse", *map(str, cases.members), "-o", str(tmp_path / "bad"), "--space", "log",
                 "--method", "vote", "--no-progress"])
    assert code != 0
    err = capsys.readouterr().err
    assert "--space log" in err and "--method mean" in err
