"""Matrices at any size: what `matrix` and `vector` show, decided per page once the whole page is known.

A matrix is shown one of three ways:

    full     every number in a table (at most MAX_CELLS cells and WIDE_COLS columns: the tiny model's tables)
    wide     every number, but wider than the text column: a heatmap of all of them, and the table one click
             away on a page of its own (numbers/NAME~batch0.html: a page stays small; clicking the heatmap opens
             that page at the cell)
    window   too many numbers for a page: a heatmap of the whole tensor (downsampled past HEAT_ROWS × HEAT_COLS
             pixels, and saying so), its statistics (mean, standard deviation, min, max, norm), a table of its
             first and last rows and columns plus the row and column each calc() block on the page uses, and a
             sentence saying which rows and columns of how many are shown

The row and the column a calc() block on the page uses are marked in that record's table and heatmap. Pages
render top to bottom and a calc() often comes after its matrix, so inside a page `matrix` returns the placeholder
of a block (macros.blocks) still to be drawn, and `finish_page` (a page hook, run on the page's Jinja output) draws
every matrix once the page's calc() blocks are known: each becomes a Table block, with the files it links to. It
also sizes the windows to the page (at most PAGE_CELLS cells in all) and puts the per-head tables of a record with
HEAD_GROUP heads or more behind a head selector (one block): one <details> per head, the first (or the one a calc
uses) open, which assets/site.js turns into buttons; without JavaScript every head is still there.

Outside a page (a test calling a macro), a matrix is drawn at once.

The table page of a wide matrix is collected through the page's PageContext (`ctx.make`, kept with the page's
body) and written by the build (`table_pages`): one page per record and fixed indices, whichever pages show it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np

from site_build import tables
from site_build.charts.plots import HEAT_COLS, HEAT_ROWS, blocks
from site_build.data.downloads import (
    FileNeed,
    csv_path,
    has_csv,
    has_npy,
    heat_file,
    npy_file,
    npy_path,
    ships_trace,
    window_file,
)
from site_build.format import counted, html_text, html_words, sig
from site_build.macros.blocks import CLOSE, OPEN, SLOT_RE, Calc, Cells, Table, slot
from site_build.macros.registry import PageContext, page_hook
from site_build.pages import ExtraPage, Page
from site_build.tables import Axis

MAX_CELLS = 1024  # a matrix up to this many cells shows every number (the default site's largest is 16 × 64)
WIDE_COLS = 16  # wider than this, a matrix that shows every number shows them behind its heatmap
WINDOW_EDGE = 5  # rows and columns kept at each end of a window, at most ...
MIN_EDGE = 2  # ... and at least (PAGE_CELLS decides between)
OTHER_EDGE = 1  # in the other blocks (other_blocks), beside the walkthrough of the page's own block
PAGE_CELLS = 5_000  # the cells of all windows of one page: GPT-2-small's LayerNorm page holds 12 blocks of them
HEAD_GROUP = 3  # a record with this many heads shows its heads behind a head selector
TABLE_DIR = "numbers"  # the table pages of wide matrices
LABELLED_ROWS = 32  # a heatmap whose rows are up to this many tokens, one pixel row each, names its rows


@dataclass
class View:
    """One matrix (or vector) call: a 2-D view of a record, and everything needed to draw it later."""

    rec: Any
    values: np.ndarray  # the 2-D view (a vector: 1 × n, or n × 1 when its axis has word labels)
    at: tuple[int, ...]  # the record's fixed leading indices (batch, head, row): the table's data-at
    rows: Axis  # full axes; `shown` is every index unless the page picked rows or columns
    cols: Axis
    sym: str  # the caption's symbol (a math slot, made when the macro ran)
    corner: str
    mode: str  # "full", "wide" or "window"
    picked: bool = False  # the page chose rows/cols/limit/edge itself: shown as it asked
    head: int | None = None
    batch: int = 0
    other: bool = False  # inside other_blocks
    vector: bool = False
    compare: Callable[[Axis, Axis], str] | None = None  # the other run's block, for the axes shown
    check: str = ""
    ships: bool = True  # the site carries the trace file (downloads.ships_trace)
    stats: dict[str, Any] | None = None
    marks: tuple[set[int], set[int]] = field(default_factory=lambda: (set(), set()))


def trace_ships(ctx: PageContext) -> bool:
    if "ships" not in ctx.memo:
        ctx.memo["ships"] = ships_trace(ctx.trace)
    return ctx.memo["ships"]


def mode_of(n_rows: int, n_cols: int, limit: int) -> str:
    if n_rows * n_cols <= MAX_CELLS and n_rows <= limit and n_cols <= limit:
        return "full" if n_cols <= WIDE_COLS else "wide"
    return "window"


def defer(ctx: PageContext, view: View) -> str:
    """The placeholder of the view's block inside a page (drawn by `finish_page`), or the view drawn now."""
    if ctx.blocks is None:
        return draw(ctx, view, WINDOW_EDGE, [])
    if view.mode == "window" and not view.picked and not view.ships:  # a big run's: its statistics are worked
        ctx.start(_stats_key(view), lambda: stats_of(view.values))  # out while the page goes on rendering
    return ctx.blocks.add(view)


