"""Resume by journal and the output-folder lock, under faults: SIGKILL at random points, other settings,
unrelated or damaged files, two runs at once, stale locks (medfuse issue 9, classes 3 and 6)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse import io, synthetic
from medfuse.cli import main
from medfuse.errors import FolderLockedError, ValidationError
from medfuse.folders import fuse_folders
from medfuse.io.journal import JOURNAL_DIR, Journal, fingerprint, v1_case_files
from medfuse.io.lock import LOCK_NAME, folder_lock, lock_holder

N_CASES = 20
SHAPE = (8, 12, 10)
SRC = str(Path(medfuse.__file__).resolve().parents[1])  # the medfuse the children must import


class Ensemble:
    """20 tiny cases, two v1 members; ``reference(...)`` caches uninterrupted outputs per settings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members = [root / "m0", root / "m1"]
        self.cases = [f"case_{i:02d}" for i in range(N_CASES)]
        for i, case in enumerate(self.cases):
            ph = synthetic.phantom(SHAPE, num_labels=2, seed=i)
            box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
            for m, member in enumerate(self.members):
                probs = synthetic.simulate_probabilities(ph, quality=0.7 + 0.1 * m, dtype=np.float16, seed=50 * m + i)
                io.write_v1_case(member, case, probabilities=np.ascontiguousarray(probs[(slice(None), *box)]),
                                 geometry=ph.geometry, crop_bbox=ph.crop_bbox)
        self._refs: dict[str, Path] = {}

    def reference(self, weights: list[float] | None = None) -> Path:
        key = json.dumps(weights)
        if key not in self._refs:
            out = self.root / f"reference_{len(self._refs)}"
            fuse_folders(self.members, out, weights=weights, save_probabilities=True, progress=False)
            self._refs[key] = out
        return self._refs[key]


@pytest.fixture(scope="module")
def ens(tmp_path_factory) -> Ensemble:
    return Ensemble(tmp_path_factory.mktemp("ensemble"))


