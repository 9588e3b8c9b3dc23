"""Command-line habits: ``-q/--quiet`` on every command, progress bars in ``submit``, files readable by others."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medfuse._core.atomic import atomic_write
from medfuse.cli.commands import COMMANDS
from medfuse.cli.main import _quiet_stdout, build_parser, main


@pytest.fixture
def umask_022() -> Iterator[int]:
    old = os.umask(0o022)
    try:
        yield 0o644
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("habits") / "demo"
    assert main(["demo", "-q", "--out", str(root), "--cases", "2", "--shape", "24,72,72"]) == 0
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet(command: str) -> None:
    parser = build_parser()
    args = parser.parse_args([command, "-q", *_required(command)])
    assert args.quiet is True
    args = parser.parse_args([command, "--quiet", *_required(command)])
    assert args.quiet is True
    assert parser.parse_args([command, *_required(command)]).quiet is False


def _required(command: str) -> list[str]:
    return {"fuse": ["a", "b", "-o", "out"], "evaluate": ["x", "y"], "submit": ["f", "z.zip"],
            "search": ["m", "-o", "out"], "infer": ["--model", "m", "--plans", "p.pkl", "--stage", "1",
                                                     "--images", "i", "-o", "o"],
            "postprocess": ["in", "-o", "out", "--postprocessing", "pp.json"]}.get(command, [])


def test_quiet_demo_prints_nothing_and_still_does_the_job(demo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # demo_root ran with -q; run a second quiet command and look at both streams
    assert (demo_root / "submission.zip").is_file()
    out = demo_root / "again.zip"
    assert main(["submit", "-q", str(demo_root / "fused_mean"), str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert out.is_file()


def test_without_quiet_submit_reports_and_shows_progress_on_a_terminal(
        demo_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = demo_root / "loud.zip"
    assert main(["submit", str(demo_root / "fused_mean"), str(out)]) == 0
    assert capsys.readouterr().err == ""  # not a terminal: no bars in logs
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["submit", str(demo_root / "fused_mean"), str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {out}: 2 cases")
    assert "zip" in captured.err and "verify" in captured.err  # the two tqdm bars
    assert main(["submit", "--no-progress", str(demo_root / "fused_mean"), str(out)]) == 0
    assert capsys.readouterr().err == ""


def test_quiet_still_prints_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "-q", str(tmp_path / "missing"), str(tmp_path / "s.zip")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("medfuse submit: error: FOLDER must be a folder")


def test_quiet_keeps_data_asked_for_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with _quiet_stdout(argparse.Namespace(quiet=True, json="-")):
        print("data")
    with _quiet_stdout(argparse.Namespace(quiet=True, json="out.json")):
        print("info line")
    with _quiet_stdout(argparse.Namespace(quiet=False)):
        print("loud")
    assert capsys.readouterr().out == "data\nloud\n"


def test_submission_zip_is_readable_by_others(tmp_path: Path, umask_022: int, demo_root: Path) -> None:
    out = tmp_path / "submission.zip"
    assert main(["submit", "-q", str(demo_root / "fused_vote"), str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == umask_022


def test_atomic_write_gives_the_umask_mode_when_a_writer_replaced_the_file_by_a_0600_one(
        tmp_path: Path, umask_022: int) -> None:
    final = tmp_path / "table.csv"
    with atomic_write(final) as tmp:
        fd, own = tempfile.mkstemp(dir=tmp_path)  # created 0600, like many writers' temporary files
        os.write(fd, b"a,b\n")
        os.close(fd)
        os.replace(own, tmp)
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
    assert stat.S_IMODE(final.stat().st_mode) == umask_022
    assert final.read_bytes() == b"a,b\n"


def test_atomic_write_follows_a_stricter_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with atomic_write(tmp_path / "private.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