# -- the page hook ----------------------------------------------------------------------------------------------------
@page_hook
def finish_page(ctx: PageContext, text: str) -> str:
    """Draw the page's matrices (those its text shows): windows sized to the page, calc cells marked, heads behind
    a selector."""
    blocks = ctx.blocks
    if blocks is None:
        return text
    every = [b for b in blocks.blocks if isinstance(b, View)]  # the page's windows share PAGE_CELLS
    if not every:
        return text
    calcs = [b for b in blocks.blocks if isinstance(b, Calc)]
    for view in every:
        view.marks = _marks(calcs, view)
    edge = _edge(every)
    shown = dict.fromkeys(int(m.group(1)) for m in SLOT_RE.finditer(text))
    views = {n: blocks.blocks[n] for n in shown if isinstance(blocks.blocks[n], View)}
    for n, view in views.items():
        files: list[FileNeed] = []
        html = draw(ctx, view, OTHER_EDGE if view.other else edge, files)
        cells = cells_of(view, OTHER_EDGE if view.other else edge)
        blocks.set(n, Table((view.rec.name,), tuple(dict.fromkeys(files)), (cells,)), html)

    def heads(match: re.Match) -> str:
        """A run of views with nothing but white space between: each record's heads behind one selector."""
        run = [int(n) for n in SLOT_RE.findall(match.group(0))]
        out, group = [], [run[0]]
        for n in run[1:]:
            a, b = views[group[-1]], views[n]
            same = (a.rec.name == b.rec.name and a.batch == b.batch and a.head is not None and b.head is not None
                    and b.head not in {views[k].head for k in group})
            if same:
                group.append(n)
            else:
                out.append(_heads(ctx, views, group))
                group = [n]
        out.append(_heads(ctx, views, group))
        return "".join(out)

    one = f"{OPEN}(?:{'|'.join(map(str, views))}){CLOSE}"  # the placeholder of a view the text shows
    text = re.sub(f"{one}(?:\\s*{one})+", heads, text)
    fold_after_first(ctx, text, views)
    return text


def fold_after_first(ctx: PageContext, text: str, views: dict[int, View]) -> None:
    """Every table of the page after its first behind one click (a closed <details> whose summary names it), so the
    page reads as its story and one worked table, the rest on demand; the tables of other_blocks are folded
    already. A group of heads counts as one table."""
    blocks = ctx.blocks
    assert blocks is not None
    first = True
    for n in dict.fromkeys(int(m.group(1)) for m in SLOT_RE.finditer(text)):
        block = blocks.blocks[n]
        if not isinstance(block, Table) or not block.records:
            continue
        view = views.get(n) or next((v for v in views.values() if v.rec.name == block.records[0]), None)
        if view is None or view.other:
            continue
        if first:
            first = False
            continue
        heads = blocks.html[n].count('<details class="head"')
        where = [f"text {view.batch + 1}"] if view.batch else []
        where += [f"head {view.head}"] if view.head is not None and not heads else []
        what = f"its {heads} heads" if heads else "the numbers" + (f" ({', '.join(where)})" if where else "")
        blocks.set(n, block, f'<details class="fold"><summary>{view.sym} <code>{escape(view.rec.name)}</code>: '
                             f"show {what}</summary>{blocks.html[n]}</details>")


