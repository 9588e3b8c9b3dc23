"""Reports of the ensemble search: ``search.json``, ``report.md`` (+ optional HTML and PNG plots).

:func:`write_search_outputs` writes everything into one folder at once: each file to a temporary name
first, renamed into place only when all of them are ready, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .api import Candidate, SearchResult

__all__ = ["render_html", "render_markdown", "write_search_outputs"]

#: candidates shown in the per-class table and the box plot
TOP = 5


def _f(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(ci: tuple[float, float]) -> str:
    return "–" if not all(math.isfinite(v) for v in ci) else f"{ci[0]:.4f} – {ci[1]:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _weights_text(c: Candidate) -> str:
    if c.class_weights is not None:
        return "per class (see below)"
    return ", ".join(f"{m} {w:g}" for m, w in zip(c.members, c.weights or (), strict=True))


def render_markdown(result: SearchResult, *, label_names: Mapping[int, str] | None = None,
                    plots: Sequence[str] = (), weights_file: str = "weights.json",
                    postprocessing_file: str = "postprocessing.json") -> str:
    """The Markdown report of a search (what ``report.md`` holds)."""
    names = dict(label_names or {})
    best = result.best
    lines = ["# Ensemble search", ""]
    lines += [f"{len(result.cases)} out-of-fold cases, {len(result.models)} models "
              f"({', '.join(result.models)}), {result.num_classes} classes; score = mean foreground Dice "
              f"over labels {list(result.labels)} (nnU-Net's order: per label over cases, then over labels). "
              f"Intervals: {result.settings.get('confidence', 0.95):.0%} bootstrap over cases "
              f"({result.settings.get('n_bootstrap', '?')} resamples).", ""]
    lines += ["## Winner", ""]
    lines += [f"**{best.name}** — OOF score {_f(best.score)} (CI {_ci(best.ci)}), honest score "
              f"{_f(best.honest_score)} (CI {_ci(best.honest_ci)})."]
    criterion = result.settings.get("criterion", "dice")
    if criterion != "dice":
        lines += [f"Ranked by **{criterion}**: surface Dice (NSD at {result.settings.get('tolerance_mm', 1.0):g} mm) "
                  f"{_f(best.nsd)}, ranking score {_f(best.ranking_score)}; postprocessing decided on the same "
                  "criterion."]
    if result.postprocessed_score is not None:
        what = "Dice" if criterion == "dice" else criterion
        lines += [f"After postprocessing ({what}): {_f(result.postprocessed_score)}."]
    lines += ["", f"Weights: {_weights_text(best)}.", ""]
    lines += ["Apply it to the test predictions of the same models (replace `TEST/<model>` with their "
              "prediction folders):", "", "```", result.fuse_command(weights_file=weights_file,
                                                                    postprocessing_file=postprocessing_file),
              "```", ""]
    if best.class_weights is not None:
        lines += [f"`{Path(weights_file).name}` holds the per-class weights (format `medfuse-weights/1`)."]
    lines += ["Ties (within "
              f"{result.settings.get('tie_tolerance', 0):g}) go to the simpler candidate: fewer members, then "
              "equal weights, member weights, per-class selection, per-class weights. Candidates are ranked by "
              "their honest score: the score itself for subsets, and for fitted candidates the score of weights "
              "fitted on the other folds, on each held-out fold.", ""]

    lines += ["## Candidates", ""]
    rows = []
    for i, c in enumerate(result.candidates, start=1):
        honest = "=" if c.kind == "subset" else f"{_f(c.honest_score)} ({_ci(c.honest_ci)})"
        extra = [] if criterion == "dice" else [_f(c.nsd), _f(c.ranking_score)]
        rows.append([str(i), ("**" + c.name + "**") if c is best else c.name, _f(c.score), _ci(c.ci), honest,
                     *extra, _weights_text(c)])
    extra_head = [] if criterion == "dice" else ["NSD", f"ranking ({criterion})"]
    lines += _table(["#", "candidate", "OOF score", "CI", "honest score (CI)", *extra_head, "weights"], rows)

    top = _top(result)
    lines += ["## Per-class Dice (top candidates)", ""]
    header = ["label", *(f"{i + 1}. {c.name}" for i, c in enumerate(top))]
    rows = [[f"{k} {names.get(k, '')}".strip(), *(_f(c.dice_of(k)) for c in top)] for k in result.labels]
    rows.append(["**mean**", *(f"**{_f(c.score)}**" for c in top)])
    lines += _table(header, rows)

    fitted = [c for c in result.candidates if c.class_weights is not None]
    if fitted:
        lines += ["## Per-class weights", "",
                  "Class c's fused value is the weighted mean of the members' class-c probabilities.", ""]
        for c in fitted:
            lines += [f"**{c.name}**", ""]
            cw = c.class_weights or ()
            lines += _table(["member", *(str(k) for k in range(result.num_classes))],
                            [[m, *(f"{w:g}" for w in ws)] for m, ws in zip(c.members, cw, strict=True)])

    lines += ["## Postprocessing", ""]
    pp = result.postprocessing
    if pp is None:
        lines += ["Not determined (`--postprocessing none`).", ""]
    else:
        entries = [list(e) if isinstance(e, tuple) else e for e in pp.for_which_classes]
        conn = result.settings.get("connectivity", 6)
        lines += [f"Largest connected component ({conn}-connectivity) kept for: "
                  f"{entries if entries else 'nothing (no label improved)'}; written to "
                  f"`{Path(postprocessing_file).name}` (PaddleSeg / nnU-Net v1 format).", ""]
        if pp.dc_per_class_raw:
            merged = any(isinstance(e, tuple) for e in pp.for_which_classes)
            alone = {e for e in pp.for_which_classes if isinstance(e, int)}
            rows = []
            for k in sorted(pp.dc_per_class_raw):
                raw = pp.dc_per_class_raw.get(k, math.nan)
                allfg = pp.dc_per_class_pp_all.get(k, math.nan)
                per = pp.dc_per_class_pp_per_class.get(k, math.nan)
                final = per if k in alone else (allfg if merged else raw)
                rows.append([f"{k} {names.get(k, '')}".strip(), _f(raw), _f(allfg), _f(per),
                             "yes" if k in alone else "no", _delta(final - raw)])
            lines += _table(["label", "raw", "all foreground merged", "label alone", "kept alone", "Δ Dice"],
                            rows)
            lines += [f"Merged-foreground step {'accepted' if merged else 'rejected'} (accepted only when some "
                      "label improves and none gets worse); then each label alone is accepted when its mean "
                      "Dice improves.", ""]
    if result.strategies is not None:
        comp = result.strategies
        lines += ["## Fusion strategies", "", comp.summary() + ".", ""]
        rows = [[b.strategy, "+".join(b.members), _f(b.score), _delta(b.score - comp.winner.score)]
                for b in comp.best]
        lines += _table(["strategy", "best subset (equal weights)", "OOF score", "Δ to the winner"], rows)
        lines += [""]
        if comp.weighted:
            best_row = comp.overall
            rows = [[b.strategy, b.weighting.replace("-", " "), "+".join(b.members), _f(b.score),
                     _delta(b.score - best_row.score)] for b in comp.weighted]
            lines += ["Learned weightings under each strategy that takes them (every case fused with the weights "
                      "fitted without its fold; STAPLE takes no weights):", ""]
            lines += _table(["strategy", "weighting", "members", "honest OOF score", "Δ to the best"], rows)
            lines += ["", f"Best of all: **{best_row.label}**, {_f(best_row.score)}.", ""]
    if result.qa is not None:
        qa = result.qa
        lines += ["## QA score on the out-of-fold cases", "",
                  f"The per-case QA score (what `medfuse fuse --qa` reports on test cases) against the winner's "
                  f"fused Dice on the {len(qa.cases)} OOF cases: Spearman {qa.summary()}. 1 would mean the "
                  "score orders the cases exactly from worst to best.", ""]
        rows = [[case, _f(score), _f(dice)] for case, score, dice in qa.worst(5)]
        lines += _table(["most suspicious case", "QA score", "fused Dice"], rows)
        lines += [""]
    if plots:
        lines += ["## Plots", "", *(f"![{Path(p).stem}]({Path(p).name})" for p in plots), ""]
    lines += ["## Notes", "", *(f"- {n}" for n in result.notes), ""]
    lines += ["## Run", ""]
    lines += ["- models: " + ", ".join(f"`{m}` ← `{s}`" for m, s in zip(result.models, result.sources,
                                                                         strict=True))]
    lines += ["- timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())]
    lines += ["- settings: " + ", ".join(f"{k}={v}" for k, v in result.settings.items()), ""]
    return "\n".join(lines)


def _delta(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.4f}"


def _top(result: SearchResult) -> list[Candidate]:
    top = [result.best] + [c for c in result.candidates if c is not result.best]
    return top[:TOP]


def render_html(markdown: str, *, title: str = "medfuse ensemble search") -> str:
    """A self-contained HTML page of the Markdown report (tables, headings, code, images; no dependencies)."""
    out = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child,td:nth-child(2)"
           "{text-align:left}pre{background:#f4f4f4;padding:.5em;overflow:auto}</style>"]
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            rows = [r.strip("|").split(" | ") for r in lines[i:j] if not r.startswith("|---")]
            cells = ["<tr>" + "".join(f"<{'th' if k == 0 else 'td'}>{_inline(c.strip())}</{'th' if k == 0 else 'td'}>"
                                      for c in row) + "</tr>" for k, row in enumerate(rows)]
            out.append("<table>" + "".join(cells) + "</table>")
            i = j
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append(f"<p><img alt='{html.escape(alt)}' src='{html.escape(src.rstrip(')'))}'></p>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out) + "\n"


def _inline(text: str) -> str:
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _plot_ranking(result: SearchResult, path: Path) -> None:
    from .._core.optional import import_optional

    mpl = import_optional("matplotlib", purpose="search plots")
    mpl.use("Agg")
    plt = import_optional("matplotlib.pyplot", purpose="search plots")
    cands = list(result.candidates)[:30]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(cands) + 1.5))
    y = np.arange(len(cands))[::-1]
    scores = np.array([c.ranking_score for c in cands])
    lo = np.array([(c.honest_ci if c.kind != "subset" else c.ci)[0] for c in cands])
    hi = np.array([(c.honest_ci if c.kind != "subset" else c.ci)[1] for c in cands])
    err = np.vstack([np.nan_to_num(scores - lo), np.nan_to_num(hi - scores)])
    colors = ["C3" if c is result.best else "C0" for c in cands]
    ax.barh(y, scores, xerr=err, color=colors, alpha=0.8, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels([c.name for c in cands], fontsize=8)
    finite = scores[np.isfinite(scores)]
    if finite.size:
        ax.set_xlim(max(0.0, float(np.nanmin(lo if np.isfinite(lo).any() else finite)) - 0.02), 1.0)
    ax.set_xlabel("ranking score (honest for fitted candidates), with CI")
    ax.set_title("Ensemble candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def _plot_boxes(result: SearchResult, path: Path) -> None:
    from ..plots import dice_boxplot

    labels = list(result.labels)
    groups = {c.name: {k: c.case_dice[:, j] for j, k in enumerate(labels)} for c in _top(result)[:3]}
    dice_boxplot(groups, path, title="Per-class Dice of the top candidates (out-of-fold cases)")


def write_search_outputs(result: SearchResult, output: str | os.PathLike[str], *, html_report: bool = False,
                         plots: bool = False, label_names: Mapping[int, str] | None = None) -> list[Path]:
    """Write ``search.json``, ``report.md``, ``postprocessing.json`` (when determined), ``weights.json``
    (per-class winners), and optionally ``report.html`` and ``ranking.png`` / ``dice_boxplot.png``.

    All files are produced under temporary names first and renamed at the end: on error nothing is left.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from .._core.atomic import atomic_writes

    out = Path(output)
    written: list[Path] = []
    created = not out.exists()
    try:
        with atomic_writes(out) as staging:  # each file fsynced and verified, then all renamed
            def stage(name: str) -> Path:
                written.append(out / name)
                return staging(name)

            plot_names: list[str] = []
            if plots:
                _plot_ranking(result, stage("ranking.png"))
                _plot_boxes(result, stage("dice_boxplot.png"))
                plot_names = ["ranking.png", "dice_boxplot.png"]
            import json

            files = {"weights_file": str(out / "weights.json"),
                     "postprocessing_file": str(out / "postprocessing.json")}
            stage("search.json").write_text(json.dumps(result.to_dict(**files), indent=2, allow_nan=False) + "\n",
                                            encoding="utf-8")
            markdown = render_markdown(result, label_names=label_names, plots=plot_names, **files)
            stage("report.md").write_text(markdown + "\n", encoding="utf-8")
            if html_report:
                stage("report.html").write_text(render_html(markdown), encoding="utf-8")
            if result.postprocessing is not None:
                stage("postprocessing.json").write_text(result.postprocessing.to_json() + "\n", encoding="utf-8")
            if result.best.class_weights is not None:
                stage("weights.json").write_text(json.dumps(result.weights_file(), indent=2) + "\n",
                                                 encoding="utf-8")
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return written
