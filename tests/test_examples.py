"""Every script in examples/ runs to completion and leaves nothing behind.

Each runs in a fresh working folder with ``TMPDIR`` pointing at a fresh temporary folder; both must be empty
afterwards (an example that writes files removes them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_cleans_up(script, tmp_path):
    tmp, cwd = tmp_path / "tmp", tmp_path / "cwd"
    tmp.mkdir()
    cwd.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False,
                         cwd=cwd, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip()
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p not in (tmp, cwd))
    assert not left, f"{script.name} left files behind: {left[:10]}"
