"""The built-in demo (the README's main command) runs end to end and tells the truth."""

from __future__ import annotations

import json
import zipfile

import pytest

from medfuse import io
from medfuse.cli import main
from medfuse.errors import ValidationError
from medfuse.synthetic.demo import DEMO_MEMBERS, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo") / "run", cases=2, shape=(32, 96, 96), seed=1)


def test_demo_writes_v1_member_folders_and_fusions(demo):
    assert set(demo.members) == set(DEMO_MEMBERS)
    for folder in demo.members.values():
        f = io.open_folder(folder)
        assert f.layout == "v1" and len(f.cases) == 2
    for folder in demo.fusions.values():
        assert json.loads((folder / "fusion.json").read_text())["cases"] == ["case_000", "case_001"]


def test_demo_scores_are_consistent(demo):
    for name, per_label in demo.dice.items():
        assert len(per_label) == 11
        assert 0.0 <= demo.foreground_mean[name] <= 1.0
    # the weak member misses label 8 entirely
    assert demo.dice["weak"][8] == 0.0
    # down-weighting the weak member helps the mean
    assert demo.foreground_mean["weighted_mean"] > demo.foreground_mean["mean"]
    assert demo.foreground_mean["weighted_mean"] > demo.foreground_mean["weak"]
    table = demo.table()
    assert all(name in table for name in demo.dice)


def test_demo_submission_is_valid(demo):
    with zipfile.ZipFile(demo.submission) as zf:
        assert sorted(zf.namelist()) == ["case_000.nii.gz", "case_001.nii.gz"]
    for case in ("case_000", "case_001"):
        _, g_image = io.read_nifti(demo.root / "imagesTs" / f"{case}_0000.nii.gz")
        _, g_fused = io.read_nifti(demo.fusions["weighted_mean"] / f"{case}.nii.gz")
        assert g_image == g_fused
        assert g_image.direction == (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def test_demo_refuses_a_non_empty_folder(demo):
    with pytest.raises(ValidationError, match="not empty"):
        run_demo(demo.root)


def test_demo_command_prints_the_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--cases", "1", "--shape", "24,64,64", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "weighted_mean" in out and "best:" in out and "submission" in out
