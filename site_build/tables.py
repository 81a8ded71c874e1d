"""HTML for numbers: matrix tables, cells and inline values.

Matrices are plain HTML tables (a KaTeX matrix costs ~20x the bytes). Each cell shows
4 decimals and is shaded by sign and magnitude through a class (p1..p9, n1..n9); the
full-precision value is added on hover/focus by the page script from the page's data.
Past a size, rows and columns are elided numpy-style: the corners and a ⋯ gap (macros.scale decides what a
big matrix shows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

from site_build.format import format_number, full_repr, html_words

DECIMALS = 4  # a table cell's decimals: what a reader working from a table has (the exercises' tolerances follow)


@dataclass(frozen=True)
class Axis:
    """One displayed axis: its name, the indices shown (None = a ⋯ gap) and labels."""

    name: str
    shown: list[int | None]
    labels: list[str]  # label per index of the full axis
    size: int


def elide(indices: list[int], limit: int, edge: int) -> list[int | None]:
    """Keep all indices up to `limit`, else the first and last `edge` with a gap."""
    if len(indices) <= limit:
        return list(indices)
    return [*indices[:edge], None, *indices[-edge:]]


def cell(x: float | int, scale: float) -> str:
    """One <td>: class p1..p9 / n1..n9 (sign, and |x|/scale in ninths), z for zero, m for masked.

    No per-cell title or style: full precision comes from the page's data file on hover/focus
    (JavaScript) and from the CSV and trace downloads; 17 random digits per cell do not compress,
    and a page of 3,000 cells must stay under 40 KB gzip.
    """
    text = format_number(x, DECIMALS)
    if isinstance(x, (int, np.integer)):
        return f'<td class="i">{text}</td>'
    x = float(x)
    if math.isinf(x) or math.isnan(x):
        return f'<td class="m">{text}</td>'
    level = min(9, math.ceil(9 * abs(x) / scale)) if scale > 0 else 0
    if level == 0:
        return f'<td class="z">{text}</td>'
    return f'<td class="{"p" if x > 0 else "n"}{level}">{text}</td>'


def magnitude(values: np.ndarray) -> float:
    """Largest finite |value|, the 100% of the shading scale."""
    if values.dtype.kind in "iub":
        return 0.0
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


DENSE_COLS = 12  # a table with this many columns or more uses the small type that fits 16 in the text column


def table(
    values: np.ndarray,
    rows: Axis,
    cols: Axis,
    caption: str,
    record: str,
    at: tuple[int, ...],
    corner: str,
    mark_rows: set[int] | frozenset[int] = frozenset(),
    mark_cols: set[int] | frozenset[int] = frozenset(),
) -> str:
    """A 2-D table of `values` (indexed [row, col] by full-axis indices), one line of HTML.

    `record` and `at` (the fixed leading index, e.g. batch and head) let scripts map
    a cell back to its trace element: element = at + (row data-i, column data-j); a
    vector's unit axis (name "") carries no data-i/data-j. Rows in `mark_rows` get class
    `hl`, columns in `mark_cols` a `<col class="hl">`: the row and column a calc() block uses.
    A vector's marks are on its one labelled axis.
    """
    ri = [i for i in rows.shown if i is not None]
    ci = [j for j in cols.shown if j is not None]
    picked = values[np.ix_(ri, ci)]
    scale = magnitude(picked)
    at_attr = ",".join(str(i) for i in at)
    dense = " dense" if len(cols.shown) >= DENSE_COLS else ""
    out = [
        f'<div class="matrix-wrap"><table class="matrix{dense}" data-record="{escape(record)}" data-at="{at_attr}">',
        f"<caption>{caption}</caption>",
    ]
    if cols.name and any(j in mark_cols for j in ci):
        out.append("<colgroup><col>")  # the row labels' column
        out.extend('<col class="hl">' if j is not None and j in mark_cols else "<col>" for j in cols.shown)
        out.append("</colgroup>")
    out.append(f'<thead><tr><th class="axes" scope="col">{corner}</th>')
    for j in cols.shown:
        if j is None:
            out.append('<th class="gap" scope="col">⋯</th>')
        else:
            out.append(f'<th scope="col"{_pos("j", j, cols)}>{html_words(cols.labels[j])}</th>')
    out.append("</tr></thead><tbody>")
    for i in rows.shown:
        if i is None:
            out.append('<tr class="gap"><th scope="row">⋮</th>')
            out.extend('<td class="gap">⋱</td>' if j is None else '<td class="gap">⋮</td>' for j in cols.shown)
            out.append("</tr>")
            continue
        hl = ' class="hl"' if rows.name and i in mark_rows else ""
        out.append(f'<tr{_pos("i", i, rows)}{hl}><th scope="row">{html_words(rows.labels[i])}</th>')
        for j in cols.shown:
            out.append('<td class="gap">⋯</td>' if j is None else cell(values[i, j], scale))
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _pos(attr: str, index: int, axis: Axis) -> str:
    """`data-i`/`data-j` for a real axis; none for the unit axis of a vector (it is not in the record)."""
    return f' data-{attr}="{index}"' if axis.name else ""


def inline_value(x: float | int, digits: int, record: str, index: tuple[int, ...]) -> str:
    """A number in running text, highlighted, with the exact value on hover."""
    at = ",".join(str(i) for i in index)
    return (
        f'<span class="value-highlight" data-record="{escape(record)}" data-at="{at}" '
        f'title="{full_repr(x)}">{format_number(x, digits)}</span>'
    )