def _marks(calcs: list[Calc], view: View) -> tuple[set[int], set[int]]:
    """The rows and columns of this view that the page's calc() blocks use."""
    rows: set[int] = set()
    cols: set[int] = set()
    n = len(view.at)
    for calc in calcs:
        name, idx = calc.record, calc.at
        if name != view.rec.name or tuple(idx[:n]) != view.at:
            continue
        rest = idx[n:]
        if view.vector:
            if len(rest) == 1:
                (rows if view.rows.name else cols).add(rest[0])
        elif len(rest) == 2:
            rows.add(rest[0])
            cols.add(rest[1])
    return rows, cols


def _edge(views: list[View]) -> int:
    """The largest window edge (MIN_EDGE..WINDOW_EDGE) whose windows fit PAGE_CELLS on this page."""
    windows = [v for v in views if v.mode == "window" and not v.picked]
    for edge in range(WINDOW_EDGE, MIN_EDGE - 1, -1):
        cells = sum(_count(v, OTHER_EDGE if v.other else edge) for v in windows)
        if cells <= PAGE_CELLS:
            return edge
    return MIN_EDGE


def _count(view: View, edge: int) -> int:
    r, c = view.values.shape
    rows, cols = view.marks
    return min(r, 2 * edge + len(rows)) * min(c, 2 * edge + len(cols))


def _heads(ctx: PageContext, views: dict[int, View], run: list[int]) -> str:
    """Consecutive tables of one record's heads: one block of a <details> per head behind a selector, or the
    tables as they are."""
    blocks = ctx.blocks
    assert blocks is not None
    first = views[run[0]]
    axis = next((a for a in first.rec.axes if a in ("heads", "kv_heads")), None)
    n_heads = first.rec.value.shape[list(first.rec.axes).index(axis)] if axis else 0
    if len(run) < 2 or n_heads < HEAD_GROUP:
        return "\n\n".join(slot(i) for i in run)
    marked = [i for i in run if views[i].marks[0] or views[i].marks[1]]
    opened = marked[0] if marked else run[0]
    name = escape(first.rec.name)
    out = [f'<div class="heads" data-heads-of="{name}"><p class="heads-note">{len(run)} heads of '
           f"<code>{name}</code>, one table each: pick a head"
           f'{" (the one a calculation on this page uses is open)" if marked else ""}.</p>']
    for i in run:
        head = views[i].head
        out.append(f'<details class="head" data-head="{head}"{" open" if i == opened else ""}>'
                   f"<summary>Head {head}</summary>{blocks.html[i]}</details>")
    out.append("</div>")
    files = tuple(dict.fromkeys(f for i in run for f in blocks.blocks[i].files))
    cells = tuple(c for i in run for c in blocks.blocks[i].cells)
    return blocks.add(Table((first.rec.name,), files, cells), "".join(out))


