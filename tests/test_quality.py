"""The per-case QA score (medfuse.quality): components against slow obvious computations, the score in
obvious situations, the files, and the calibration against scipy."""

from __future__ import annotations

import csv
import itertools
import json
import warnings

import numpy as np
import pytest
from scipy import stats

import medfuse
from _reference.twin_uncertainty import uncertainty_twin
from medfuse import ValidationError
from medfuse.fusion import UncertaintyMaps
from medfuse.quality import (
    COMPONENTS,
    SCORE_COEFFICIENTS,
    CaseQA,
    QACalibration,
    boundary_band,
    case_qa,
    qa_calibration,
    qa_table,
    write_qa,
)

pytestmark = pytest.mark.filterwarnings("error")


def fuse_with_maps(members, weights=None, num_classes=None):
    """Fused labels (argmax of the weighted mean, lowest class on ties) and the twin's maps as UncertaintyMaps."""
    n_classes = next((m.shape[0] for m in members if m.dtype.kind == "f"), num_classes)
    if n_classes is None:
        n_classes = int(max(m.max() for m in members)) + 1
    probs = [m.astype(np.float64) if m.dtype.kind == "f" else
             np.stack([(m == c) for c in range(n_classes)]).astype(np.float64) for m in members]
    w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    fused = sum(wi * p for wi, p in zip(w / w.sum(), probs, strict=True)).argmax(axis=0).astype(np.uint8)
    t = uncertainty_twin(members, fused, weights=weights, num_classes=n_classes)
    maps = UncertaintyMaps(
        entropy=t["entropy"].astype(np.float32), mutual_information=t["mutual_information"].astype(np.float32),
        disagreement=t["disagreement"].astype(np.float32), member_volumes=t["member_volumes"].astype(np.int64),
        member_overlap=t["member_overlap"].astype(np.int64), fused_volumes=t["fused_volumes"].astype(np.int64),
        member_shares=np.asarray(t["member_shares"], dtype=np.float64))
    return fused, maps


def random_soft(rng, n_members, n_classes, shape, sharp=3.0):
    out = []
    for _ in range(n_members):
        logits = sharp * rng.standard_normal((n_classes, *shape))
        e = np.exp(logits - logits.max(axis=0))
        out.append((e / e.sum(axis=0)).astype(np.float32))
    return out


def blob_labels(shape, centers, radius):
    """A label map with balls of classes 1.. at ``centers``."""
    grid = np.indices(shape)
    lab = np.zeros(shape, dtype=np.uint8)
    for c, center in enumerate(centers, start=1):
        d2 = sum((g - x) ** 2 for g, x in zip(grid, center, strict=True))
        lab[d2 <= radius**2] = c
    return lab


# ---------------------------------------------------------------------------------- slow obvious versions

def slow_band(lab):
    band = np.zeros(lab.shape, dtype=bool)
    for idx in itertools.product(*(range(n) for n in lab.shape)):
        for axis in range(lab.ndim):
            for step in (-1, 1):
                nb = list(idx)
                nb[axis] += step
                if 0 <= nb[axis] < lab.shape[axis] and lab[tuple(nb)] != lab[idx]:
                    band[idx] = True
    return band


def slow_components(members, fused, weights, n_classes):
    argmaxes = [m.argmax(axis=0) if m.dtype.kind == "f" else m for m in members]
    w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    gaps, cvs, partial = {}, {}, 0
    for c in range(1, n_classes):
        vols = np.array([np.count_nonzero(a == c) for a in argmaxes], dtype=np.float64)
        if (fused == c).any() or (vols > 0).any():
            dices = []
            for a in argmaxes:
                inter = np.count_nonzero((a == c) & (fused == c))
                total = np.count_nonzero(a == c) + np.count_nonzero(fused == c)
                dices.append(2 * inter / total if total else 1.0)
            gaps[c] = 1.0 - float(np.dot(w, dices))
        mean = float(np.dot(w, vols))
        cvs[c] = float(np.sqrt(np.dot(w, (vols - mean) ** 2)) / mean) if mean > 0 else 0.0
        partial += int((vols > 0).any() and (vols == 0).any())
    member_case_dice = []
    for a in argmaxes:
        per_class = []
        for c in range(1, n_classes):
            total = np.count_nonzero(a == c) + np.count_nonzero(fused == c)
            if total:
                per_class.append(2 * np.count_nonzero((a == c) & (fused == c)) / total)
        member_case_dice.append(np.mean(per_class) if per_class else 1.0)
    t = uncertainty_twin(members, fused, weights=weights, num_classes=n_classes)
    band, fg = slow_band(fused), fused > 0
    out = {
        "expected_dice_gap": 1.0 - float(np.dot(w, member_case_dice)),
        "member_dice_gap": np.mean(list(gaps.values())) if gaps else 0.0,
        "worst_class_gap": max(gaps.values()) if gaps else 0.0,
        "volume_cv": np.mean([cvs[c] for c in gaps]) if gaps else 0.0,
        "partial_classes": float(partial),
    }
    for name in ("entropy", "mutual_information", "disagreement"):
        out[f"{name}_band"] = float(t[name][band].mean()) if band.any() else 0.0
        out[f"{name}_fg"] = float(t[name][fg].mean()) if fg.any() else 0.0
    return out, cvs


