"""The QA table of a run: rows sorted most suspicious first, written as ``qa.csv`` and ``qa.json``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._core.atomic import atomic_writes
from .._core.validation import describe
from ..errors import ValidationError
from .qa import COMPONENTS, SCORE_COEFFICIENTS, CaseQA

__all__ = ["QA_CSV", "QA_JSON", "qa_table", "write_qa"]

QA_CSV = "qa.csv"
QA_JSON = "qa.json"


def qa_table(rows: Sequence[CaseQA]) -> list[CaseQA]:
    """The rows sorted by ``qa_score``, most suspicious first (ties by case name)."""
    checked = list(rows)
    for i, row in enumerate(checked):
        if not isinstance(row, CaseQA):
            raise ValidationError(f"`rows` must hold CaseQA results (from case_qa); entry {i} is {describe(row)}.")
    return sorted(checked, key=lambda r: (-r.qa_score, r.case))


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns or ["case", "qa_score", *COMPONENTS]


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_qa(folder: str | os.PathLike[str], rows: Sequence[CaseQA]) -> tuple[Path, Path]:
    """Write ``qa.csv`` and ``qa.json`` in ``folder``, one row per case sorted by ``qa_score`` (highest first).

    Both files are written atomically and verified, together: neither takes its name unless both are
    whole. ``qa.json`` holds ``{"score": <formula>, "coefficients": {...}, "columns": [...], "cases": [rows]}``.

    Returns
    -------
    (Path, Path)
        The paths of ``qa.csv`` and ``qa.json``.
    """
    table = [r.to_row() for r in qa_table(rows)]
    columns = _columns(table)
    out = Path(folder)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    document = {
        "score": " + ".join(f"{w:g} * {k}" for k, w in SCORE_COEFFICIENTS.items() if w),
        "coefficients": dict(SCORE_COEFFICIENTS),
        "columns": columns,
        "cases": [{k: _plain(v) for k, v in row.items()} for row in table],
    }
    with atomic_writes(out) as stage:
        stage(QA_CSV).write_text(text.getvalue(), encoding="utf-8")
        stage(QA_JSON).write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return out / QA_CSV, out / QA_JSON
