"""How results show themselves in a notebook: small HTML tables (``_repr_html_``) and short reprs."""

from __future__ import annotations

import html
from collections.abc import Sequence

from .formatting import fmt

__all__ = ["html_table", "short_list"]

#: rows shown before a table is cut (the rest is summarised in one line)
MAX_ROWS = 30


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str = "",
               digits: int = 4, max_rows: int = MAX_ROWS) -> str:
    """An HTML table: floats with ``digits`` decimals (NaN as ``-``), every cell escaped.

    Rows beyond ``max_rows`` are left out and counted in a last line.
    """
    out = ["<table>"]
    if caption:
        out.append(f"<caption style=\"text-align:left\">{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows[:max_rows]:
        out.append("<tr>" + "".join(f"<td>{html.escape(fmt(v, digits))}</td>" for v in row) + "</tr>")
    if len(rows) > max_rows:
        out.append(f"<tr><td colspan=\"{len(headers)}\">... {len(rows) - max_rows} more rows</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def short_list(items: Sequence[object], *, limit: int = 6) -> str:
    """``[a, b, c, ..., z] (26)`` for long lists, the plain list otherwise."""
    if len(items) <= limit:
        return "[" + ", ".join(str(v) for v in items) + "]"
    head = ", ".join(str(v) for v in items[: limit - 1])
    return f"[{head}, ..., {items[-1]}] ({len(items)})"
