"""QA figures (medfuse.plots): the ranking and the worst slices, valid PNGs, slice choice."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import ValidationError
from medfuse.plots import qa_ranking_plot, qa_slices_plot, worst_slices
from medfuse.quality import CaseQA

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data.startswith(PNG) and b"IEND" in data[-16:]


def test_worst_slices_are_the_largest_entropy_sums():
    ent = np.zeros((6, 4, 4), np.float32)
    ent[4] = 1.0
    ent[1] = 0.5
    ent[2, 0, 0] = 0.1
    assert worst_slices(ent, 2) == [1, 4]
    assert worst_slices(ent, 10) == [0, 1, 2, 3, 4, 5]
    assert worst_slices(np.zeros((3, 2, 2)), 1) == [0]  # ties: the lower slice


def test_ranking_plot_is_a_png(tmp_path):
    rows = [CaseQA(f"case_{i}", float(i), {"a": float(i), "b": 1.0 / (i + 1), "c": 0.0}, {"1": 10}, {"1": 0.1})
            for i in range(7)]
    assert _is_png(qa_ranking_plot(rows, tmp_path / "qa.png"))
    assert _is_png(qa_ranking_plot(rows[:1], tmp_path / "one.png", top=1))


def test_slices_plot_is_a_png_and_checks_shapes(rng, tmp_path):
    labels = rng.integers(0, 4, (5, 8, 9)).astype(np.uint8)
    entropy = rng.random((5, 8, 9)).astype(np.float32)
    members = [rng.integers(0, 4, (5, 8, 9)).astype(np.uint8) for _ in range(3)]
    assert _is_png(qa_slices_plot(tmp_path / "s.png", labels, entropy, members, member_names=["a", "b", "c"],
                                  title="case"))
    assert _is_png(qa_slices_plot(tmp_path / "z.png", labels, np.zeros_like(entropy), [], slices=[0]))
    with pytest.raises(ValidationError, match="one shape"):
        qa_slices_plot(tmp_path / "bad.png", labels, entropy[:2], members)
    assert not (tmp_path / "bad.png").exists()
