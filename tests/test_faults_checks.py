"""Fault injection: every path that accepts members refuses what fuse_probabilities refuses (medfuse issue 9).

Each bad-member class (NaN, +inf, -inf, negative, logits, unnormalised, sigmoid outputs, probs * 2) goes
through every path: the in-memory API, both accumulators' adds, ClassMajorMean, fuse_folders (mean and
vote), the CLI and search_ensembles. The refusal is a MedfuseError that names the case and the member file
where there are files, and nothing is written for that case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse import io
from medfuse.errors import FormatError, MedfuseError, ValidationError
from medfuse.folders import evaluate_folder, fuse_folders
from medfuse.fusion import ProbabilityAccumulator, fuse_probabilities
from medfuse.fusion.classwise import ClassMajorMean
from medfuse.geometry import Geometry

SHAPE = (6, 10, 12)
BOX = ((1, 6), (0, 10), (2, 12))
C = 3
GEOMETRY = Geometry(SHAPE, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
CASES = ("c0", "c1")

NON_FINITE = "non-finite value"
RANGE = "does not hold probabilities"
SUMS = "sum to 1"

# (name, expected message, how to spoil a good (C, ...) float32 array, position picker)
BAD = {
    "nan": NON_FINITE,
    "posinf": NON_FINITE,
    "neginf": NON_FINITE,
    "negative": RANGE,
    "logits": RANGE,
    "times2": RANGE,
    "unnormalised": SUMS,
    "sigmoid": SUMS,
}


def _good(rng: np.random.Generator, sizes: tuple[int, ...]) -> np.ndarray:
    p = rng.random((C, *sizes)) + 0.05
    return (p / p.sum(axis=0, keepdims=True)).astype(np.float32)


def _spoil(kind: str, p: np.ndarray, rng: np.random.Generator, *, last: bool = False) -> np.ndarray:
    """A bad copy of ``p``; single planted values go to a random voxel (or the very last one)."""
    q = p.astype(np.float32).copy()
    flat = q.reshape(C, -1)
    at = flat.shape[1] - 1 if last else int(rng.integers(flat.shape[1]))
    c = int(rng.integers(C))
    if kind in ("nan", "posinf", "neginf", "negative"):
        flat[c, at] = {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf, "negative": -0.25}[kind]
    elif kind == "logits":
        q = np.log(q) * 3.0 + 1.0
    elif kind == "times2":
        q = q * 2.0
    elif kind == "unnormalised":
        q = q * 0.5
    elif kind == "sigmoid":
        q = rng.random(q.shape).astype(np.float32)
    return q


def _write_member(folder: Path, case: str, probs: np.ndarray) -> None:
    """A v1 case (npz + pkl + nii.gz), its npz replaced by ``probs`` as given (write_v1_case refuses bad ones)."""
    sizes = tuple(hi - lo for lo, hi in BOX)
    good = np.full((C, *sizes), 1.0 / C, dtype=np.float32)
    io.write_v1_case(folder, case, probabilities=good, geometry=GEOMETRY, crop_bbox=[list(b) for b in BOX])
    np.savez_compressed(folder / f"{case}.npz", softmax=probs.astype(np.float16))


@pytest.fixture
def folders(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, Path]:
    """Two good member folders and a reference folder."""
    sizes = tuple(hi - lo for lo, hi in BOX)
    a, b, refs = tmp_path / "a", tmp_path / "b", tmp_path / "refs"
    for case in CASES:
        _write_member(a, case, _good(rng, sizes))
        _write_member(b, case, _good(rng, sizes))
        io.write_nifti(refs / f"{case}.nii.gz", rng.integers(0, C, size=SHAPE).astype(np.uint8), GEOMETRY)
    return a, b, refs


def _spoiled_copy(src: Path, dst: Path, kind: str, rng: np.random.Generator, case: str = "c1") -> Path:
    shutil.copytree(src, dst)
    sizes = tuple(hi - lo for lo, hi in BOX)
    np.savez_compressed(dst / f"{case}.npz", softmax=_spoil(kind, _good(rng, sizes), rng, last=True).astype(np.float16))
    return dst / f"{case}.npz"


# ------------------------------------------------------------------------------------------ in memory
@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fuse_probabilities_refuses(rng, kind, dtype):
    good = _good(rng, SHAPE)
    bad = _spoil(kind, good, rng).astype(dtype)
    with pytest.raises(ValidationError, match=BAD[kind]):
        fuse_probabilities([good.astype(dtype), bad])


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("last", [False, True])
def test_accumulator_add_refuses(rng, kind, last):
    acc = ProbabilityAccumulator(C, SHAPE)
    acc.add(_good(rng, SHAPE))
    with pytest.raises(ValidationError, match=BAD[kind]):
        acc.add(_spoil(kind, _good(rng, SHAPE), rng, last=last).astype(np.float16))
    with pytest.raises(ValidationError, match="unusable"):
        acc.labels()


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("class_major", [False, True])
def test_accumulator_add_channel_refuses(rng, kind, class_major):
    acc = ProbabilityAccumulator(C, SHAPE)
    members = [_good(rng, SHAPE), _spoil(kind, _good(rng, SHAPE), rng, last=True)]
    order = [(c, m) for c in range(C) for m in range(2)] if class_major else \
        [(c, m) for m in range(2) for c in range(C)]
    with pytest.raises(ValidationError, match=BAD[kind]) as info:
        for c, m in order:
            acc.add_channel(c, members[m][c], weight=1.0)
    assert "member 1" in str(info.value)


def test_accumulator_add_channel_accepts_good_members_in_any_order(rng):
    members = [_good(rng, SHAPE) for _ in range(3)]
    acc = ProbabilityAccumulator(C, SHAPE)
    for c in (2, 0, 1):
        for p in members:
            acc.add_channel(c, p[c].astype(np.float16))
    np.testing.assert_array_equal(acc.labels(), fuse_probabilities([p.astype(np.float16) for p in members]))


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_class_major_mean_refuses(rng, kind, weight):
    sizes = tuple(hi - lo for lo, hi in BOX)
    members = [_good(rng, sizes), _spoil(kind, _good(rng, sizes), rng, last=True).astype(np.float16)]
    fuser = ClassMajorMean(C, SHAPE, names={1: "case 'x': member '/m/x.npz'"})
    with pytest.raises(ValidationError, match=BAD[kind]) as info:
        for c in range(C):
            fuser.begin_class(c)
            for m, p in enumerate(members):
                fuser.add_probabilities(p[c], weight=weight if m else 1.0, box=BOX)
            fuser.end_class(1.0 + weight)
    assert str(info.value).startswith("case 'x': member '/m/x.npz'")


def test_class_major_mean_refuses_a_zero_weight_class(rng):
    fuser = ClassMajorMean(C, SHAPE)
    p = _good(rng, SHAPE)
    fuser.begin_class(0)
    fuser.add_probabilities(p[0], weight=1.0)
    fuser.end_class(1.0)
    fuser.begin_class(1)
    fuser.add_probabilities(p[1], weight=0.0)
    with pytest.raises(ValidationError, match=r"`weights` gives class\(es\) \[1\] zero weight in every member"):
        fuser.end_class(0.0)


# ------------------------------------------------------------------------------------------ folders
@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("method", ["mean", "vote"])
def test_fuse_folders_refuses_and_writes_nothing_for_the_case(folders, tmp_path, rng, kind, method):
    a, b, _ = folders
    bad_file = _spoiled_copy(b, tmp_path / "b_bad", kind, rng)
    out = tmp_path / "out"
    with pytest.raises(MedfuseError, match=BAD[kind]) as info:
        fuse_folders([a, tmp_path / "b_bad"], out, method=method, progress=False)
    message = str(info.value)
    assert "case 'c1'" in message and str(bad_file) in message
    assert not (out / "c1.nii.gz").exists()


def test_fuse_folders_accepts_good_members(folders, tmp_path):
    a, b, _ = folders
    report = fuse_folders([a, b], tmp_path / "out", progress=False)
    assert set(report.written) == set(CASES)
    labels, _ = io.read_nifti(tmp_path / "out" / "c1.nii.gz")
    pa = io.open_folder(a).case("c1").read_probabilities(full=True)
    pb = io.open_folder(b).case("c1").read_probabilities(full=True)
    mean = (pa.astype(np.float64) + pb) / 2
    top2 = np.sort(mean, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4  # the two sums round differently: compare where no near-tie can flip
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], mean.argmax(axis=0)[clear])


def test_fuse_folders_refuses_a_zero_weight_class(folders, tmp_path):
    a, b, _ = folders
    out = tmp_path / "out"
    with pytest.raises(ValidationError, match=r"`weights` gives class\(es\) \[2\] zero weight in every member"):
        fuse_folders([a, b], out, weights=[[1.0, 1.0, 0.0], [2.0, 1.0, 0.0]], progress=False)
    assert not list(out.glob("*.nii.gz"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(medfuse.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "medfuse", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.parametrize("kind", ["nan", "logits", "sigmoid"])
def test_cli_fuse_refuses(folders, tmp_path, rng, kind):
    a, b, _ = folders
    bad_file = _spoiled_copy(b, tmp_path / "b_bad", kind, rng)
    out = tmp_path / "out"
    done = _cli("fuse", str(a), str(tmp_path / "b_bad"), "-o", str(out), "--no-progress")
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert "case 'c1'" in done.stderr and str(bad_file) in done.stderr and BAD[kind] in done.stderr
    assert not (out / "c1.nii.gz").exists()


@pytest.mark.parametrize("kind", ["nan", "negative", "unnormalised"])
def test_search_refuses(folders, tmp_path, rng, kind):
    a, b, refs = folders
    bad_file = _spoiled_copy(b, tmp_path / "b_bad", kind, rng)
    with pytest.raises(MedfuseError, match=BAD[kind]) as info:
        medfuse.search_ensembles([a, tmp_path / "b_bad"], references=refs, n_bootstrap=0,
                                 postprocessing="none")
    assert "case 'c1'" in str(info.value) and str(bad_file) in str(info.value)


# ------------------------------------------------------------------------------------------ label maps
def _label_folder(folder: Path, labels: np.ndarray, *, dtype) -> None:
    for case in CASES:
        io.write_nifti(folder / f"{case}.nii.gz", labels.astype(dtype), GEOMETRY, dtype=dtype)


def test_float_label_map_with_a_fraction_is_refused_by_fuse_and_evaluate(folders, tmp_path, rng):
    a, _, refs = folders
    labels = rng.integers(0, C, size=SHAPE).astype(np.float32)
    labels[-1, -1, -1] = 0.5
    hard = tmp_path / "hard"
    _label_folder(hard, labels, dtype=np.float32)
    with pytest.raises(FormatError, match=r"case 'c0': .*c0\.nii\.gz.* first is 0\.5 at voxel \(5, 9, 11\)"):
        fuse_folders([a, hard], tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*.nii.gz"))
    with pytest.raises(FormatError, match=r"case 'c0': .*hard.*c0\.nii\.gz.* first is 0\.5"):
        evaluate_folder(refs, hard, progress=False)
    with pytest.raises(FormatError, match=r"case 'c0': .*hard.*c0\.nii\.gz.* first is 0\.5"):
        evaluate_folder(hard, refs, progress=False)  # a float reference: the same rule


def test_integral_float_label_map_is_accepted_like_its_integer_twin(folders, tmp_path, rng):
    a, _, refs = folders
    labels = rng.integers(0, C, size=SHAPE)
    as_float, as_int = tmp_path / "float", tmp_path / "int"
    _label_folder(as_float, labels, dtype=np.float32)
    _label_folder(as_int, labels, dtype=np.uint8)
    fuse_folders([a, as_float], tmp_path / "fused_float", progress=False)
    fuse_folders([a, as_int], tmp_path / "fused_int", progress=False)
    for case in CASES:
        got, _ = io.read_nifti(tmp_path / "fused_float" / f"{case}.nii.gz")
        want, _ = io.read_nifti(tmp_path / "fused_int" / f"{case}.nii.gz")
        np.testing.assert_array_equal(got, want)
    e_float = evaluate_folder(refs, as_float, progress=False)
    e_int = evaluate_folder(refs, as_int, progress=False)
    assert e_float.foreground_mean_dice == e_int.foreground_mean_dice


@pytest.mark.parametrize("value", [np.nan, -1.0, 70000.0])
def test_label_map_rule_names_the_first_offending_value(value):
    from medfuse.io.labelmaps import label_map_from_file

    a = np.zeros((2, 3, 4), np.float64)
    a[1, 2, 3] = value
    with pytest.raises(FormatError, match=r"case 'k': '/f\.nii\.gz' is not a label map.*at voxel \(1, 2, 3\)"):
        label_map_from_file(a, source="/f.nii.gz", case="k")
    b = np.full((2, 3), 7.0, np.float32)
    out = label_map_from_file(b, source="/f", case="k")
    assert out.dtype == np.uint8 and (out == 7).all()