# -- drawing ----------------------------------------------------------------------------------------------------------
def draw(ctx: PageContext, view: View, edge: int, files: list[FileNeed]) -> str:
    """The HTML of one view: a table (full), a heatmap and its table (wide), or a window; the files it links to
    are added to `files`."""
    rows_mark, cols_mark = view.marks
    if view.mode == "full" or view.picked:
        shown = (view.rows, view.cols)
        html = tables.table(view.values, *shown, caption(view, *shown, files), view.rec.name, view.at, view.corner,
                            rows_mark, cols_mark)
        return html + (view.compare(*shown) if view.compare else "") + view.check
    if view.mode == "wide":
        return (f'<figure class="big wide"><figcaption>{caption(view, view.rows, view.cols, files)}</figcaption>'
                f"{heat_figure(view, (1, 1), files)}{table_link(ctx, view, files)}{view.check}</figure>")
    rows, cols = shown_axes(view, edge)
    stats = statistics(ctx, view)
    window = " × ".join(f"{_n(a.shown)} of {a.size}" for a in (rows, cols) if a.name)
    table = tables.table(view.values, rows, cols, f"<code>{html_text(view.rec.name)}</code>: the window, {window}",
                         view.rec.name, view.at, view.corner, rows_mark, cols_mark)
    _, block = _picture(view)
    return (f'<figure class="big window"><figcaption>{caption(view, rows, cols, files)}</figcaption>'
            f'<p class="shown">{shown_sentence(view, rows, cols)}</p>'
            f'<p class="stats">{stats_sentence(stats)}</p>'
            f"{heat_figure(view, block, files)}{table}"
            f"{view.compare(rows, cols) if view.compare else ''}{view.check}</figure>")


def shown_axes(view: View, edge: int) -> tuple[Axis, Axis]:
    """The rows and columns of the view its table shows (a window's: `edge` at each end and the marked ones)."""
    if view.mode != "window" or view.picked:
        return view.rows, view.cols
    return _window_axis(view.rows, edge, view.marks[0]), _window_axis(view.cols, edge, view.marks[1])


def cells_of(view: View, edge: int) -> Cells:
    """The elements the view's table shows, and where: on the page, or on a wide matrix's table page."""
    rows, cols = shown_axes(view, edge)

    def indices(axis: Axis) -> tuple[int, ...] | None:
        return tuple(i for i in axis.shown if i is not None) if axis.name else None

    url = table_url(view) if view.mode == "wide" and not view.picked else ""
    return Cells(view.rec.name, tuple(view.at), indices(rows), indices(cols), url)


def _window_axis(axis: Axis, edge: int, marks: set[int]) -> Axis:
    """First and last `edge` indices, and the marked ones, with a ⋯ gap wherever indices are skipped."""
    if not axis.name or axis.size <= 2 * edge + len(marks):
        return axis
    keep = sorted(set(range(edge)) | set(range(axis.size - edge, axis.size)) | {i for i in marks if i < axis.size})
    shown: list[int | None] = []
    for i in keep:
        if shown and shown[-1] is not None and i != shown[-1] + 1:
            shown.append(None)
        shown.append(i)
    return Axis(axis.name, shown, axis.labels, axis.size)


def caption(view: View, rows: Axis, cols: Axis, files: list[FileNeed]) -> str:
    """Symbol, record name, fixed indices, shape with axis names, what is shown, and the downloads."""
    rec = view.rec
    parts = [f'<span class="sym">{view.sym}</span>' if view.sym else "", f"<code>{html_text(rec.name)}</code>"]
    parts.extend(f'<span class="at">{at}</span>' for at in _at_words(view))
    parts.append(f'<span class="shape">{_shape(view)}</span>')
    full = tuple(n for n, a in ((view.values.shape[0], view.rows), (view.values.shape[1], view.cols)) if a.name)
    shown = tuple(_n(a.shown) for a in (rows, cols) if a.name)
    if shown != full:
        parts.append(f'<span class="shown">showing {" × ".join(map(str, shown))}</span>')
    parts.append(_downloads(view, rows, cols, files))
    return " ".join(p for p in parts if p)


def _at_words(view: View) -> list[str]:
    """The view's fixed indices in words: `batch 0`, `head 1`, `row 2`."""
    kinds = [k for k, axis in (("batch", "batch"), ("head", "heads"), ("key/value head", "kv_heads"))
             if axis in view.rec.axes]
    return [f"{kind} {i}" for kind, i in zip([*kinds, "row"], view.at)]