def visible_files(folder: Path) -> dict[str, bytes]:
    """Every file of the folder a user sees (not the hidden journal and lock), with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file()}


def assert_same_folder(got: Path, expected: Path) -> None:
    a, b = visible_files(got), visible_files(expected)
    assert sorted(a) == sorted(b)
    different = [n for n in a if a[n] != b[n]]
    assert not different, f"files differ: {different}"


def done_records(out: Path) -> int:
    records = out / JOURNAL_DIR / "journal"
    if not records.is_dir():
        return 0
    n = 0
    for p in records.glob("*.json"):
        if io.is_temporary(p.name):  # a record still being written (verified, not yet renamed): not done
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):  # a record being replaced right now
            n += json.loads(p.read_text())["state"] == "done"
    return n


def start_child(ens: Ensemble, out: Path, *, delay: float,
                weights: list[float] | None = None) -> subprocess.Popen[bytes]:
    """A child process fusing ``ens`` into ``out``, each case slowed by ``delay`` seconds."""
    code = (
        "import time, medfuse.folders.fuse as e\n"
        "real = e._fuse_case\n"
        f"def slow(job):\n    time.sleep({delay})\n    return real(job)\n"
        "e._fuse_case = slow\n"
        f"e.fuse_folders({[str(m) for m in ens.members]!r}, {str(out)!r}, weights={weights!r}, "
        "save_probabilities=True, progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child too slow")
        time.sleep(0.002)


def kill_after_records(ens: Ensemble, out: Path, k: int, extra: float, weights: list[float] | None = None) -> None:
    """SIGKILL a fusing child ``extra`` seconds after its k-th journal record appeared."""
    proc = start_child(ens, out, delay=0.03, weights=weights)
    wait_for(lambda: done_records(out) >= k, proc)
    time.sleep(extra)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done_records(out) < N_CASES, "the child finished before it was killed: kill earlier"


# ----------------------------------------------------------------------------------------- SIGKILL
def test_sigkill_at_random_points_then_rerun_is_byte_identical(ens, tmp_path):
    rng = random.Random(9)
    reference = ens.reference()
    for i, k in enumerate((1, 7, 14)):
        out = tmp_path / f"killed_{i}"
        kill_after_records(ens, out, k, extra=rng.uniform(0.0, 0.04))
        report = fuse_folders(ens.members, out, save_probabilities=True, progress=False)
        assert len(report.skipped) >= k and len(report.written) + len(report.skipped) == N_CASES
        assert_same_folder(out, reference)  # every case file AND fusion.json
        assert not [p for p in out.rglob("*") if io.is_temporary(p.name)]


def test_killed_run_rerun_with_other_weights_is_refused_and_overwrite_recomputes_all(ens, tmp_path):
    out = tmp_path / "killed"
    kill_after_records(ens, out, 5, extra=0.0)
    before = visible_files(out)
    with pytest.raises(ValidationError, match=r"other settings \(they differ in: weights\).*overwrite=True"):
        fuse_folders(ens.members, out, weights=[1, 3], save_probabilities=True, progress=False)
    assert visible_files(out) == before  # refused before touching anything
    report = fuse_folders(ens.members, out, weights=[1, 3], save_probabilities=True, overwrite=True, progress=False)
    assert report.written == tuple(ens.cases) and report.skipped == ()
    assert_same_folder(out, ens.reference([1, 3]))  # no case of the other weights survives


# ----------------------------------------------------------------------------- what is never trusted
def test_unrelated_case_files_are_never_adopted(ens, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{ens.cases[3]}.nii.gz").write_bytes((ens.members[0] / f"{ens.cases[3]}.nii.gz").read_bytes())
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValidationError, match=rf"{ens.cases[3]}\.nii\.gz.*never adopts.*overwrite=True"):
        fuse_folders(ens.members, out, progress=False)
    report = fuse_folders(ens.members, out, overwrite=True, progress=False)
    assert report.written == tuple(ens.cases)
    assert (out / "notes.txt").read_text() == "mine"  # not a result: left alone


def test_old_output_with_only_fusion_json_is_refused(ens, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "fusion.json").write_text(json.dumps({"members": [str(m) for m in ens.members], "method": "mean"}))
    with pytest.raises(ValidationError, match=r"fusion\.json.*overwrite=True"):
        fuse_folders(ens.members, out, progress=False)


def test_relative_and_absolute_member_paths_resume_the_same_run(ens, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = fuse_folders(ens.members, out, cases=ens.cases[:4], progress=False)
    monkeypatch.chdir(ens.root)
    again = fuse_folders([m.name for m in ens.members], out, cases=ens.cases[:4], progress=False)
    assert again.fingerprint == first.fingerprint
    assert again.written == () and again.skipped == tuple(ens.cases[:4])


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete"])
def test_case_file_damaged_after_its_record_is_recomputed(ens, tmp_path, damage):
    reference = ens.reference()
    out = tmp_path / "out"
    fuse_folders(ens.members, out, save_probabilities=True, progress=False)
    victim = out / f"{ens.cases[2]}.npz" if damage == "flip_byte" else out / f"{ens.cases[2]}.nii.gz"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        victim.write_bytes(data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:])  # same size, other content
    else:
        victim.unlink()
    report = fuse_folders(ens.members, out, save_probabilities=True, progress=False)
    assert report.written == (ens.cases[2],)
    assert_same_folder(out, reference)


def test_pending_record_claims_its_files_for_recomputation(tmp_path):
    """A run killed between writing a case file and recording it: the file is ours, recomputed, not refused."""
    journal = Journal(tmp_path, {"a": 1}, case_files=v1_case_files)
    journal.begin(["c1"])
    (tmp_path / "c1.nii.gz").write_bytes(b"half")
    plan = Journal(tmp_path, {"a": 1}, case_files=v1_case_files).plan(["c1", "c2"], overwrite=False)
    assert plan.todo == ("c1", "c2") and plan.done == ()
    with pytest.raises(ValidationError, match="other settings"):
        Journal(tmp_path, {"a": 2}, case_files=v1_case_files).plan(["c1"], overwrite=False)


def test_fingerprint_is_canonical():
    assert fingerprint({"a": 1, "b": [1.0, None]}) == fingerprint({"b": [1.0, None], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_executor_workers_produce_the_same_folder(ens, tmp_path):
    out = tmp_path / "threads"
    with ThreadPoolExecutor(2) as pool:
        fuse_folders(ens.members, out, save_probabilities=True, executor=pool, progress=False)
    assert_same_folder(out, ens.reference())
    assert done_records(out) == N_CASES


def test_failed_case_waits_for_running_workers_before_releasing_the_folder(ens, tmp_path, monkeypatch):
    import medfuse.folders.fuse as ensemble

    real, started, finished = ensemble._fuse_case, [], []

    def flaky(job):
        if job.case == ens.cases[0]:
            raise ValidationError("boom")
        started.append(job.case)
        time.sleep(0.3)
        result = real(job)
        finished.append(job.case)
        return result

    monkeypatch.setattr(ensemble, "_fuse_case", flaky)
    out = tmp_path / "failed"
    pool = ThreadPoolExecutor(2)
    try:
        with pytest.raises(ValidationError, match="boom"):
            fuse_folders(ens.members, out, executor=pool, progress=False)
        # every case running beside the failure ended before the run did; none started later
        assert ens.cases[1] in finished and sorted(finished) == sorted(started) and len(started) < N_CASES - 1
    finally:
        pool.shutdown()
    assert lock_holder(out) == {}
    assert json.loads((out / "fusion.json").read_text())["cases"] == []  # results not collected: not claimed
    monkeypatch.undo()
    assert fuse_folders(ens.members, out, progress=False).written == tuple(ens.cases)  # pending: recomputed


# ------------------------------------------------------------------------------------------- lock
def test_second_run_fails_naming_the_holder_and_the_first_completes(ens, tmp_path):
    out = tmp_path / "busy"
    proc = start_child(ens, out, delay=0.1)
    wait_for(lambda: done_records(out) >= 2, proc)
    with pytest.raises(FolderLockedError, match=rf"in use by another medfuse run \(host .*, PID {proc.pid}, since "):
        fuse_folders(ens.members, out, save_probabilities=True, progress=False)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    assert_same_folder(out, ens.reference())  # the refused run swept none of the first run's temporaries


def test_lock_in_the_same_process_is_exclusive_too(ens, tmp_path):
    out = tmp_path / "held"
    with folder_lock(out, command="a notebook cell"):
        assert lock_holder(out)["pid"] == os.getpid()
        with pytest.raises(FolderLockedError, match=rf"PID {os.getpid()}.*'a notebook cell'"):
            fuse_folders(ens.members, out, cases=ens.cases[:1], progress=False)
    assert lock_holder(out) == {}  # released: no holder named any more
    fuse_folders(ens.members, out, cases=ens.cases[:1], progress=False)


def test_stale_lock_of_a_killed_process_is_taken_over(ens, tmp_path):
    out = tmp_path / "stale"
    code = (f"import os, signal\nfrom medfuse.io.lock import folder_lock\n"
            f"with folder_lock({str(out)!r}, command='doomed'):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    dead = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert dead.returncode == -signal.SIGKILL
    assert lock_holder(out)["command"] == "doomed"  # the dead holder's details are still in the file
    with folder_lock(out, command="successor"):
        assert lock_holder(out)["pid"] == os.getpid() and lock_holder(out)["command"] == "successor"
    report = fuse_folders(ens.members, out, cases=ens.cases[:2], progress=False)
    assert report.written == tuple(ens.cases[:2])
    assert (out / LOCK_NAME).is_file()


# -------------------------------------------------------------------------------------------- CLI
def test_cli_refusal_names_the_overwrite_flag(ens, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["fuse", *map(str, ens.members), "-o", str(out), "--cases", ",".join(ens.cases[:2]), "--no-progress"]
    assert main([*args, "--weights", "1,2"]) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--overwrite"]) == 0
