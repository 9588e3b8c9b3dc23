"""Plain-text tables for the command line and reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["fmt", "format_table"]


def fmt(value: object, digits: int = 4) -> str:
    """A cell: floats with ``digits`` decimals (``nan`` shown as ``-``), everything else with ``str``."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, digits: int = 4,
                 markdown: bool = False) -> str:
    """Align ``rows`` under ``headers``; first column left-aligned, the others right-aligned."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(values)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)

    out = [line(list(headers))]
    if markdown:
        out.append("|" + "|".join(("-" * (w + 1) + (":" if i else "-")) if i else "-" * (w + 2)
                                  for i, w in enumerate(widths)) + "|")
    else:
        out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells)
    return "\n".join(out)
