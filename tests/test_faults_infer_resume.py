"""``Predictor.predict_folder`` resumes by journal under the folder lock, like ``fuse_folders`` (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse import io
from medfuse.errors import FolderLockedError, ValidationError
from medfuse.inference import Predictor
from medfuse.io.lock import folder_lock
from medfuse.synthetic import phantom
from paddle_models import exported, make_plans

pytestmark = pytest.mark.paddle

PLANS = make_plans(num_classes=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer_resume")
    models = exported(tmp_path_factory.mktemp("paddle_models"), "json")
    images = root / "imagesTs"
    for i, name in enumerate(("case_a", "case_b")):
        ph = phantom((12, 32, 30), num_labels=2, seed=20 + i)
        io.write_nifti(images / f"{name}_0000.nii.gz", ph.image.astype(np.int16), ph.geometry)
    return Predictor(models["conv3d"], plans=PLANS, stage=1, device="cpu", threads=1), images


def test_predict_folder_trusts_its_journal_not_the_listing(setup, tmp_path):
    predictor, images = setup
    out = tmp_path / "pred"
    predictor.predict_folder(images, out, save_probabilities=True, progress=False)
    good = (out / "case_b.npz").read_bytes()
    (out / "case_b.npz").write_bytes(good[:100])  # truncated after its record: recomputed, not trusted
    report = predictor.predict_folder(images, out, save_probabilities=True, progress=False)
    assert report.written == ("case_b",) and report.skipped == ("case_a",)
    assert (out / "case_b.npz").read_bytes() == good
    with pytest.raises(ValidationError, match=r"other settings \(they differ in: save_probabilities\)"):
        predictor.predict_folder(images, out, save_probabilities=False, progress=False)
    again = predictor.predict_folder(images, out, save_probabilities=False, overwrite=True, progress=False)
    assert again.written == ("case_a", "case_b")
    assert not (out / "case_a.npz").exists()  # the discarded run's files went with its records


def test_predict_folder_refuses_unrecorded_results_and_a_locked_folder(setup, tmp_path):
    predictor, images = setup
    out = tmp_path / "pred"
    out.mkdir()
    (out / "case_a.nii.gz").write_bytes(b"from elsewhere")
    with pytest.raises(ValidationError, match=r"case_a\.nii\.gz.*overwrite=True"):
        predictor.predict_folder(images, out, progress=False)
    with folder_lock(out, command="someone else"), pytest.raises(FolderLockedError, match="someone else"):
        predictor.predict_folder(images, out, overwrite=True, progress=False)
