"""The search on members simulated from real competition label maps (baseline_submit.zip)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from medfuse import io, synthetic
from medfuse.search import OutOfFold, search_ensembles

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def real_cases(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, tuple]]:
    """Four real label maps, downsampled (every 2nd slice, every 8th row and column) to keep the test fast."""
    out = tmp_path_factory.mktemp("real")
    cases = {}
    with zipfile.ZipFile(real_data / "baseline_submit.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".nii.gz"))[:4]
        for name in names:
            z.extract(name, out)
            labels, geometry = io.read_nifti(out / name)
            small = np.ascontiguousarray(labels[::2, ::8, ::8])
            spacing = (geometry.spacing[0] * 2, geometry.spacing[1] * 8, geometry.spacing[2] * 8)
            cases[name[: -len(".nii.gz")]] = (small, spacing)
    return cases


def test_search_on_real_label_maps(real_cases):
    refs = {c: lab for c, (lab, _) in real_cases.items()}
    spacing = {c: sp for c, (_, sp) in real_cases.items()}
    assert all(int(lab.max()) <= 11 for lab in refs.values())
    # boundary errors in mm, of the order of the (downsampled) voxels
    models = {"3d_fullres": {"quality": 0.9, "boundary_noise": 4.0},
              "2d": {"quality": 0.85, "boundary_noise": 6.0},
              "broken": {"quality": 0.3, "boundary_noise": 12.0, "dilation": 10.0}}
    preds = {
        m: {c: synthetic.simulate_probabilities(lab, num_classes=12, spacing=spacing[c], seed=100 * j + i, **knobs)
            for i, (c, lab) in enumerate(sorted(refs.items()))}
        for j, (m, knobs) in enumerate(models.items())
    }
    folds = {c: i % 2 for i, c in enumerate(sorted(refs))}
    oof = OutOfFold.from_arrays(refs, preds, folds=folds, spacing_mm=spacing)
    res = search_ensembles(oof, n_bootstrap=200)
    by = {c.members: c for c in res.candidates if c.kind == "subset"}
    best_subset = max(by.values(), key=lambda c: c.score)
    assert "broken" not in best_subset.members
    assert not (res.best.kind == "subset" and "broken" in res.best.members)
    assert by[("3d_fullres",)].score > by[("broken",)].score + 0.2
    assert by[("3d_fullres",)].score < 1.0
    assert 0.5 < res.best.score <= 1.0
    # per-class Dice only for labels present somewhere; the real maps use labels 1..11
    present = {int(v) for lab in refs.values() for v in np.unique(lab) if v}
    for k, d in zip(res.best.labels, res.best.per_class_dice, strict=True):
        assert np.isnan(d) == (k not in present and not any(
            (p.argmax(0) == k).any() for m in res.best.members for p in preds[m].values()))
    assert res.postprocessing is not None
    assert set(res.postprocessing.dc_per_class_raw) == set(range(1, 12))