def _shape(view: View) -> str:
    """`6 × 64 (tokens × d_ff)`: the view's size along its named axes."""
    full = [n for n, a in ((view.values.shape[0], view.rows), (view.values.shape[1], view.cols)) if a.name]
    names = " × ".join(a.name for a in (view.rows, view.cols) if a.name)
    return f'{" × ".join(map(str, full))} ({html_text(names)})'


def _downloads(view: View, rows: Axis, cols: Axis, files: list[FileNeed]) -> str:
    rec, values = view.rec, view.rec.value
    if has_csv(values):
        return (f'<a class="csv" href="{escape(csv_path(rec.name))}" download '
                f'title="Download all {values.size} values at full precision">CSV</a>')
    ri = [i for i in rows.shown if i is not None] if rows.name else [0]
    ci = [j for j in cols.shown if j is not None]
    if not cols.name:  # a vertical vector: its one axis is the rows
        ri, ci = [0], [i for i in rows.shown if i is not None]
    window = window_file(rec.name, view.at, ri, ci)
    files.append(window)
    links = [f'<a class="csv" href="{escape(window.path)}" download '
             f'title="The {len(ri) * len(ci):,} values shown, at full precision">CSV</a>']
    if has_npy(values):
        files.append(npy_file(rec.name))
        links.append(f'<a class="csv" href="{escape(npy_path(rec.name))}" download '
                     f'title="All {values.size:,} values of the record (NumPy .npy)">.npy</a>')
    return " ".join(links)


def shown_sentence(view: View, rows: Axis, cols: Axis) -> str:
    """`Shown: 13 of 64 rows (tokens 0–5, 31, 58–63) and 14 of 768 columns (d_model 0–5, 17, 762–767)`, and where
    the rest is."""
    parts = []
    for axis, what in ((rows, "rows"), (cols, "columns")):
        if not axis.name:
            continue
        n = _n(axis.shown)
        word = what if axis.size != 1 else what[:-1]
        if n == axis.size:
            parts.append(f"all {axis.size:,} {word}")
        else:
            parts.append(f"{n} of {axis.size:,} {word} ({html_text(axis.name)} {_spans(axis.shown)})")
    marks = [w for w, m in zip(("row", "column"), view.marks) if m]
    mark = f"; the {' and '.join(marks)} a calculation on this page uses {'are' if len(marks) > 1 else 'is'} " \
           "marked" if marks else ""
    rec = view.rec
    if has_npy(rec.value):
        rest = f"every value of the record ({rec.value.size:,} in all) is in its .npy file"
    elif view.ships:
        rest = "every value is in the site's trace.json"
    else:
        rest = ("every value is in the trace, too big to ship with the site: <code>handstep trace --config CONFIG "
                "--out trace.json</code>, with the config this site was built from, writes it")
    return f"Shown: {' and '.join(parts)}{mark}. The heatmap covers every value; {rest}."


def _spans(shown: list[int | None]) -> str:
    out, run = [], []
    for i in [*shown, None]:
        if i is not None and (not run or i == run[-1] + 1):
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i] if i is not None else []
    return ", ".join(out)


def _n(shown: list[int | None]) -> int:
    return sum(1 for i in shown if i is not None)


# -- the table page of a wide matrix ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TablePart:
    """What a page that shows a wide matrix puts on its table page (HTML with no formula: cached pages replay it
    as it is)."""

    name: str  # the record and its fixed indices, as text: `L0.mlp.fc, batch 0`
    count: int
    about: str  # `<code>L0.mlp.fc</code>, batch 0: 6 × 64 (tokens × d_ff)`
    downloads: str
    table: str
    compare: str  # the other run's values (`build --compare`): explain.js draws them under the table


def table_url(view: View) -> str:
    """`numbers/L0.mlp.c_fc.weight.html`, `numbers/L0.mlp.fc~batch0.html`: the record and its fixed indices (the
    heatmaps' file names, with the kind of each index spelled out)."""
    return f"{TABLE_DIR}/{view.rec.name}{''.join('~' + w.replace(' ', '') for w in _at_words(view))}.html"


