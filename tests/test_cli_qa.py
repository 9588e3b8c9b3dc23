"""`medfuse fuse --qa [--save-uncertainty [MAP ...]] [--qa-figures K]` on synthetic v1 folders."""

from __future__ import annotations

import csv

import pytest

from medfuse import io
from medfuse.cli.main import main
from test_ensemble import Cases

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Cases:
    return Cases(tmp_path_factory.mktemp("cliqa"), n_cases=3)


def test_fuse_qa_writes_tables_maps_and_figures(cases, tmp_path, capsys):
    out = tmp_path / "fused"
    code = main(["fuse", *map(str, cases.members), "-o", str(out), "--qa", "--save-uncertainty",
                 "--qa-figures", "2", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "most suspicious" in text and "qa_score" in text and "main components" in text
    with open(out / "qa.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cases.phantoms)
    assert [float(r["qa_score"]) for r in rows] == sorted((float(r["qa_score"]) for r in rows), reverse=True)
    assert rows[0]["case"] in text.split("most suspicious")[1]  # the top case is printed
    for case, ph in cases.phantoms.items():  # --save-uncertainty alone: the entropy map
        saved, g = io.read_nifti(out / "uncertainty" / f"{case}_entropy.nii.gz")
        assert g == ph.geometry and saved.max() > 0
        assert not (out / f"{case}_disagreement.nii.gz").exists()
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == sorted(["qa.png", *(f"qa_{r['case']}.png" for r in rows[:2])])
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and data.rstrip(b"\x00")[-8:-4] == b"IEND"
    # the maps live in uncertainty/, so the output is still a folder of cases: it zips into a submission
    # of exactly the fused label maps, and a resumed run trusts what it wrote
    assert main(["submit", str(out), str(tmp_path / "sub.zip"), "--no-progress"]) == 0
    import zipfile

    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"{c}.nii.gz" for c in cases.phantoms)
    capsys.readouterr()
    assert main(["fuse", *map(str, cases.members), "-o", str(out), "--qa", "--save-uncertainty",
                 "--no-progress"]) == 0  # every case resumed from the journal: the maps' digests still match
    assert (out / "qa.csv").is_file()


def test_figures_without_saved_maps_recompute_the_entropy(cases, tmp_path):
    out = tmp_path / "nomaps"
    assert main(["fuse", *map(str, cases.members), "-o", str(out), "--qa", "--qa-figures", "1", "--method", "vote",
                 "--cases", "case_0,case_2", "--no-progress"]) == 0
    assert len(list(out.glob("qa_*.png"))) == 1 and not (out / "uncertainty").exists()


@pytest.mark.parametrize(("argv", "flag"), [
    (["--save-uncertainty", "entropy"], "--save-uncertainty"),
    (["--qa", "--save-uncertainty", "entropie"], "--save-uncertainty"),
    (["--qa-figures", "2"], "--qa-figures"),
    (["--qa", "--qa-figures", "-1"], "--qa-figures"),
    (["--qa", "--qa-figures", "two"], "--qa-figures"),
])
def test_bad_qa_flags_name_the_flag(cases, tmp_path, capsys, argv, flag):
    try:
        code = main(["fuse", *map(str, cases.members), "-o", str(tmp_path / "bad"), *argv, "--no-progress"])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code != 0
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "bad" / "qa.csv").exists()
