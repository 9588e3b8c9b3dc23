"""Out-of-fold assembly from cross-validation folders, and what it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import cv_fixtures as cvf
from medfuse import io
from medfuse.errors import CaseMismatchError, FormatError, GeometryMismatchError, ValidationError
from medfuse.search import assemble_oof, search_ensembles

QUICK = {"n_bootstrap": 0, "learn_weights": "none", "class_selection": False, "postprocessing": "none"}


@pytest.fixture(scope="module")
def small_cv() -> cvf.CVSet:
    return cvf.make_cv_set({"3d_fullres": cvf.quality(0.9), "2d": cvf.quality(0.8)}, n_cases=6, n_folds=5,
                           shape=(24, 48, 48), seed=7)


@pytest.fixture(scope="module")
def folders(small_cv: cvf.CVSet, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return cvf.write_cv_folders(small_cv, tmp_path_factory.mktemp("cv"))


@pytest.fixture
def copy(folders: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the folders, to break."""
    out = []
    for f in folders:
        shutil.copytree(f, tmp_path / f.name)
        out.append(tmp_path / f.name)
    return out


def test_assemble_reads_every_fold(folders: list[Path], small_cv: cvf.CVSet):
    oof = assemble_oof(folders)
    assert oof.models == ("3d_fullres", "2d")
    assert oof.cases == tuple(small_cv.cases)
    assert oof.folds == small_cv.folds
    assert oof.num_classes == 12
    case = oof.load("case_003")
    assert case.fold == 3
    np.testing.assert_array_equal(case.reference, small_cv.phantoms["case_003"].labels)
    assert case.members[0].box == small_cv.phantoms["case_003"].crop_bbox
    assert case.spacing_mm == pytest.approx(small_cv.phantoms["case_003"].spacing)


def test_search_on_folders_equals_search_in_memory(folders: list[Path], small_cv: cvf.CVSet):
    on_disk = search_ensembles(folders, **QUICK)
    in_memory = search_ensembles(small_cv.oof(), **QUICK)
    assert [c.members for c in on_disk.candidates] == [c.members for c in in_memory.candidates]
    for a, b in zip(on_disk.candidates, in_memory.candidates, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-12)
    assert on_disk.sources == tuple(str(f) for f in folders)


def test_v2_layout_and_label_only_models(small_cv: cvf.CVSet, tmp_path: Path):
    roots = cvf.write_cv_folders(small_cv, tmp_path, layout="v2", hard=["2d"])
    res = search_ensembles(roots, **QUICK)
    ref = search_ensembles(small_cv.oof(hard=["2d"]), **QUICK)
    for a, b in zip(res.candidates, ref.candidates, strict=True):
        assert a.members == b.members
        assert a.score == pytest.approx(b.score, abs=1e-12)


def test_explicit_references_and_names(folders: list[Path], tmp_path: Path):
    refs = tmp_path / "refs"
    shutil.copytree(folders[0] / "gt_niftis", refs)
    oof = assemble_oof(folders, references=refs, names=["full", "two_d"])
    assert oof.models == ("full", "two_d")


def test_case_in_two_folds(copy: list[Path]):
    src = copy[0] / "fold_1" / "validation_raw"
    dst = copy[0] / "fold_4" / "validation_raw"
    for f in src.glob("case_001.*"):
        shutil.copy(f, dst / f.name)
    with pytest.raises(CaseMismatchError, match=r"'case_001' in folds \[1, 4\]"):
        assemble_oof(copy)


def test_fold_missing(copy: list[Path]):
    shutil.rmtree(copy[1] / "fold_2")
    with pytest.raises(FormatError, match="no fold_2"):
        assemble_oof(copy)


def test_last_fold_missing_in_one_model(copy: list[Path]):
    shutil.rmtree(copy[1] / "fold_4")
    with pytest.raises(FormatError, match="different folds"):
        assemble_oof(copy)


def test_last_fold_missing_everywhere(copy: list[Path]):
    for root in copy:
        shutil.rmtree(root / "fold_4")
    with pytest.raises(CaseMismatchError, match="case_004"):
        assemble_oof(copy)


def test_fold_without_validation_folder(copy: list[Path]):
    shutil.rmtree(copy[0] / "fold_3" / "validation_raw")
    with pytest.raises(FormatError, match="fold_3 has no validation predictions"):
        assemble_oof(copy)


def test_models_with_different_cases(copy: list[Path]):
    for f in (copy[1] / "fold_0" / "validation_raw").glob("case_005.*"):
        f.unlink()
    with pytest.raises(CaseMismatchError, match=r"'2d' lacks 1 cases \('case_005'\)"):
        assemble_oof(copy)


def test_no_references(copy: list[Path]):
    for root in copy:
        shutil.rmtree(root / "gt_niftis")
    with pytest.raises(FormatError, match="gt_niftis"):
        assemble_oof(copy)


def test_references_with_labels_no_model_predicts(copy: list[Path], small_cv: cvf.CVSet):
    ph = small_cv.phantoms["case_002"]
    labels = ph.labels.copy()
    labels[0, 0, 0] = 14
    io.write_nifti(copy[0] / "gt_niftis" / "case_002.nii.gz", labels, ph.geometry)
    with pytest.raises(ValidationError, match=r"case 'case_002': the reference has labels \[14\]"):
        search_ensembles(copy, **QUICK)


def test_reference_of_another_geometry(copy: list[Path], small_cv: cvf.CVSet):
    ph = small_cv.phantoms["case_001"]
    g = ph.geometry
    moved = type(g)(g.shape, g.spacing, tuple(o + 5.0 for o in g.origin), g.direction)
    io.write_nifti(copy[0] / "gt_niftis" / "case_001.nii.gz", ph.labels, moved)
    with pytest.raises(GeometryMismatchError, match="case_001"):
        search_ensembles(copy, **QUICK)


def test_missing_folder(tmp_path: Path):
    with pytest.raises(FormatError, match="does not exist"):
        assemble_oof([tmp_path / "nope"])


def test_duplicate_names(folders: list[Path]):
    with pytest.raises(ValidationError, match="unique"):
        assemble_oof(folders, names=["a", "a"])


def test_flat_prediction_folders_get_random_folds(small_cv: cvf.CVSet, tmp_path: Path):
    for model, per_case in small_cv.predictions.items():
        for case, probs in per_case.items():
            ph = small_cv.phantoms[case]
            io.write_v1_case(tmp_path / model, case, probabilities=probs[(slice(None), *(slice(a, b) for a, b in
                                                                                          ph.crop_bbox))],
                             geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            io.write_nifti(tmp_path / "refs" / f"{case}.nii.gz", ph.labels, ph.geometry)
    oof = assemble_oof([tmp_path / m for m in small_cv.predictions], references=tmp_path / "refs")
    assert len(set(oof.folds.values())) == 5
    assert any("random" in n for n in oof.notes)
