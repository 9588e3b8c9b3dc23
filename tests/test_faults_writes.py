"""Fault injection into the writers: file-size limits, full disks, I/O errors, read-only folders, folders
where files are expected, and writers that fail silently. After each fault: one MedfuseError (exit code 2
on the command line, one line), no file under the final name, no temporary file, older files untouched."""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medfuse import io
from medfuse._core.atomic import TEMP_MARKER, atomic_write, atomic_writes
from medfuse._core.verify import verify_file
from medfuse.cli.main import cli_message, main
from medfuse.errors import MedfuseError, OutputError, ValidationError
from medfuse.geometry import Geometry

SRC = Path(__file__).resolve().parents[1] / "src"
GEOMETRY = Geometry.default((24, 48, 48))


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 12, GEOMETRY.shape).astype(np.uint8)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP_MARKER in p.name)


def _child(code: str, *args: str, fsize: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` (or ``-m medfuse`` when code is empty) under RLIMIT_FSIZE = fsize bytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "medfuse", *args] if not code else [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


# --- RLIMIT_FSIZE in a child process: the exact failure of the issue -------------------------------------

def test_file_size_limit_on_write_nifti_is_caught_by_verification(tmp_path: Path) -> None:
    np.save(tmp_path / "labels.npy", _labels())
    code = textwrap.dedent("""
        import sys, numpy as np
        from medfuse.io import write_nifti
        from medfuse.geometry import Geometry
        from medfuse.errors import MedfuseError
        try:
            write_nifti(sys.argv[1], np.load(sys.argv[2]), Geometry.default((24, 48, 48)))
        except MedfuseError as exc:
            print(type(exc).__name__, exc, file=sys.stderr)
            sys.exit(2)
    """)
    out = tmp_path / "out"
    out.mkdir()
    done = _child(code, str(out / "case.nii.gz"), str(tmp_path / "labels.npy"), fsize=4096, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "OutputError" in done.stderr and "case.nii.gz" in done.stderr and "ulimit" in done.stderr
    assert os.listdir(out) == []


def test_file_size_limit_through_the_submit_command(tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    for case in ("a", "b"):
        io.write_nifti(pred / f"{case}.nii.gz", _labels(ord(case)), GEOMETRY)
    out = tmp_path / "out"
    out.mkdir()
    done = _child("", "submit", str(pred), str(out / "sub.zip"), fsize=8192, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "sub.zip" in lines[0] and ("EFBIG" in lines[0] or "does not verify" in lines[0])
    assert os.listdir(out) == []


def test_file_size_limit_through_the_fuse_command(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    geometry = Geometry.default((8, 40, 40))
    members = []
    for name in ("m1", "m2"):
        for case in ("c0", "c1"):
            p = rng.random((3, *geometry.shape)).astype(np.float32)
            io.write_v1_case(tmp_path / name, case, probabilities=p / p.sum(0), geometry=geometry,
                             crop_bbox=[[0, s] for s in geometry.shape])
        members.append(str(tmp_path / name))
    out = tmp_path / "fused"
    done = _child("", "fuse", *members, "-o", str(out), "--no-progress", fsize=1024, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not list(out.glob("*.nii.gz")) if out.exists() else True
    assert _leftovers(tmp_path) == []


# --- errors injected into the writers ----------------------------------------------------------------------

def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eio(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.parametrize(("target", "fault", "name", "operation"), [
    ("fsync", _enospc, "ENOSPC", "fsync"),
    ("fsync", _eio, "EIO", "fsync"),
    ("replace", _eio, "EIO", "rename"),
])
def test_os_errors_in_fsync_and_rename(tmp_path, monkeypatch, target, fault, name, operation) -> None:
    path = tmp_path / "case.nii.gz"
    io.write_nifti(path, _labels(1), GEOMETRY)
    before = path.read_bytes()
    monkeypatch.setattr(os, target, fault)
    with pytest.raises(OutputError, match=rf"cannot {operation}.*case\.nii\.gz.*{name}") as info:
        io.write_nifti(path, _labels(2), GEOMETRY)
    monkeypatch.undo()
    assert info.value.errno == getattr(errno, name) and isinstance(info.value, OSError)
    assert path.read_bytes() == before  # the older file is untouched
    assert os.listdir(tmp_path) == ["case.nii.gz"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO])
def test_write_errors_inside_the_block_name_the_final_file(tmp_path, code) -> None:
    def failing_savez(target: Path) -> None:
        with open(target, "wb") as f:
            f.write(b"PK")
            raise OSError(code, os.strerror(code))

    with pytest.raises(OutputError) as info, atomic_write(tmp_path / "case.npz") as tmp:
        failing_savez(tmp)
    message = str(info.value)
    assert errno.errorcode[code] in message and "cannot write" in message and TEMP_MARKER not in message
    assert str(tmp_path / "case.npz") in message and "\n" not in message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_silently_failing_sitk_writer_is_caught(tmp_path, monkeypatch, damage) -> None:
    sitk = pytest.importorskip("SimpleITK")
    real = sitk.WriteImage

    def lying_writer(image, name, *args):  # what SimpleITK does under EFBIG / ENOSPC: no error
        real(image, name, *args)
        size = os.path.getsize(name)
        with open(name, "r+b") as f:
            f.truncate(size // 2 if damage == "truncate" else 0)

    path = tmp_path / "case.nii.gz"
    io.write_nifti(path, _labels(1), GEOMETRY)
    before = path.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", lying_writer)
    with pytest.raises(OutputError, match=r"case\.nii\.gz.*does not verify"):
        io.write_nifti(path, _labels(2), GEOMETRY)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["case.nii.gz"]


def test_npz_and_pkl_writers_of_the_layouts_verify(tmp_path, monkeypatch) -> None:
    real = np.savez_compressed

    def short_savez(file, **arrays):
        real(file, **arrays)
        with open(file, "r+b") as f:
            f.truncate(os.path.getsize(file) - 30)

    monkeypatch.setattr(np, "savez_compressed", short_savez)
    probs = np.full((2, 4, 5, 6), 0.5, np.float32)
    with pytest.raises(OutputError, match=r"c0\.npz.*does not verify"):
        io.write_v1_case(tmp_path, "c0", probabilities=probs, geometry=Geometry.default((4, 5, 6)),
                         crop_bbox=[[0, 4], [0, 5], [0, 6]])
    assert os.listdir(tmp_path) == []


# --- each format's check catches a short write ---------------------------------------------------------

def _valid_files(folder: Path) -> dict[str, bytes]:
    io.write_nifti(folder / "a.nii.gz", _labels(), GEOMETRY)
    io.write_nifti(folder / "a.nii", _labels(), GEOMETRY)
    np.savez_compressed(folder / "a.npz", softmax=np.random.default_rng(0).random((3, 20, 20)).astype(np.float16))
    with zipfile.ZipFile(folder / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.txt", "hello " * 2000)
    io.save_pickle(folder / "a.pkl", {"spacing": np.ones(3), "shape": (1, 2, 3)})
    (folder / "a.json").write_text(json.dumps({"a": list(range(50))}))
    (folder / "a.csv").write_text("case,dice\n" + "c,0.5\n" * 50)
    png = pytest.importorskip("matplotlib")
    png.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(folder / "a.png")
    plt.close(fig)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_every_format_check_accepts_whole_files_and_refuses_short_ones(tmp_path: Path) -> None:
    files = _valid_files(tmp_path)
    assert len(files) == 8
    for name, data in files.items():
        verify_file(tmp_path / name)  # whole: accepted
        shorts = (0,) if name.endswith(".csv") else (0, len(data) // 3, len(data) - 5)  # text: only empty
        for keep in shorts:
            with pytest.raises(OutputError, match="does not verify"), atomic_write(tmp_path / "out" / name) as tmp:
                tmp.write_bytes(data[:keep])
    assert _leftovers(tmp_path) == []


def test_verify_none_is_only_for_formats_without_a_check(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"verify=None"), atomic_write(tmp_path / "a.nii.gz", verify=None):
        pass
    with atomic_write(tmp_path / "a.bin", verify=None) as tmp:
        tmp.write_bytes(b"")
    assert (tmp_path / "a.bin").read_bytes() == b""

    def must_say_hi(p: Path) -> None:
        if p.read_bytes() != b"hi":
            raise ValueError("not hi")

    with pytest.raises(OutputError, match="not hi"), atomic_write(tmp_path / "b.bin", verify=must_say_hi) as tmp:
        tmp.write_bytes(b"ho")
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_atomic_writes_group_keeps_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("old\n")
    with pytest.raises(OutputError, match=r"search\.json"), atomic_writes(tmp_path) as stage:
        stage("report.md").write_text("new\n")
        stage("search.json").write_text('{"a": ')
    assert (tmp_path / "report.md").read_text() == "old\n"
    assert os.listdir(tmp_path) == ["report.md"]


def test_folder_where_a_file_is_expected_is_eisdir(tmp_path: Path) -> None:
    (tmp_path / "case.nii.gz").mkdir()
    with pytest.raises(OutputError, match=r"EISDIR") as info:
        io.write_nifti(tmp_path / "case.nii.gz", _labels(), GEOMETRY)
    assert info.value.errno == errno.EISDIR and _leftovers(tmp_path) == []


def test_parent_that_is_a_file_cannot_become_a_folder(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(OutputError, match=r"cannot create folder.*blocker"):
        io.write_nifti(tmp_path / "blocker" / "sub" / "case.nii.gz", _labels(), GEOMETRY)


def test_output_error_survives_pickling_across_processes() -> None:
    from medfuse._core.oserrors import output_error

    err = output_error(OSError(errno.ENOSPC, "No space left on device"), path="/x/c.nii.gz", operation="write")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is OutputError and str(back) == str(err) and back.errno == errno.ENOSPC


# --- real tiny file systems (root may mount; otherwise only these extra cases are skipped) ---------------

@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); the monkeypatched "
                    "ENOSPC/EROFS cases above carry the feature")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_disk_full_on_a_64k_tmpfs(tiny_tmpfs: Path) -> None:
    big = np.random.default_rng(0).integers(0, 255, (16, 64, 128)).astype(np.uint8)  # ~130 kB compressed
    with pytest.raises(OutputError, match=r"case\.nii\.gz"):
        io.write_nifti(tiny_tmpfs / "case.nii.gz", big, Geometry.default(big.shape))
    with pytest.raises(OutputError, match="ENOSPC"), atomic_write(tiny_tmpfs / "x.npz") as tmp:
        np.savez(tmp, a=big)
    assert os.listdir(tiny_tmpfs) == []


def test_real_read_only_mount(tiny_tmpfs: Path, capsys) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(OutputError, match="EROFS"):
        io.write_nifti(tiny_tmpfs / "case.nii.gz", _labels(), GEOMETRY)
    assert main(["search", "a", "-o", str(tiny_tmpfs / "out")]) == 2
    err = capsys.readouterr().err
    assert "-o/--output" in err and "EROFS" in err and len(err.strip().splitlines()) == 1


# --- the command line: one line, exit code 2, flags named --------------------------------------------------

def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_evaluate_output_flags_checked_before_scoring(tmp_path, capsys) -> None:
    (tmp_path / "summary").mkdir()
    assert main(["evaluate", str(tmp_path), str(tmp_path), "--json", str(tmp_path / "summary")]) == 2
    err = _one_line(capsys)
    assert "--json" in err and "EISDIR" in err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", str(tmp_path), str(tmp_path), "--csv", str(tmp_path / "file" / "x.csv")]) == 2
    assert "--csv" in _one_line(capsys)


@pytest.mark.parametrize("argv", [
    ["search", "m", "-o", "{ro}/out"],
    ["infer", "--model", "m", "--plans", "p.pkl", "--stage", "0", "--images", "i", "-o", "{ro}/out"],
    ["evaluate", "p", "r", "--plot", "{ro}/dice.png"],
    ["submit", "p", "{ro}/sub.zip"],
])
def test_read_only_or_forbidden_folders_are_one_line(tmp_path, monkeypatch, capsys, argv) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real_access(p, mode))
    assert main([a.replace("{ro}", str(ro)) for a in argv]) == 2
    err = _one_line(capsys)
    assert str(ro) in err and ("EACCES" in err or "EROFS" in err)


def test_submit_to_a_folder_is_eisdir(tmp_path, capsys) -> None:
    pred = tmp_path / "pred"
    io.write_nifti(pred / "a.nii.gz", _labels(), GEOMETRY)
    (tmp_path / "sub.zip").mkdir()
    assert main(["submit", str(pred), str(tmp_path / "sub.zip")]) == 2
    assert "EISDIR" in _one_line(capsys)
    assert main(["submit", str(pred), str(tmp_path / "sub.txt")]) == 2
    assert "ZIP must end in '.zip'" in _one_line(capsys)


def test_submit_disk_full_leaves_no_zip(tmp_path, monkeypatch, capsys) -> None:
    pred = tmp_path / "pred"
    io.write_nifti(pred / "a.nii.gz", _labels(), GEOMETRY)
    (tmp_path / "sub.zip").write_bytes(b"old")
    monkeypatch.setattr(os, "fsync", _enospc)
    assert main(["submit", str(pred), str(tmp_path / "sub.zip")]) == 2
    assert "ENOSPC" in _one_line(capsys)
    assert (tmp_path / "sub.zip").read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_any_remaining_os_error_is_one_line_naming_the_final_file(tmp_path, monkeypatch, capsys) -> None:
    import medfuse.folders

    temp = tmp_path / f"{TEMP_MARKER}1234-per_case.csv"

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temp))

    monkeypatch.setattr(medfuse.folders, "evaluate_folder", boom)
    assert main(["evaluate", str(tmp_path), str(tmp_path)]) == 2
    err = _one_line(capsys)
    assert str(tmp_path / "per_case.csv") in err and "ENOSPC" in err and TEMP_MARKER not in err
    assert "free space" in err
    with pytest.raises(OSError):
        main(["--debug", "evaluate", str(tmp_path), str(tmp_path)])


def test_flag_names_rewrite_messages() -> None:
    flags = {"overwrite=True": "--overwrite", "`output`": "`-o/--output`"}
    assert cli_message("pass overwrite=True to replace `output`\n  files", flags) == \
        "pass --overwrite to replace `-o/--output` files"


def test_api_errors_are_medfuse_errors_and_os_errors() -> None:
    assert issubclass(OutputError, MedfuseError) and issubclass(OutputError, OSError)
