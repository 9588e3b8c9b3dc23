"""fuse_folders and evaluate_folder on synthetic folders of every layout, against a float64 numpy twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse import io, synthetic
from medfuse._core.atomic import TEMP_MARKER
from medfuse.errors import CaseMismatchError, FormatError, GeometryMismatchError, ValidationError
from medfuse.folders import evaluate_folder, fuse_folders
from medfuse.geometry import Geometry, paste_into_box

SHAPE = (20, 40, 36)
NUM_LABELS = 4
C = NUM_LABELS + 1
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def _phantom(i: int) -> synthetic.Phantom:
    return synthetic.phantom(SHAPE, num_labels=NUM_LABELS, spacing=(2.5, 1.0, 1.0), seed=10 + i,
                             direction=DIRECTION)


def _full(probs_cropped: np.ndarray, box, shape) -> np.ndarray:
    fill = np.zeros(probs_cropped.shape[0])
    fill[0] = 1.0
    return paste_into_box(probs_cropped.astype(np.float64), box, shape, fill=fill)


class Cases:
    """Three synthetic cases with v1 folders of three models, references, and the float64 probabilities."""

    def __init__(self, root: Path, n_cases: int = 3, qualities=(0.9, 0.75, 0.6)):
        self.root = root
        self.phantoms = {f"case_{i}": _phantom(i) for i in range(n_cases)}
        self.full: dict[str, list[np.ndarray]] = {}
        self.members = [root / f"model_{m}" for m in range(len(qualities))]
        self.references = root / "references"
        for case, ph in self.phantoms.items():
            box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
            self.full[case] = []
            io.write_nifti(self.references / f"{case}.nii.gz", ph.labels, ph.geometry)
            for m, q in enumerate(qualities):
                probs = synthetic.simulate_probabilities(ph, quality=q, dtype=np.float16,
                                                         seed=np.random.SeedSequence([7, m, len(self.full)]))
                cropped = np.ascontiguousarray(probs[(slice(None), *box)])
                io.write_v1_case(self.members[m], case, probabilities=cropped, geometry=ph.geometry,
                                 crop_bbox=ph.crop_bbox)
                self.full[case].append(_full(cropped, ph.crop_bbox, ph.geometry.shape))


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Cases:
    return Cases(tmp_path_factory.mktemp("cv"))


def _reference_mean_labels(members: list[np.ndarray], weights=None) -> tuple[np.ndarray, np.ndarray]:
    """float64 weighted mean argmax (ties lowest) and the gap between the two best classes."""
    m = len(members)
    w = np.ones((m, members[0].shape[0])) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.repeat(w[:, None], members[0].shape[0], axis=1)
    total = sum(w[i][:, None, None, None] * members[i] for i in range(m))
    mean = total / w.sum(axis=0)[:, None, None, None]
    srt = np.sort(mean, axis=0)
    return mean.argmax(axis=0), srt[-1] - srt[-2]


def _assert_labels_match(got: np.ndarray, expected: np.ndarray, gap: np.ndarray, tol: float = 2e-3) -> None:
    """Equal wherever the decision is not a near-tie (float16 inputs, float32 sums)."""
    clear = gap > tol
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got[clear], expected[clear])


def test_mean_fusion_matches_float64_reference_and_keeps_geometry(cases, tmp_path):
    out = tmp_path / "fused"
    report = fuse_folders(cases.members, out, progress=False)
    assert report.written == tuple(sorted(cases.phantoms)) and report.skipped == ()
    for case, ph in cases.phantoms.items():
        labels, geometry = io.read_nifti(out / f"{case}.nii.gz")
        assert labels.dtype == np.uint8
        assert geometry == ph.geometry  # exactly the input geometry, non-identity direction included
        expected, gap = _reference_mean_labels(cases.full[case])
        _assert_labels_match(labels, expected, gap)
    meta = json.loads((out / "fusion.json").read_text())
    assert meta["method"] == "mean" and meta["members"] == [str(p) for p in cases.members]
    assert meta["cases"] == sorted(cases.phantoms) and "seconds_per_case" not in meta  # no timing in it
    assert set(report.seconds) == set(cases.phantoms)
    assert {"medfuse", "numpy", "numba"} <= set(meta["versions"])


@pytest.mark.parametrize("weights", [[3.0, 1.0, 0.0], [[1, 0, 2, 1, 1], [1, 2, 0, 1, 1], [0.5, 1, 1, 1, 3]]])
def test_weighted_mean_fusion(cases, tmp_path, weights):
    out = tmp_path / "fused"
    fuse_folders(cases.members, out, weights=weights, progress=False)
    for case in cases.phantoms:
        labels, _ = io.read_nifti(out / f"{case}.nii.gz")
        expected, gap = _reference_mean_labels(cases.full[case], weights)
        _assert_labels_match(labels, expected, gap)


def test_vote_fusion_matches_numpy_vote(cases, tmp_path):
    out = tmp_path / "voted"
    fuse_folders(cases.members, out, method="vote", weights=[1, 1, 1.5], progress=False)
    for case in cases.phantoms:
        labels, _ = io.read_nifti(out / f"{case}.nii.gz")
        member_labels = [io.read_nifti(m / f"{case}.nii.gz")[0] for m in cases.members]
        counts = np.zeros((C, *SHAPE))
        for lab, w in zip(member_labels, [1, 1, 1.5], strict=True):
            counts += w * (lab[None] == np.arange(C)[:, None, None, None])
        np.testing.assert_array_equal(labels, counts.argmax(axis=0))


def test_mixed_layouts_label_member_joins_as_one_hot(cases, tmp_path):
    """A label-only folder and a v2 folder join two v1 folders; the label map counts as one-hot."""
    hard = tmp_path / "labels_only"
    v2 = tmp_path / "v2"
    for i, (case, ph) in enumerate(cases.phantoms.items()):
        lab = synthetic.simulate_labels(ph, quality=0.85, seed=100 + i)
        io.write_nifti(hard / f"{case}.nii.gz", lab, ph.geometry)
        io.write_v2_case(v2, case, probabilities=cases.full[case][2].astype(np.float32), geometry=ph.geometry,
                         crop_bbox=ph.crop_bbox)
    out = tmp_path / "mixed"
    report = fuse_folders([cases.members[0], cases.members[1], hard, v2], out, weights=[1, 1, 2, 1], progress=False)
    assert report.layouts == ("v1", "v1", "labels", "v2")
    for case in cases.phantoms:
        lab = io.read_nifti(hard / f"{case}.nii.gz")[0]
        onehot = (lab[None] == np.arange(C)[:, None, None, None]).astype(np.float64)
        members = [cases.full[case][0], cases.full[case][1], onehot, cases.full[case][2]]
        expected, gap = _reference_mean_labels(members, [1, 1, 2, 1])
        got = io.read_nifti(out / f"{case}.nii.gz")[0]
        _assert_labels_match(got, expected, gap)


def test_label_member_outside_crop_box_is_not_lost(cases, tmp_path):
    """A hard member's foreground outside the probability members' crop box still counts."""
    case, ph = next(iter(cases.phantoms.items()))
    (z0, _), (y0, _), (x0, _) = ph.crop_bbox
    if z0 == 0 and y0 == 0 and x0 == 0:
        pytest.skip("phantom crop box starts at the corner")
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[0, 0, 0] = 3  # outside every crop box (the box starts after the corner on some axis)
    hard = tmp_path / "hard"
    for c in cases.phantoms:
        io.write_nifti(hard / f"{c}.nii.gz", lab, cases.phantoms[c].geometry)
    out = tmp_path / "out"
    fuse_folders([cases.members[0], hard], out, weights=[1, 3], progress=False)
    assert io.read_nifti(out / f"{case}.nii.gz")[0][0, 0, 0] == 3


def test_resume_skips_finished_cases_and_refuses_other_settings(cases, tmp_path):
    out = tmp_path / "fused"
    fuse_folders(cases.members, out, progress=False)
    victim = sorted(cases.phantoms)[1]
    before = {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in cases.phantoms if c != victim}
    (out / f"{victim}.nii.gz").unlink()
    report = fuse_folders(cases.members, out, progress=False)
    assert report.written == (victim,)
    assert set(report.skipped) == set(before)
    assert {c: (out / f"{c}.nii.gz").stat().st_mtime_ns for c in before} == before
    with pytest.raises(ValidationError, match="other settings"):
        fuse_folders(cases.members, out, weights=[1, 2, 3], progress=False)
    again = fuse_folders(cases.members, out, weights=[1, 2, 3], overwrite=True, progress=False)
    assert set(again.written) == set(cases.phantoms)


def test_interrupted_run_leaves_no_partial_file_and_rerun_completes(cases, tmp_path, monkeypatch):
    out = tmp_path / "fused"
    real_write = io.write_nifti
    calls = {"n": 0}

    def flaky_write(path, array, geometry, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while the second case was written
        return real_write(path, array, geometry, **kw)

    monkeypatch.setattr(io, "write_nifti", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        fuse_folders(cases.members, out, progress=False)
    monkeypatch.undo()
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert len(written) == 1
    report = fuse_folders(cases.members, out, progress=False)
    assert len(report.written) == len(cases.phantoms) - 1
    for case in cases.phantoms:
        io.read_nifti(out / f"{case}.nii.gz")  # every file complete and readable


def test_sigkill_mid_run_then_resume(cases, tmp_path):
    """Kill -9 a fusion process at an arbitrary moment: nothing truncated, and a re-run completes."""
    out = tmp_path / "fused"
    code = (
        "import sys; from medfuse.folders.fuse import fuse_folders; "
        f"fuse_folders({[str(m) for m in cases.members]!r}, {str(out)!r}, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def finished():
        return [p for p in out.glob("*.nii.gz") if not io.is_temporary(p.name)] if out.exists() else []

    deadline = time.time() + 120
    while time.time() < deadline and not finished() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for f in finished():
        io.read_nifti(f)  # no truncated output under a final name
    fuse_folders(cases.members, out, progress=False)
    # the re-run completed every case and removed the temporary files the killed run left behind
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # not the journal, the lock
    assert visible == sorted([f"{c}.nii.gz" for c in cases.phantoms] + ["fusion.json"])
    assert not [p for p in out.rglob("*") if io.is_temporary(p.name)]


def test_save_probabilities_writes_a_v1_folder_that_fuses_again(cases, tmp_path):
    out = tmp_path / "fused"
    fuse_folders(cases.members, out, save_probabilities=True, progress=False)
    folder = io.open_folder(out)
    assert folder.layout == "v1" and list(folder.cases) == sorted(cases.phantoms)
    for case in cases.phantoms:
        src = folder.case(case)
        assert src.geometry == cases.phantoms[case].geometry
        full = src.read_probabilities(full=True).astype(np.float64)
        expected = np.mean(cases.full[case], axis=0)
        np.testing.assert_allclose(full, expected, atol=2e-3)  # float16 storage
    twice = tmp_path / "twice"
    fuse_folders([out, cases.members[0]], twice, progress=False)
    assert len(list(twice.glob("*.nii.gz"))) == len(cases.phantoms)


def test_postprocessing_removes_far_fragments(cases, tmp_path):
    case = next(iter(cases.phantoms))
    # a label-only member with a fragment of label 1 far from the organ
    hard = tmp_path / "hard"
    frag_at = None
    for c, p in cases.phantoms.items():
        lab = p.labels.copy()
        empty = np.argwhere(p.labels == 0)
        frag = tuple(empty[len(empty) // 2])
        lab[frag] = 1
        if c == case:
            frag_at = frag
        io.write_nifti(hard / f"{c}.nii.gz", lab, p.geometry)
    pp = {"for_which_classes": [1], "min_valid_object_sizes": "None"}
    plain, cleaned = tmp_path / "plain", tmp_path / "cleaned"
    fuse_folders([hard], plain, method="vote", progress=False)
    fuse_folders([hard], cleaned, method="vote", postprocessing=pp, progress=False)
    assert io.read_nifti(plain / f"{case}.nii.gz")[0][frag_at] == 1
    assert io.read_nifti(cleaned / f"{case}.nii.gz")[0][frag_at] == 0
    meta = json.loads((cleaned / "fusion.json").read_text())
    assert meta["postprocessing"]["for_which_classes"] == [1]


def test_executor_gives_the_serial_result(cases, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    serial, threaded = tmp_path / "serial", tmp_path / "threaded"
    fuse_folders(cases.members, serial, progress=False)
    with ThreadPoolExecutor(2) as ex:
        fuse_folders(cases.members, threaded, executor=ex, progress=False)
    for case in cases.phantoms:
        np.testing.assert_array_equal(io.read_nifti(serial / f"{case}.nii.gz")[0],
                                      io.read_nifti(threaded / f"{case}.nii.gz")[0])


@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_result(cases, tmp_path):
    distributed = pytest.importorskip("distributed")
    serial, clustered = tmp_path / "serial", tmp_path / "dask"
    fuse_folders(cases.members, serial, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        fuse_folders(cases.members, clustered, executor=client.get_executor(), progress=False)
    for case in cases.phantoms:
        np.testing.assert_array_equal(io.read_nifti(serial / f"{case}.nii.gz")[0],
                                      io.read_nifti(clustered / f"{case}.nii.gz")[0])


# ------------------------------------------------------------------------------------------ bad input
def test_missing_case_in_one_folder_is_listed(cases, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    keep = sorted(cases.phantoms)[:-1]
    for case in keep:
        for ext in (".npz", ".pkl", ".nii.gz"):
            (partial / f"{case}{ext}").write_bytes((cases.members[1] / f"{case}{ext}").read_bytes())
    missing = sorted(cases.phantoms)[-1]
    with pytest.raises(CaseMismatchError, match=missing) as exc:
        fuse_folders([cases.members[0], partial], tmp_path / "out", progress=False)
    assert "partial" in str(exc.value)
    report = fuse_folders([cases.members[0], partial], tmp_path / "out", cases=keep, progress=False)
    assert report.written == tuple(keep)


def test_members_with_different_geometry(cases, tmp_path):
    moved = tmp_path / "moved"
    for case, ph in cases.phantoms.items():
        g = ph.geometry
        shifted = Geometry(g.shape, g.spacing, (g.origin[0] + 5.0, *g.origin[1:]), g.direction)
        io.write_nifti(moved / f"{case}.nii.gz", ph.labels, shifted)
    with pytest.raises(GeometryMismatchError, match="origin") as exc:
        fuse_folders([cases.members[0], moved], tmp_path / "out", progress=False)
    assert "moved" in str(exc.value) and "case_" in str(exc.value)


def test_output_equal_to_an_input_is_refused(cases):
    with pytest.raises(ValidationError, match="never writes"):
        fuse_folders(cases.members, cases.members[0], progress=False)


def test_empty_folder_is_refused(cases, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises((FormatError, CaseMismatchError, ValidationError), match="empty"):
        fuse_folders([cases.members[0], empty], tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [1, 2]}, "one entry per member"),
        ({"weights": [1, -1, 1]}, "non-negative"),
        ({"weights": [0, 0, 0]}, "all be zero"),
        ({"weights": [[1, 1], [1, 1], [1, 1]]}, "per-class columns"),
        ({"method": "median"}, "method"),
        ({"method": "vote", "save_probabilities": True}, "save_probabilities"),
    ],
)
def test_bad_arguments(cases, tmp_path, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        fuse_folders(cases.members, tmp_path / "out", progress=False, **kwargs)
    assert not list((tmp_path / "out").glob("*.nii.gz")) if (tmp_path / "out").exists() else True


def test_single_path_instead_of_list(cases, tmp_path):
    with pytest.raises(ValidationError, match="sequence of folders"):
        fuse_folders(str(cases.members[0]), tmp_path / "out")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ evaluation
def test_evaluate_folder_matches_in_memory_overlap(cases, tmp_path):
    pred = cases.members[1]
    ev = evaluate_folder(cases.references, pred, progress=False, json_path=tmp_path / "summary.json",
                         csv_path=tmp_path / "cases.csv", plot_path=tmp_path / "dice.png")
    assert ev.labels == tuple(range(1, C))
    for case, ph in cases.phantoms.items():
        p = io.read_nifti(pred / f"{case}.nii.gz")[0]
        expected = medfuse.overlap(ph.labels, p, labels=ev.labels, spacing_mm=ph.spacing)
        got = ev.summary.per_case[case]
        for k in ev.labels:
            assert got[k].dice == pytest.approx(expected[k].dice, nan_ok=True)
            assert got[k].tp == expected[k].tp and got[k].fp == expected[k].fp
            assert got[k].reference_volume_mm3 == pytest.approx(expected[k].reference_volume_mm3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"metric_per_case", "mean", "foreground_mean"} <= set(summary)
    assert len(summary["metric_per_case"]) == len(cases.phantoms)
    assert summary["foreground_mean"]["Dice"] == pytest.approx(ev.foreground_mean_dice)
    assert (tmp_path / "cases.csv").read_text().count("\n") >= len(cases.phantoms) * (C - 1)
    assert (tmp_path / "dice.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_lists_missing_and_extra_cases(cases, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    first = sorted(cases.phantoms)[0]
    (pred / f"{first}.nii.gz").write_bytes((cases.members[0] / f"{first}.nii.gz").read_bytes())
    (pred / "stranger.nii.gz").write_bytes((cases.members[0] / f"{first}.nii.gz").read_bytes())
    with pytest.raises(CaseMismatchError, match="stranger") as exc:
        evaluate_folder(cases.references, pred, progress=False)
    assert sorted(cases.phantoms)[1] in str(exc.value)


def test_evaluate_refuses_labels_the_references_lack(cases, tmp_path):
    pred = tmp_path / "pred"
    for case, ph in cases.phantoms.items():
        lab = ph.labels.copy()
        lab[0, 0, 0] = 9
        io.write_nifti(pred / f"{case}.nii.gz", lab, ph.geometry)
    with pytest.raises(ValidationError, match=r"\[9\]"):
        evaluate_folder(cases.references, pred, progress=False)
    ev = evaluate_folder(cases.references, pred, labels=[*range(1, C), 9], progress=False)
    assert ev.summary.mean[9]["dice"] == 0.0


def test_evaluate_checks_pair_geometry(cases, tmp_path):
    pred = tmp_path / "pred"
    for case, ph in cases.phantoms.items():
        g = ph.geometry
        io.write_nifti(pred / f"{case}.nii.gz", ph.labels, Geometry(g.shape, (3.0, 1.0, 1.0), g.origin, g.direction))
    with pytest.raises(GeometryMismatchError, match="spacing"):
        evaluate_folder(cases.references, pred, progress=False)


def test_perfect_prediction_scores_one(cases):
    ev = evaluate_folder(cases.references, cases.references, progress=False)
    assert ev.foreground_mean_dice == pytest.approx(1.0)


def test_process_pool_via_cli_jobs(cases, tmp_path):
    from medfuse.cli import main

    out = tmp_path / "cli"
    assert main(["fuse", *map(str, cases.members), "-o", str(out), "--jobs", "2", "--no-progress",
                 "--weights", "1,1,2"]) == 0
    assert len(list(out.glob("*.nii.gz"))) == len(cases.phantoms)
    assert main(["evaluate", str(cases.references), str(out), "--no-progress"]) == 0
    assert os.path.exists(out / "fusion.json")


@pytest.mark.parametrize("damage", ["truncate_npz", "garbage_pkl", "malicious_pkl", "wrong_shape_npz"])
def test_damaged_member_file_gives_one_clear_error_and_loses_nothing(cases, tmp_path, damage):
    import pickle
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cases.members[1], broken)
    victim = sorted(cases.phantoms)[-1]
    npz, pkl = broken / f"{victim}.npz", broken / f"{victim}.pkl"
    if damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "garbage_pkl":
        pkl.write_bytes(b"\x80\x04not a pickle")
    elif damage == "malicious_pkl":
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        pkl.write_bytes(pickle.dumps(Evil()))
    else:
        np.savez_compressed(npz, softmax=np.zeros((C, 2, 2, 2), np.float16))
    out = tmp_path / "out"
    with pytest.raises((FormatError, GeometryMismatchError)) as exc:
        fuse_folders([cases.members[0], broken], out, progress=False)
    assert victim in str(exc.value)
    if damage == "malicious_pkl":
        assert not (tmp_path / "pwned").exists()
    # nothing partial: every written file is complete, and the damaged case is not among them
    for f in out.glob("*.nii.gz"):
        io.read_nifti(f)
    assert not (out / f"{victim}.nii.gz").exists()


@pytest.mark.slow
def test_cli_scheduler_address_runs_on_a_dask_cluster(cases, tmp_path):
    distributed = pytest.importorskip("distributed")
    from medfuse.cli import main

    serial, remote = tmp_path / "serial", tmp_path / "remote"
    fuse_folders(cases.members, serial, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as lc:
        assert main(["fuse", *map(str, cases.members), "-o", str(remote), "--scheduler", lc.scheduler_address,
                     "--no-progress"]) == 0
    for case in cases.phantoms:
        np.testing.assert_array_equal(io.read_nifti(serial / f"{case}.nii.gz")[0],
                                      io.read_nifti(remote / f"{case}.nii.gz")[0])


def test_evaluate_ignore_label_matches_overlap(cases, tmp_path):
    refs = tmp_path / "refs"
    for case, ph in cases.phantoms.items():
        lab = ph.labels.copy()
        lab[:, :5] = 7  # an "ignore" band in the reference
        io.write_nifti(refs / f"{case}.nii.gz", lab, ph.geometry)
    pred = cases.members[0]
    ev = evaluate_folder(refs, pred, ignore_label=7, progress=False)
    assert 7 not in ev.labels
    for case in cases.phantoms:
        r = io.read_nifti(refs / f"{case}.nii.gz")[0]
        p = io.read_nifti(pred / f"{case}.nii.gz")[0]
        expected = medfuse.overlap(r, p, labels=ev.labels, ignore_label=7)
        for k in ev.labels:
            got = ev.summary.per_case[case][k]
            assert (got.tp, got.fp, got.fn) == (expected[k].tp, expected[k].fp, expected[k].fn)


def test_rerun_removes_temporary_files_of_an_interrupted_run(cases, tmp_path):
    out = tmp_path / "fused"
    out.mkdir()
    stale = out / f"{TEMP_MARKER}dead-{sorted(cases.phantoms)[0]}.nii.gz"
    stale.write_bytes(b"\x1f\x8b half a file")
    keep = out / "notes.txt"
    keep.write_text("mine")
    fuse_folders(cases.members, out, progress=False)
    assert not stale.exists() and keep.read_text() == "mine"