def table_link(ctx: PageContext, view: View, files: list[FileNeed]) -> str:
    """The link from a wide matrix's figure to its table page, which the page being rendered fills (`ctx.make`)."""
    n = view.values.size
    code = f"<code>{html_text(view.rec.name)}</code>"
    at = "".join(f", {w}" for w in _at_words(view))
    table = tables.table(view.values, view.rows, view.cols, f"All {n:,} numbers of {code}", view.rec.name, view.at,
                         view.corner, *view.marks)
    url = table_url(view)
    downloads = _downloads(view, view.rows, view.cols, files)
    ctx.make(url, TablePart(view.rec.name + at, n, f"{code}{at}: {_shape(view)}", downloads, table,
                            view.compare(view.rows, view.cols) if view.compare else ""))
    return f'<p class="numbers"><a href="{escape(url)}">All {n:,} numbers as a table</a> (its own page)</p>'


def table_pages(made: list[tuple[Page, dict[str, TablePart]]]) -> dict[str, ExtraPage]:
    """{url: page} of every wide matrix's table, as the first page (in site order) that shows it drew it, linking
    back to every page that shows it (`made`: each page, in site order, with what it put on table pages). Kept out of
    the search index: people search for words, not numbers."""
    shown_on: dict[str, list[tuple[Page, TablePart]]] = {}
    for page, parts in made:
        for url, part in parts.items():
            shown_on.setdefault(url, []).append((page, part))
    out = {}
    for url, where in sorted(shown_on.items()):
        first, part = where[0]
        links = " and ".join(f'<a href="{escape(p.url)}">{html_text(p.title)}</a>' for p, _ in where)
        body = (f'<p class="table-of">{part.about}. Every number of it is in the table below; its heatmap is on '
                f"{links}. At full precision: {part.downloads}.</p>{part.table}{part.compare}")
        out[url] = ExtraPage(f"All {part.count:,} numbers of {part.name}", f"Every number of {part.name} as a table.",
                             body, first.section, data_of=first.url, indexed=False)
    return out


# -- statistics and the heatmap ---------------------------------------------------------------------------------------
def statistics(ctx: PageContext, view: View) -> dict[str, Any]:
    """Mean, standard deviation, min, max and norm of every value of the view (finite ones: the causal mask's
    −∞ are counted apart), as NumPy computes them; once per build for each view."""
    return ctx.figures(_stats_key(view), lambda: stats_of(view.values))


def _stats_key(view: View) -> tuple:
    return ("stats", view.rec.name, view.at)


def stats_of(values: np.ndarray, chunk: int = 1 << 20) -> dict[str, Any]:
    """The statistics of an array, two passes of `chunk` values at a time (no copy of a memory-mapped record)."""
    flat = np.asarray(values).reshape(-1)
    n = flat.size
    total, lo, hi, finite, masked = 0.0, math.inf, -math.inf, 0, 0
    for start in range(0, n, chunk):
        part = np.asarray(flat[start:start + chunk], dtype=float)
        ok = np.isfinite(part)
        if not ok.all():
            masked += int((~ok).sum())
            part = part[ok]
        if part.size:
            total += float(part.sum())
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
            finite += part.size
    mean = total / finite if finite else 0.0
    dev = squares = 0.0
    for start in range(0, n, chunk):
        part = np.asarray(flat[start:start + chunk], dtype=float)
        part = part[np.isfinite(part)] if masked else part
        d = part - mean
        dev += float(d @ d)
        squares += float(part @ part)
    return {"n": n, "finite": finite, "masked": masked, "mean": mean, "std": math.sqrt(dev / finite) if finite else 0.0,
            "min": lo if finite else 0.0, "max": hi if finite else 0.0, "norm": math.sqrt(squares)}


