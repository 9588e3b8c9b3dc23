"""``medfuse infer`` end to end, and its one-line errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from medfuse import io
from medfuse.cli import main
from medfuse.synthetic import phantom
from paddle_models import exported, make_plans

pytestmark = pytest.mark.paddle


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    models = exported(tmp_path_factory.mktemp("paddle_models_cli"), "json")
    plans = root / "nnUNetPlansv2.1_plans_3D.pkl"
    with open(plans, "wb") as f:
        pickle.dump(make_plans(num_classes=2), f)
    images = root / "imagesTs"
    images.mkdir()
    ph = phantom((14, 36, 36), num_labels=2, seed=4)
    io.write_nifti(images / "ct_001_0000.nii.gz", ph.image.astype(np.int16), ph.geometry)
    return root, models, plans, images, ph


def test_infer_writes_a_v1_folder(setup, capsys):
    root, models, plans, images, ph = setup
    out = root / "pred"
    code = main(["infer", "--model", str(models["conv3d"]), "--model", str(models["conv3d_fold1"]),
                 "--plans", str(plans), "--stage", "1", "--images", str(images), "-o", str(out),
                 "--save-probabilities", "--device", "cpu", "--threads", "1", "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "2 fold(s), 3D" in captured.err and "CPU, 1 threads" in captured.err
    assert "predicted 1 cases" in captured.out
    names = sorted(f.name for f in out.iterdir() if not f.name.startswith("."))  # not the journal, the lock
    assert names == ["ct_001.nii.gz", "ct_001.npz", "ct_001.pkl", plans.name]
    src = io.open_folder(out).case("ct_001")
    assert src.geometry.matches(ph.geometry) and src.num_classes == 3
    # --no-tta and --step change the work, not the format
    code = main(["infer", "-m", str(models["conv3d"]), "--plans", str(plans), "--stage", "1", "--images",
                 str(images), "-o", str(root / "fast"), "--no-tta", "--step", "1", "--no-progress"])
    assert code == 0 and (root / "fast" / "ct_001.nii.gz").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--stage", "5"], "stage"),
    (["--stage", "1", "--device", "gpu"], "paddlepaddle-gpu"),
    (["--stage", "1", "--lowres", "nowhere"], "only for cascade"),
    (["--stage", "1", "--step", "0"], "step"),
])
def test_infer_errors_are_one_line(setup, capsys, extra, message):
    root, models, plans, images, _ = setup
    code = main(["infer", "-m", str(models["conv3d"]), "--plans", str(plans), "--images", str(images),
                 "-o", str(root / "err"), "--no-progress", *extra])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the set-up summary lines, if any
    assert last.startswith("medfuse infer: error:") and message in last


def test_cascade_without_lowres(setup, capsys):
    root, models, plans, images, _ = setup
    code = main(["infer", "-m", str(models["cascade"]), "--plans", str(plans), "--stage", "1", "--images",
                 str(images), "-o", str(root / "casc"), "--no-progress"])
    assert code == 2 and "--lowres" in capsys.readouterr().err
    assert not (root / "casc").exists()
