"""The QA calibration of benchmarks/calibrate_qa.py, small: simulated ensembles of real label maps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from _reference.twin_uncertainty import uncertainty_twin
from medfuse.quality import qa_calibration

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_qa.py"


@pytest.fixture(scope="module")
def calibrate_qa():
    spec = importlib.util.spec_from_file_location("calibrate_qa", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["calibrate_qa"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("calibrate_qa", None)


def test_the_benchmarks_numpy_maps_follow_the_twin(calibrate_qa, rng):
    shape = (3, 5, 6)
    soft = []
    for _ in range(3):
        p = rng.random((4, *shape)).astype(np.float32) ** 3
        soft.append(p / p.sum(axis=0))
    members = [*soft, rng.integers(0, 4, size=shape).astype(np.uint8)]
    fused, maps = calibrate_qa.fuse_with_uncertainty(members, num_classes=4)
    mean = sum(m if m.dtype.kind == "f" else np.stack([m == c for c in range(4)]) for m in members)
    np.testing.assert_array_equal(fused, mean.argmax(axis=0))
    twin = uncertainty_twin(members, fused, num_classes=4)
    for name in ("entropy", "mutual_information", "disagreement"):
        np.testing.assert_allclose(getattr(maps, name), twin[name], atol=2e-5, err_msg=name)
    for name in ("member_volumes", "member_overlap", "fused_volumes"):
        np.testing.assert_array_equal(getattr(maps, name), twin[name], err_msg=name)


@pytest.mark.real_data
def test_small_calibration_on_real_label_maps(calibrate_qa, real_data):
    results = calibrate_qa.run(real_data, max_cases=6, seed=1, target_mm=(10.0, 6.0, 6.0))
    assert len(results) == 6
    dice = np.array([r.dice for r in results])
    scores = np.array([r.qa.qa_score for r in results])
    assert np.all((dice > 0) & (dice <= 1)) and np.all(np.isfinite(scores)) and np.all(scores >= 0)
    assert all(3 <= r.n_members <= 5 for r in results)
    assert dice.max() - dice.min() > 0.02  # the cases differ in quality
    cal = qa_calibration(scores, dice, n_boot=200, seed=0)
    assert cal.n_cases == 6
    assert cal.spearman > 0.5, cal  # higher score, lower Dice
    tuning, held_out = calibrate_qa.split(results, seed=1)
    assert len(tuning) == 3 and len(held_out) == 3
    assert {r.case for r in tuning}.isdisjoint(r.case for r in held_out)
    found = calibrate_qa.fit(tuning)
    assert set(found["single"]) >= {"expected_dice_gap", "disagreement_band"}