def stats_sentence(s: dict[str, Any]) -> str:
    masked = f" (the {s['masked']:,} masked entries, −∞, left out)" if s["masked"] else ""
    return (f"All {s['n']:,} values{masked}: mean {sig(s['mean'], 4)}, standard deviation {sig(s['std'], 4)}, "
            f"min {sig(s['min'], 4)}, max {sig(s['max'], 4)}, norm {sig(s['norm'], 4)} "
            "(the square root of the sum of squares).")


def _picture(view: View) -> tuple[tuple[int, int], tuple[int, int]]:
    """(rows, cols) of the view as the heatmap draws it (a vector lies down), and the block each pixel stands for."""
    r, c = view.values.shape
    if view.vector:
        r, c = 1, r * c
    return (r, c), blocks(r, c)


def display_size(rows: int, cols: int) -> tuple[int, int]:
    """CSS pixels for a picture of rows × cols pixels: up to 720 × 320, whole multiples where it is enlarged much."""
    rows, cols = math.ceil(rows / math.ceil(rows / HEAT_ROWS)), math.ceil(cols / math.ceil(cols / HEAT_COLS))
    factor = min(720 / cols, 320 / rows)
    factor = math.floor(factor) if factor >= 2 else factor
    return max(120, round(cols * factor)), max(24, round(rows * factor))


def heat_figure(view: View, block: tuple[int, int], files: list[FileNeed]) -> str:
    """The heatmap <img> of the whole view (a file the build writes: `files`, downloads.page_files), with the calc's
    row and column marked, and a sentence saying what a pixel is."""
    (r, c), (bh, bw) = _picture(view)
    ph, pw = math.ceil(r / bh), math.ceil(c / bw)
    width, height = display_size(ph, pw)
    rows_mark, cols_mark = view.marks
    if view.vector:
        rows_mark, cols_mark = set(), rows_mark | cols_mark
    overlay = "".join(f'<span class="hl-r" style="top:{100 * i / r:.3g}%;height:{100 / r:.3g}%"></span>'
                      for i in sorted(rows_mark) if r > 1)
    overlay += "".join(f'<span class="hl-c" style="left:{100 * j / c:.3g}%;width:{100 / c:.3g}%"></span>'
                       for j in sorted(cols_mark))
    name = view.rec.name
    what = f"{r:,} × {c:,}" if not view.vector else f"{c:,}"
    alt = f"Heatmap of all {what} values of {name}"
    flip = ' data-t="1"' if view.vector and view.rows.name else ""
    heat = heat_file(name, *view.at)
    files.append(heat)
    img = (f'<img src="{escape(heat.path)}" width="{width}" height="{height}" alt="{escape(alt)}" '
           f'loading="lazy" decoding="async" data-r="{r}" data-c="{c}"{flip}>')
    if bh * bw > 1:
        note = (f"Heatmap of all {what} values, downsampled to {ph} × {pw} pixels: each pixel shows the value of "
                f"largest magnitude among {bh} × {bw} of them.")
    else:
        note = f"Heatmap of all {what} values, one square each."
    note += " Blue positive, red negative, the stronger the larger |value| (relative to the largest)."
    if view.mode == "wide":
        note += " Click a square, or open the table of all numbers, for its number."
    heat = f'<div class="hm">{img}{overlay}</div>'
    words = row_labels(view, bh)
    if words:
        items = "".join(f"<li>{html_words(w)}</li>" for w in words)
        heat = (f'<div class="hm-rows" style="--rows:{len(words)}"><ol class="hm-labels" aria-label="rows: '
                f'{counted(len(words), "token")}">{items}</ol>{heat}</div>')
    return f'{heat}<p class="hm-note">{note}</p>'


def row_labels(view: View, rows_per_pixel: int) -> list[str]:
    """The words beside a heatmap's rows when its rows are tokens (activations: tokens × d_ff, ...), one pixel row
    each and at most LABELLED_ROWS of them; otherwise none."""
    r = view.values.shape[0]
    if view.vector or view.rows.name not in ("tokens", "keys") or rows_per_pixel != 1 or r > LABELLED_ROWS:
        return []
    return [view.rows.labels[i] for i in range(r)]