# ---------------------------------------------------------------------------------- components

@pytest.mark.parametrize("shape", [(5, 6, 7), (1, 4, 9), (8, 9), (1, 1, 1)])
def test_boundary_band_matches_a_loop(rng, shape):
    lab = rng.integers(0, 3, size=shape).astype(np.uint8)
    lab[..., : shape[-1] // 2] = 0  # a mix of uniform and noisy regions
    np.testing.assert_array_equal(boundary_band(lab), slow_band(lab))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("shape", "dtype"), [((6, 7, 9), np.uint8), ((3, 5, 4), np.uint16), ((9, 11), np.int64),
                                              ((17,), np.int16), ((2, 3, 4, 5), np.uint8), ((1, 1, 1), np.uint8)])
def test_one_pass_region_stats_equal_numpy(rng, shape, dtype, threads):
    """The numba pass behind case_qa (label counts, band and foreground means of each map) against numpy's
    bincount, boundary_band and boolean means, including a label out of range (counted apart)."""
    import numba

    from medfuse.quality.qa import _region_stats, _region_stats_numpy

    n_classes = 4
    lab = rng.integers(0, n_classes, size=shape).astype(dtype)
    lab[..., : max(1, shape[-1] // 3)] = 0  # uniform and noisy regions
    maps = UncertaintyMaps(
        entropy=rng.random(shape, dtype=np.float32), mutual_information=rng.random(shape, dtype=np.float32),
        disagreement=rng.random(shape, dtype=np.float32), member_volumes=np.zeros((1, n_classes), np.int64),
        member_overlap=np.zeros((1, n_classes), np.int64), fused_volumes=np.zeros(n_classes, np.int64),
        member_shares=np.ones(1))
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for labels in (lab, np.where(lab == 2, n_classes + 3, lab).astype(dtype)):
            got_counts, got = _region_stats(labels, maps, n_classes)
            want_counts, want = _region_stats_numpy(labels, maps, n_classes)
            if got_counts.size != want_counts.size:  # out of range: the one pass lumps them in one spare class
                assert got_counts.size == n_classes + 1 and got_counts[n_classes] == want_counts[n_classes:].sum()
                got_counts, want_counts = got_counts[:n_classes], want_counts[:n_classes]
            np.testing.assert_array_equal(got_counts, want_counts)
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("box", [((2, 6), (3, 8), (1, 5)), ((0, 4), (0, 9), (2, 7)), ((1, 7), (2, 9), (0, 9)),
                                 ((0, 7), (0, 9), (0, 9))])
def test_case_qa_in_box_equals_case_qa_on_the_whole_image(rng, box):
    """Folder fusion's QA from the fused domain only (background and maps 0 beyond it, some faces on the image
    border, some inside) equals case_qa on the pasted whole image."""
    from medfuse.quality.qa import case_qa_in_box

    shape = (7, 9, 9)
    inner = tuple(hi - lo for lo, hi in box)
    members = random_soft(rng, 3, 4, inner, sharp=2.0)
    fused, maps = fuse_with_maps(members)
    fused[0] = np.where(fused[0] == 0, 1, fused[0])  # foreground on the box faces
    fused[:, -1] = 2
    maps = UncertaintyMaps(entropy=maps.entropy, mutual_information=maps.mutual_information,
                           disagreement=maps.disagreement, member_volumes=maps.member_volumes,
                           member_overlap=maps.member_overlap,
                           fused_volumes=np.bincount(fused.ravel(), minlength=4).astype(np.int64),
                           member_shares=maps.member_shares)
    region = tuple(slice(lo, hi) for lo, hi in box)
    whole_labels = np.zeros(shape, np.uint8)
    whole_labels[region] = fused
    planes = {}
    for name in UncertaintyMaps.MAP_NAMES:
        planes[name] = np.zeros(shape, np.float32)
        planes[name][region] = maps.map(name)
    beyond = int(np.prod(shape)) - fused.size
    whole = UncertaintyMaps(**planes, member_volumes=maps.member_volumes + np.eye(1, 4, dtype=np.int64) * beyond,
                            member_overlap=maps.member_overlap + np.eye(1, 4, dtype=np.int64) * beyond,
                            fused_volumes=maps.fused_volumes + np.eye(1, 4, dtype=np.int64)[0] * beyond,
                            member_shares=maps.member_shares)
    want = case_qa(whole_labels, whole, case="c", spacing_mm=(1.0, 0.5, 0.5))
    got = case_qa_in_box(fused, maps, box, shape, case="c", spacing_mm=(1.0, 0.5, 0.5))
    assert got.components.keys() == want.components.keys()
    for key, value in want.components.items():
        assert got.components[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert got.qa_score == pytest.approx(want.qa_score, rel=1e-12)
    assert got.class_volumes == want.class_volumes and got.volumes_ml == pytest.approx(want.volumes_ml)
    with pytest.raises(ValidationError, match="must be box"):
        case_qa_in_box(fused, maps, ((0, 1), (0, 1), (0, 1)), shape)


@pytest.mark.parametrize(("soft", "n_members", "n_classes", "weighted"),
                         [(True, 3, 4, False), (True, 4, 3, True), (False, 5, 4, False), (False, 2, 3, True),
                          (True, 1, 3, False)])
def test_components_match_slow_obvious_computation(rng, soft, n_members, n_classes, weighted):
    shape = (4, 7, 6)
    if soft:
        members = random_soft(rng, n_members, n_classes, shape)
    else:
        members = [rng.integers(0, n_classes, size=shape).astype(np.uint8) for _ in range(n_members)]
    weights = rng.uniform(0.5, 2.0, size=n_members) if weighted else None
    fused, maps = fuse_with_maps(members, weights, num_classes=n_classes)
    qa = case_qa(fused, maps, case="c1")
    expected, cvs = slow_components(members, fused, weights, n_classes)
    assert list(qa.components) == list(COMPONENTS)
    for name, value in expected.items():
        assert qa.components[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert qa.volume_cv == pytest.approx({str(c): v for c, v in cvs.items()}, rel=1e-9, abs=1e-12)
    assert qa.class_volumes == {str(c): int(np.count_nonzero(fused == c)) for c in range(1, n_classes)}
    assert qa.qa_score == pytest.approx(sum(w * expected[k] for k, w in SCORE_COEFFICIENTS.items()), abs=1e-6)
    assert all(np.isfinite(v) for v in qa.components.values())


def test_spacing_gives_volumes_in_ml_and_to_row_is_flat():
    lab = blob_labels((6, 10, 10), [(3, 3, 3), (3, 7, 7)], 2)
    fused, maps = fuse_with_maps([lab, lab], num_classes=3)
    qa = case_qa(fused, maps, case="x", spacing_mm=(2.0, 0.5, 0.5))
    assert qa.volumes_ml == {"1": pytest.approx(qa.class_volumes["1"] * 0.5 / 1000),
                             "2": pytest.approx(qa.class_volumes["2"] * 0.5 / 1000)}
    row = qa.to_row()
    assert list(row)[:2] == ["case", "qa_score"]
    assert {"volume_1", "volume_cv_2", "volume_ml_1", *COMPONENTS} <= set(row)
    assert "volume_ml_1" not in case_qa(fused, maps).to_row()
    assert "qa_score" in repr(qa)


# ---------------------------------------------------------------------------------- the score

def test_identical_members_and_a_single_member_give_the_minimum(rng):
    lab = blob_labels((8, 16, 16), [(4, 5, 5), (4, 11, 10)], 3)
    for members in ([lab] * 4, [lab], random_soft(rng, 1, 3, lab.shape), random_soft(rng, 1, 3, lab.shape) * 3):
        fused, maps = fuse_with_maps(members, num_classes=3)
        qa = case_qa(fused, maps)
        assert qa.qa_score == 0.0
        assert qa.components["expected_dice_gap"] == 0.0 and qa.components["disagreement_band"] == 0.0


def test_a_member_missing_an_organ_raises_the_score():
    truth = blob_labels((8, 20, 20), [(4, 5, 5), (4, 14, 14)], 3)
    shifted = np.roll(truth, 1, axis=2)
    good = [truth, shifted, truth]
    missing = shifted.copy()
    missing[missing == 2] = 0
    base = case_qa(*fuse_with_maps(good, num_classes=3))
    worse = case_qa(*fuse_with_maps([truth, missing, truth], num_classes=3))
    assert worse.qa_score > base.qa_score > 0
    assert worse.components["partial_classes"] == 1.0 and base.components["partial_classes"] == 0.0


def test_noisier_members_score_higher():
    truth = blob_labels((8, 20, 20), [(4, 6, 6), (4, 14, 13)], 4)
    scores = []
    for shift in (0, 1, 2, 3):
        members = [np.roll(truth, s, axis=a) for s, a in ((0, 1), (shift, 1), (-shift, 2), (shift, 2))]
        scores.append(case_qa(*fuse_with_maps(members, num_classes=3)).qa_score)
    assert scores[0] == 0.0
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_empty_foreground_and_absent_classes_are_finite():
    empty = np.zeros((4, 6, 6), dtype=np.uint8)
    qa = case_qa(*fuse_with_maps([empty, empty], num_classes=5))
    assert qa.qa_score == 0.0 and all(v == 0.0 for v in qa.components.values())
    assert qa.class_volumes == {"1": 0, "2": 0, "3": 0, "4": 0}
    # one member of three predicts an organ the fused result does not keep
    one = empty.copy()
    one[1:3, 1:4, 1:4] = 2
    qa = case_qa(*fuse_with_maps([empty, empty, one], num_classes=5))
    assert qa.class_volumes["2"] == 0
    assert qa.components["entropy_fg"] == 0.0 and qa.components["member_dice_gap"] == pytest.approx(1 / 3)
    assert qa.components["expected_dice_gap"] == pytest.approx(1 / 3)
    assert qa.components["disagreement_band"] == 0.0  # no fused boundary
    assert qa.qa_score > 0 and all(np.isfinite(v) for v in qa.components.values())
    # size-0 volume
    zero = np.zeros((0, 3, 3), dtype=np.uint8)
    qa = case_qa(*fuse_with_maps([zero, zero], num_classes=2))
    assert qa.qa_score == 0.0


def test_bad_input_is_a_validation_error():
    lab = blob_labels((4, 8, 8), [(2, 4, 4)], 2)
    fused, maps = fuse_with_maps([lab, lab], num_classes=2)
    with pytest.raises(ValidationError, match="spatial shape"):
        case_qa(fused[:, :4], maps)
    with pytest.raises(ValidationError, match="not the fused labels"):
        case_qa(np.zeros_like(fused), maps)
    with pytest.raises(ValidationError, match="UncertaintyMaps"):
        case_qa(fused, {"entropy": maps.entropy})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="integer or boolean label map"):
        case_qa(fused.astype(np.float32), maps)
    with pytest.raises(ValidationError, match="non-negative"):
        case_qa(fused.astype(np.int16) - 1, maps)
    with pytest.raises(ValidationError, match="spacing_mm"):
        case_qa(fused, maps, spacing_mm=(1.0, -1.0, 1.0))


# ---------------------------------------------------------------------------------- table and files

def _rows():
    truth = blob_labels((6, 14, 14), [(3, 4, 4), (3, 10, 10)], 3)
    rows = []
    for i, shift in enumerate((2, 0, 1, 3)):
        members = [truth, np.roll(truth, shift, axis=1), np.roll(truth, -shift, axis=2)]
        rows.append(case_qa(*fuse_with_maps(members, num_classes=3), case=f"case_{i}", spacing_mm=1.0))
    return rows


def test_qa_table_sorts_most_suspicious_first():
    rows = _rows()
    table = qa_table(rows)
    assert [r.qa_score for r in table] == sorted((r.qa_score for r in rows), reverse=True)
    assert table[-1].case == "case_1"
    with pytest.raises(ValidationError, match="CaseQA"):
        qa_table([*rows, {"case": "x"}])  # type: ignore[list-item]


def test_write_qa_files_parse_and_are_sorted(tmp_path):
    rows = _rows()
    csv_path, json_path = write_qa(tmp_path / "out", rows)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["qa.csv", "qa.json"]
    with csv_path.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["case"] for r in table] == [r.case for r in qa_table(rows)]
    scores = [float(r["qa_score"]) for r in table]
    assert scores == sorted(scores, reverse=True)
    assert list(table[0])[:2] == ["case", "qa_score"] and set(COMPONENTS) <= set(table[0])
    doc = json.loads(json_path.read_text())
    assert [c["case"] for c in doc["cases"]] == [r["case"] for r in table]
    assert doc["cases"][0] == qa_table(rows)[0].to_row()
    assert doc["coefficients"] == dict(SCORE_COEFFICIENTS) and doc["columns"] == list(table[0])
    # an empty run still writes a header
    csv_path, json_path = write_qa(tmp_path / "none", [])
    assert csv_path.read_text().startswith("case,qa_score,")
    assert json.loads(json_path.read_text())["cases"] == []


def test_top_level_names():
    assert medfuse.CaseQA is CaseQA and medfuse.case_qa is case_qa
    assert medfuse.quality.qa_calibration is qa_calibration


# ---------------------------------------------------------------------------------- calibration

@pytest.mark.parametrize("n", [3, 7, 40])
def test_qa_calibration_matches_scipy(rng, n):
    dice = rng.uniform(0.3, 1.0, n)
    scores = 1 - dice + rng.normal(0, 0.1, n)
    scores[: n // 3] = scores[0]  # ties
    cal = qa_calibration(scores, dice, n_boot=500, seed=3)
    assert cal.spearman == pytest.approx(-stats.spearmanr(scores, dice).statistic, abs=1e-12)
    assert cal.low <= cal.spearman <= cal.high or n == 3
    assert cal.n_cases == n and cal.n_boot == 500
    assert qa_calibration(scores, dice, n_boot=500, seed=3) == cal
    assert set(cal.to_dict()) >= {"spearman", "low", "high", "n_cases"}
    assert "Spearman" in str(cal)


def test_qa_calibration_bootstrap_is_the_percentile_interval(rng):
    n = 12
    dice = rng.uniform(0.3, 1.0, n)
    scores = rng.uniform(0, 1, n)
    cal = qa_calibration(scores, dice, n_boot=300, seed=5)
    boot_rng = np.random.default_rng(5)
    idx = boot_rng.integers(0, n, size=(300, n))
    values = []
    for row in idx:
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = stats.spearmanr(scores[row], 1 - dice[row]).statistic
        if np.isfinite(r):
            values.append(r)
    assert cal.low == pytest.approx(np.quantile(values, 0.025))
    assert cal.high == pytest.approx(np.quantile(values, 0.975))


def test_qa_calibration_drops_nan_dice_and_checks_input():
    cal = qa_calibration([0.1, 0.2, 0.3, 0.9], [0.9, np.nan, 0.8, 0.5], n_boot=50)
    assert cal.n_cases == 3 and cal.spearman == pytest.approx(1.0)
    assert isinstance(cal, QACalibration)
    with pytest.raises(ValidationError, match="one entry per case"):
        qa_calibration([0.1, 0.2, 0.3], [0.9, 0.8])
    with pytest.raises(ValidationError, match="at least 3"):
        qa_calibration([0.1, 0.2], [0.9, 0.8])
    with pytest.raises(ValidationError, match="finite"):
        qa_calibration([0.1, np.nan, 0.3], [0.9, 0.8, 0.7])
    with pytest.raises(ValidationError, match="confidence"):
        qa_calibration([0.1, 0.2, 0.3], [0.9, 0.8, 0.7], confidence=95)
    with pytest.raises(ValidationError, match="n_boot"):
        qa_calibration([0.1, 0.2, 0.3], [0.9, 0.8, 0.7], n_boot=0)
    constant = qa_calibration([0.2, 0.2, 0.2], [0.9, 0.8, 0.7], n_boot=20)
    assert np.isnan(constant.spearman)
