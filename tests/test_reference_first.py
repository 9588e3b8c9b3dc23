"""Reference first, prediction second: in every public function and command that takes both (issue 12)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse import io
from medfuse.cli import main
from medfuse.errors import ValidationError
from medfuse.folders import evaluate_folder
from medfuse.geometry import Geometry
from medfuse.search.oof import OutOfFold

SHAPE = (6, 10, 10)
GEOMETRY = Geometry(SHAPE, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """The prediction over-segments label 1: recall 1, precision 1/2 (swapped, the two trade places)."""
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    for case in ("a", "b"):
        ref = np.zeros(SHAPE, np.uint8)
        ref[1:3, 2:6, 2:6] = 1
        pred = ref.copy()
        pred[3:5, 2:6, 2:6] = 1
        io.write_nifti(refs / f"{case}.nii.gz", ref, GEOMETRY)
        io.write_nifti(preds / f"{case}.nii.gz", pred, GEOMETRY)
    return refs, preds


def test_evaluate_folder_takes_the_reference_first(folders):
    refs, preds = folders
    ev = evaluate_folder(refs, preds, progress=False)
    assert ev.summary.mean[1]["recall"] == 1.0 and ev.summary.mean[1]["precision"] == 0.5
    assert ev.files["a"] == (str(refs / "a.nii.gz"), str(preds / "a.nii.gz"))
    assert ev.summary.mean[1]["reference_voxels"] == 32


def test_cli_evaluate_takes_ref_then_pred(folders, tmp_path, capsys):
    refs, preds = folders
    assert main(["evaluate", str(refs), str(preds), "--json", "-", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mean"]["1"]["n_ref"] == 32 and data["mean"]["1"]["n_pred"] == 64
    assert data["metric_per_case"][0]["reference_file"] == str(refs / "a.nii.gz")


def test_cli_evaluate_regions(folders, capsys):
    refs, preds = folders
    assert main(["evaluate", str(refs), str(preds), "--regions", "1;1,2", "--json", "-", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["mean"]) == {"(1,)", "(1, 2)"}
    assert data["mean"]["(1, 2)"]["Dice"] == pytest.approx(2 * 32 / (32 + 64))
    assert main(["evaluate", str(refs), str(preds), "--regions", ";", "--no-progress"]) == 2
    assert "`--regions`" in capsys.readouterr().err


@pytest.mark.parametrize("marker", ["a.npz", "a.pkl", "fusion.json", ".medfuse", "postprocessing.json"])
def test_a_prediction_folder_as_reference_is_refused(folders, marker, capsys):
    refs, preds = folders
    target = preds / marker
    if marker == ".medfuse":
        target.mkdir()
    else:
        target.write_bytes(b"{}")
    with pytest.raises(ValidationError, match=r"reference first.*evaluate_folder\(references, predictions\)"):
        evaluate_folder(preds, refs, progress=False)
    assert main(["evaluate", str(preds), str(refs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`REF` folder" in err and "medfuse evaluate REF PRED" in err and marker.lstrip("a") in err
    evaluate_folder(refs, preds, progress=False)  # the right order is unaffected


def test_help_shows_ref_before_pred(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    usage = " ".join(text.split("\n\n")[0].split())
    assert usage.index("REF") < usage.index("PRED")
    assert "REF PRED" in text and "reference folder comes FIRST" in text


def test_public_signatures_put_the_reference_first():
    for fn in (medfuse.dice, medfuse.overlap, medfuse.surface_metrics, medfuse.confusion_matrix):
        params = list(inspect.signature(fn).parameters)
        assert params[:2] == ["reference", "prediction"], fn.__name__
    assert list(inspect.signature(evaluate_folder).parameters)[:2] == ["references", "predictions"]
    assert list(inspect.signature(OutOfFold.from_arrays).parameters)[:2] == ["references", "predictions"]


def test_out_of_fold_from_arrays_refuses_swapped_arguments():
    ref = np.zeros((2, 3, 4), np.uint8)
    ref[0, 0, 0] = 1
    with pytest.raises(ValidationError, match=r"from_arrays\(references, predictions"):
        OutOfFold.from_arrays({"m": {"c0": ref}}, {"c0": ref}, folds={"c0": 0})
    oof = OutOfFold.from_arrays({"c0": ref}, {"m": {"c0": ref}}, folds={"c0": 0})
    assert oof.models == ("m",) or list(oof.models) == ["m"]
