"""The public synthetic fold tree, and the demo's ensemble search on it."""

from __future__ import annotations

import numpy as np
import pytest

import medfuse
from medfuse import io
from medfuse.cli import main
from medfuse.errors import ValidationError
from medfuse.synthetic import FOLD_TREE_MODELS, make_fold_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_fold_tree(tmp_path_factory.mktemp("tree") / "cv", n_cases=4, n_folds=2, seed=2)


def test_fold_tree_has_the_v1_cross_validation_layout(tree):
    assert list(tree.models) == list(FOLD_TREE_MODELS)
    assert tree.folds == {"case_000": 0, "case_001": 1, "case_002": 0, "case_003": 1}
    for folder in tree.models.values():
        for k in (0, 1):
            f = io.open_folder(folder / f"fold_{k}" / "validation_raw")
            assert f.layout == "v1"
            assert sorted(f.cases) == [c for c, fold in tree.folds.items() if fold == k]
        assert sorted(p.name for p in (folder / "gt_niftis").iterdir()) == [f"{c}.nii.gz" for c in tree.cases]
    assert tree.references == tree.models["2d"] / "gt_niftis"
    assert "cases=4" in repr(tree) and "layout='v1'" in repr(tree)


def test_fold_tree_is_seeded(tree, tmp_path):
    again = make_fold_tree(tmp_path / "again", n_cases=4, n_folds=2, seed=2)
    other = make_fold_tree(tmp_path / "other", n_cases=4, n_folds=2, seed=3)
    ref_a, _ = io.read_nifti(tree.references / "case_001.nii.gz")
    ref_b, _ = io.read_nifti(again.references / "case_001.nii.gz")
    ref_c, _ = io.read_nifti(other.references / "case_001.nii.gz")
    np.testing.assert_array_equal(ref_a, ref_b)
    assert not np.array_equal(ref_a, ref_c)


def test_search_on_the_fold_tree_beats_every_single_model(tree):
    result = medfuse.search_ensembles(list(tree.models.values()), n_bootstrap=50, postprocessing="none")
    singles = {c.name: c.score for c in result.candidates if c.kind == "subset" and c.n_members == 1}
    assert set(singles) == set(FOLD_TREE_MODELS)
    assert result.best.score > max(singles.values())


def test_v2_fold_tree(tmp_path):
    t = make_fold_tree(tmp_path / "v2", models={"a": {"quality": 0.9}}, n_cases=2, n_folds=2, layout="v2")
    assert io.open_folder(t.models["a"] / "fold_1" / "validation").layout == "v2"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_cases": 2, "n_folds": 3}, "`n_cases` must be at least `n_folds`"),
    ({"n_folds": 1}, "n_folds"),
    ({"models": {}}, "`models` must name at least one model"),
    ({"layout": "v3"}, "`layout` must be 'v1' or 'v2'"),
])
def test_fold_tree_refuses_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        make_fold_tree(tmp_path / "bad", **kwargs)


def test_fold_tree_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(ValidationError, match=r"`root` .* is not an empty folder"):
        make_fold_tree(tmp_path)
    assert (tmp_path / "x").read_text() == "keep me"


def test_demo_command_searches_and_writes_a_report_with_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cases", "1", "--shape", "24,64,64", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = (out / "search" / "report.md").read_text()
    assert "# Ensemble search" in report
    assert "ranking.png" in report and (out / "search" / "ranking.png").stat().st_size > 1000
    assert (out / "search" / "dice_boxplot.png").stat().st_size > 1000
    assert "ensemble search:" in printed and str(out / "search" / "report.md") in printed


def test_demo_without_search_writes_no_tree(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cases", "1", "--shape", "24,64,64", "--no-progress",
                 "--no-search"]) == 0
    assert not (out / "cv").exists() and not (out / "search").exists()
