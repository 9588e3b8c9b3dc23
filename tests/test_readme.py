"""The README's promises: the notebook example runs, and the two fresh-machine commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_notebook_example_runs(capsys):
    (code,) = _blocks("python")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "{1: " in out


def test_exactly_two_fresh_machine_commands_demo_and_tests():
    commands = [b.strip() for b in _blocks("bash")]
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("medfuse demo") and "pip install" in demo
    assert tests.endswith("-m pytest") and "pip install" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    tests = [b.strip() for b in _blocks("bash")][1]
    extras = re.search(r"install -e '\.\[([^\]]*)\]'", tests).group(1).split(",")
    ci_extras = re.search(r"install -q -e '\.\[([^\]]*)\]'", ci).group(1).split(",")
    assert set(extras) <= set(ci_extras)
    assert "-m pytest" in ci
