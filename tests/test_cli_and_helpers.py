"""The command-line shell and the small helpers behind it."""

from __future__ import annotations

import json
import threading

import pytest

from medfuse._core.formatting import fmt, format_table
from medfuse._core.progress import prefetch, progress_bar
from medfuse.cli import build_parser, main
from medfuse.cli._common import align_weights, read_weights_file
from medfuse.errors import MedfuseError, ValidationError


def test_prefetch_yields_everything_in_order():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_prefetch_reraises_producer_error():
    def gen():
        yield 1
        raise ValidationError("boom")

    it = prefetch(gen())
    assert next(it) == 1
    with pytest.raises(ValidationError, match="boom"):
        next(it)


def test_prefetch_stops_producer_when_abandoned():
    produced = []
    started = threading.Event()

    def gen():
        for i in range(10_000):
            started.set()
            produced.append(i)
            yield i

    it = prefetch(gen(), depth=1)
    assert next(it) == 0
    it.close()  # runs the finally block: the producer thread must stop soon
    n = len(produced)
    assert n < 10_000
    assert [t for t in threading.enumerate() if t.name == "medfuse-prefetch"] == []


def test_progress_bar_disabled_returns_iterable_unchanged():
    data = [1, 2, 3]
    assert progress_bar(data, enabled=False) is data


def test_format_table_aligns_and_shows_nan_as_dash():
    text = format_table(["label", "dice"], [["1", 0.5], ["foreground mean", float("nan")]])
    lines = text.splitlines()
    assert lines[0].startswith("label") and lines[0].endswith("dice")
    assert lines[-1].endswith("-")
    assert len({len(line) for line in lines}) == 1
    assert fmt(0.123456, 3) == "0.123"


def test_markdown_table_has_separator_row():
    text = format_table(["a", "b"], [["x", 1.0]], markdown=True)
    assert text.splitlines()[1].startswith("|-")


def test_cli_without_command_prints_help_and_fails(capsys):
    assert main([]) == 1
    assert "usage: medfuse" in capsys.readouterr().out


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "medfuse" in capsys.readouterr().out


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["fuse", str(tmp_path / "missing_a"), str(tmp_path / "missing_b"), "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medfuse fuse: error:") and "missing_a" in err[0]


def test_cli_debug_shows_traceback(tmp_path):
    with pytest.raises(MedfuseError):
        main(["--debug", "fuse", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "o")])


def test_every_subcommand_has_help_with_examples():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, name
        assert p.epilog and "medfuse " + name in p.epilog, name


# ------------------------------------------------------------------------------ --weights-file forms

@pytest.mark.parametrize(
    ("content", "weights", "names"),
    [
        ([1, 2, 0.5], [1.0, 2.0, 0.5], None),
        ([[1, 0], [0, 1]], [[1.0, 0.0], [0.0, 1.0]], None),
        ({"weights": [1, 3]}, [1.0, 3.0], None),
        ({"format": "medfuse-weights/1", "members": ["a", "b"], "classes": 2, "weights": [[1, 2], [3, 4]]},
         [[1.0, 2.0], [3.0, 4.0]], ["a", "b"]),
        ({"best": {"members": ["b", "a"], "weights": [1, 2], "score": 0.9}, "candidates": []}, [1.0, 2.0],
         ["b", "a"]),
    ],
)
def test_weights_file_forms(tmp_path, content, weights, names):
    f = tmp_path / "w.json"
    f.write_text(json.dumps(content))
    assert read_weights_file(f) == (weights, names)


@pytest.mark.parametrize("content", [{}, [], "x", {"weights": ["a", "b"]}, {"members": ["a"], "weights": [1, 2]}])
def test_bad_weights_files(tmp_path, content):
    f = tmp_path / "w.json"
    f.write_text(json.dumps(content))
    with pytest.raises(ValidationError, match="weights-file"):
        read_weights_file(f)


def test_weights_follow_the_member_folders_by_name():
    w, note = align_weights([1.0, 2.0, 3.0], ["2d", "3d", "cascade"], ["/x/cascade", "/x/2d", "/y/3d"])
    assert w == [3.0, 1.0, 2.0] and note is None
    w, note = align_weights([1.0, 2.0], ["m1", "m2"], ["/x/test_a", "/x/test_b"])
    assert w == [1.0, 2.0] and "order" in note
