"""Results read well in a notebook: short reprs, HTML tables, DataFrames; ``dice`` typed for user code."""

from __future__ import annotations

import builtins
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse.errors import MissingDependencyError
from medfuse.folders import Evaluation, FusionReport
from medfuse.metrics import LabelOverlap, aggregate_cases, overlap
from medfuse.search.results import Candidate, SearchResult


@pytest.fixture
def results():
    rng = np.random.default_rng(0)
    out = {}
    for case in ("a", "b", "c"):
        ref = rng.integers(0, 4, (6, 7, 8))
        pred = np.where(rng.random(ref.shape) < 0.8, ref, rng.integers(0, 4, ref.shape))
        out[case] = overlap(ref, pred, labels=[1, 2, 3])
    return out


def test_label_overlap_repr_is_one_short_line():
    lo = LabelOverlap.from_counts(8, 2, 2, 100)
    assert repr(lo) == ("LabelOverlap(dice=0.8000, iou=0.6667, precision=0.8000, recall=0.8000, "
                        "reference_voxels=10, prediction_voxels=10)")
    html = lo._repr_html_()
    assert html.startswith("<table>") and "<td>0.8000</td>" in html and "<th>dice</th>" in html


def test_overlap_result_html_has_a_row_per_label_and_the_foreground_mean(results):
    r = results["a"]
    html = r._repr_html_()
    assert html.count("<tr>") == 1 + 3 + 1  # header, labels, foreground mean
    assert f"<td>{r.foreground_mean():.4f}</td>" in html
    big = overlap(np.arange(40).reshape(5, 8) % 20, np.arange(40).reshape(5, 8) % 20)
    assert "... (19 labels)" in repr(big) and len(repr(big)) < 300


def test_case_summary_repr_is_short_and_html_lists_means(results):
    summary = aggregate_cases(results)
    text = repr(summary)
    assert text.startswith("CaseSummary(3 cases, labels [1, 2, 3], foreground mean dice ")
    assert len(text) < 120
    html = summary._repr_html_()
    assert f"<td>{summary.mean[2]['dice']:.4f}</td>" in html and "foreground mean" in html


def test_evaluation_repr_replaces_the_mappingproxy_dump(results):
    ev = Evaluation(summary=aggregate_cases(results), files={c: (f"ref/{c}", f"pred/{c}") for c in results},
                    labels=(1, 2, 3))
    assert repr(ev) == (f"Evaluation(3 cases, labels [1, 2, 3], foreground mean dice "
                        f"{ev.foreground_mean_dice:.4f})")
    assert "mappingproxy" not in repr(ev)
    assert ev._repr_html_() == ev.summary._repr_html_()


def test_long_label_lists_are_shortened():
    from medfuse._core.display import short_list

    assert short_list(list(range(1, 12))) == "[1, 2, 3, 4, 5, ..., 11] (11)"
    assert short_list([1, 2]) == "[1, 2]"


def test_fusion_report_repr_and_html():
    rep = FusionReport(output=Path("out"), members=("m/2d", "m/3d"), layouts=("v1", "v2"), method="mean",
                       weights=[1.0, 2.0], cases=("a", "b"), written=("a",), skipped=("b",))
    assert repr(rep) == "FusionReport(output='out', method='mean', members=2, cases=2, written=1, skipped=1)"
    html = rep._repr_html_()
    assert "<td>m/3d</td><td>v2</td><td>2.0</td>" in html and "1 written, 1 resumed" in html


def _candidate(name: str, score: float) -> Candidate:
    return Candidate(kind="subset", members=(name,), weights=(1.0,), class_weights=None, labels=(1,),
                     per_class_dice=(score,), score=score, ci=(score - 0.1, score + 0.1), honest_score=score,
                     honest_ci=(score - 0.1, score + 0.1))


def test_search_result_repr_and_html_show_the_top_candidates():
    cands = tuple(_candidate(f"m{i}", 0.9 - i / 100) for i in range(15))
    res = SearchResult(best=cands[0], candidates=cands, postprocessing=None, postprocessed_score=None,
                       models=tuple(c.members[0] for c in cands), sources=(), cases=("a", "b"), num_classes=2,
                       labels=(1,))
    text = repr(res)
    assert text.startswith("SearchResult(best='m0', score=0.9000, honest_score=0.9000, candidates=15,")
    html = res._repr_html_()
    assert "<td>m9</td>" in html and "<td>m10</td>" not in html and "5 more rows" in html


def test_dice_of_one_label_is_a_float():
    ref, pred = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
    assert medfuse.dice(ref, pred, labels=2) == pytest.approx(2 / 3)
    assert medfuse.dice(ref, pred, labels=np.int64(1)) == pytest.approx(2 / 3)
    assert medfuse.dice(ref, pred, labels=[2]) == {2: pytest.approx(2 / 3)}
    assert math.isnan(medfuse.dice(ref, pred, labels=7))


def test_user_code_needs_no_type_ignores(tmp_path):
    api = pytest.importorskip("mypy.api")
    code = textwrap.dedent("""
        import numpy as np
        from numpy.typing import NDArray
        import medfuse

        def foreground(ref: NDArray[np.uint8], pred: NDArray[np.uint8]) -> float:
            scores = medfuse.dice(ref, pred, labels=range(1, 4))
            return float(np.nanmean(list(scores.values())))

        def one(ref: NDArray[np.uint8], pred: NDArray[np.uint8]) -> float:
            return medfuse.dice(ref, pred, labels=2) + 1.0

        def masks(ref: NDArray[np.bool_], pred: NDArray[np.bool_]) -> float:
            return medfuse.dice(ref, pred) * 2
    """)
    path = tmp_path / "user.py"
    path.write_text(code)
    out, err, status = api.run(["--strict", "--cache-dir", str(tmp_path / "cache"), str(path)])
    assert status == 0, out + err


def test_to_frame_without_pandas_names_the_extra(results, monkeypatch):
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    monkeypatch.delitem(__import__("sys").modules, "pandas", raising=False)
    with pytest.raises(MissingDependencyError, match="'frames' extra"):
        results["a"].to_frame()


def test_to_frame_with_pandas(results):
    pytest.importorskip("pandas")
    frame = aggregate_cases(results).to_frame()
    assert list(frame.columns[:3]) == ["case", "label", "dice"]
    assert len(frame) == 3 * 3 + 3 + 1
    assert list(results["a"].to_frame().index) == ["1", "2", "3"]


def test_public_type_aliases_are_documented_for_help():
    import pydoc

    import medfuse.typing as mt

    text = pydoc.render_doc(mt, renderer=pydoc.plaintext)
    for name in mt.__all__:
        assert hasattr(mt, name)
        assert f"\n{name}\n    " in mt.__doc__, f"{name} is not described in medfuse.typing's docstring"
        assert name in text
    assert mt.TieRule.__args__ == ("lowest", "undecided", "first")
