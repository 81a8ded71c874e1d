"""Macros that put trace numbers on a page: matrix, vector, value, formula, shape, calc, jacobian, and helpers.

Every macro validates its record name, index and arguments and raises MacroError with a message a writer
can act on; the page renderer adds file and line. Every record whose numbers a macro shows is marked in the
PageContext, so the build can report coverage (`records shown: N/M`) and ship the page's click data. What a macro
puts on the page is a block (macros.blocks): a Formula, a Value, a Calc, a Table.
"""

from __future__ import annotations

import sys
from html import escape
from typing import Any

import numpy as np
from markupsafe import Markup

from engine.explain import jacobian as engine_jacobian
from engine.explain import split_line
from site_build import tables
from site_build.data.compare import compare_block
from site_build.data.downloads import csv_path, has_csv, heat_file, npy_file, tile_heads
from site_build.format import (
    describe_shape,
    fixed,
    format_number,
    general,
    html_text,
    html_words,
    html_words_in,
    needs_isolation,
    sci,
    tex_number,
)
from site_build.macros import scale
from site_build.macros.blocks import Calc, Formula, Table, Value, Wrapper
from site_build.macros.exercises import numpy_html
from site_build.macros.registry import MacroError, PageContext, check_int, filter, macro, pick_indices
from site_build.tables import Axis

LABELLED_AXES = {"tokens", "keys", "vocab"}
HEAD_AXES = ("heads", "kv_heads")  # a head is picked with head=: a query head, or a key/value head (Llama's k, v)
DEFAULT_LIMIT = 64  # show every row/column up to this many, else elide
DEFAULT_EDGE = 4  # rows/columns kept at each end when eliding
MAX_CELLS = scale.MAX_CELLS  # a matrix past this many cells is windowed (macros.scale); a Jacobian, cornered


# -- selection ------------------------------------------------------------------------------------------------
def _select(rec: Any, batch: int, head: int | None) -> tuple[np.ndarray, list[str], list[int]]:
    """Fix the batch and head axes; return (values, remaining axes, fixed index)."""
    values, axes, at = np.asarray(rec.value), list(rec.axes), []
    if axes[:1] == ["batch"]:
        check_int("batch", batch, values.shape[0], rec.name)
        values, at = values[batch], [batch]
        axes.pop(0)
    elif batch != 0:
        raise MacroError(f"'{rec.name}' has no batch axis; drop batch={batch!r}")
    if axes[:1] and axes[0] in HEAD_AXES:
        if head is None:
            raise MacroError(
                f"'{rec.name}' has {values.shape[0]} heads: pass head=0..{values.shape[0] - 1}"
            )
        check_int("head", head, values.shape[0], rec.name)
        values, at = values[head], [*at, head]
        axes.pop(0)
    elif head is not None:
        raise MacroError(f"'{rec.name}' has no heads axis; drop head={head!r}")
    return values, axes, at

def _axis(ctx: PageContext, name: str, size: int, pick: Any, limit: int, edge: int, batch: int, what: str,
          rec: str, picked: bool = True) -> Axis:
    """An axis of a table: the picked indices elided past `limit` (when the page chose), else every index
    (macros.scale windows a big matrix once the page is known)."""
    indices = pick_indices(pick, size, what, rec, name)
    shown = tables.elide(indices, limit, edge) if picked else indices
    return Axis(name, shown, _labels(ctx, name, size, batch), size)

def _labels(ctx: PageContext, axis: str, size: int, batch: int) -> list[str]:
    labels = ctx.trace.labels
    if axis in ("tokens", "keys"):
        words = labels["inputs"][min(batch, len(labels["inputs"]) - 1)]
        return [str(w) for w in words[:size]] + [str(i) for i in range(len(words), size)]
    if axis == "vocab":
        return [str(w) for w in labels["vocab"][:size]]
    return [str(i) for i in range(size)]

def _compare(ctx: PageContext, rec: Any, batch: int, head: int | None, row: int | None, rows: Axis, cols: Axis,
             corner: str, values: np.ndarray, layout: str) -> str:
    """The other run's values for the same view (only when comparing runs)."""
    if ctx.other is None:
        return ""
    label = f"Other run ({ctx.other_label})"
    if rec.name not in ctx.other:
        return compare_block(values, None, rows, cols, corner, label, "not in this run")
    other = ctx.other.record(rec.name)
    if other.value.shape != rec.value.shape:
        return compare_block(values, None, rows, cols, corner, label,
                             f"shape {describe_shape(other.value.shape, other.axes)} there")
    b, _, _ = _select(other, batch, head)
    if row is not None:
        b = b[row]
    b = b[:, None] if layout == "col" else (b[None, :] if layout == "row" else b)
    return compare_block(values, b, rows, cols, corner, label)

# -- macros ---------------------------------------------------------------------------------------------------
@macro
def matrix(
    ctx: PageContext,
    name: str,
    head: int | None = None,
    batch: int = 0,
    rows: Any = None,
    cols: Any = None,
    limit: int = DEFAULT_LIMIT,
    edge: int = DEFAULT_EDGE,
) -> Markup:
    """A record as an HTML table (batch and head fixed); 1-D records become vectors. How much of it a page shows
    (every number, a heatmap with the table behind it, or a window with statistics) is macros.scale's call;
    `rows`, `cols`, `limit` and `edge` choose instead (elided numpy-style past `limit`)."""
    rec = ctx.record(name)
    values, axes, at = _select(rec, batch, head)
    check_int("limit", limit, 10**9, name, low=1)
    check_int("edge", edge, limit + 1, name, low=1)
    if values.ndim == 1:
        return _vector(ctx, rec, values, axes, at, cols if rows is None else rows, batch, limit, edge, head)
    if values.ndim != 2:
        raise MacroError(_ndim_message(rec, values.ndim))
    picked = rows is not None or cols is not None or limit != DEFAULT_LIMIT or edge != DEFAULT_EDGE
    row = _axis(ctx, axes[0], values.shape[0], rows, limit, edge, batch, "rows", name, picked)
    col = _axis(ctx, axes[1], values.shape[1], cols, limit, edge, batch, "cols", name, picked)
    ctx.mark(name)
    corner = f"{html_text(axes[0])} ╲ {html_text(axes[1])}"
    view = scale.View(rec, values, tuple(at), row, col, _sym(ctx, rec), corner,
                      scale.mode_of(*values.shape, limit), picked=picked, head=head, batch=batch,
                      other=ctx.other_block, ships=scale.trace_ships(ctx),
                      check=ctx.check_line(name))
    if ctx.other is not None:
        view.compare = lambda r, c: _compare(ctx, rec, batch, head, None, r, c, corner, values, "")
    return Markup(scale.defer(ctx, view))

@macro
def vector(
    ctx: PageContext,
    name: str,
    head: int | None = None,
    batch: int = 0,
    row: int | None = None,
    cols: Any = None,
    limit: int = DEFAULT_LIMIT,
    edge: int = DEFAULT_EDGE,
) -> Markup:
    """A 1-D record (or one `row` of a 2-D one) as a one-line table."""
    rec = ctx.record(name)
    values, axes, at = _select(rec, batch, head)
    if row is not None and values.ndim == 2:
        check_int("row", row, values.shape[0], name)
        values, at = values[row], [*at, row]
        axes = axes[1:]
    elif row is not None:
        raise MacroError(f"row= needs a 2-D record; '{name}' has axes ({', '.join(rec.axes)})")
    if values.ndim != 1:
        raise MacroError(_ndim_message(rec, values.ndim) + " (vector shows one axis; pass row=)")
    return _vector(ctx, rec, values, axes, at, cols, batch, limit, edge, head, row)

def _vector(ctx: PageContext, rec: Any, values: np.ndarray, axes: list[str], at: list[int], pick: Any, batch: int,
            limit: int, edge: int, head: int | None = None, row: int | None = None) -> Markup:
    """A 1-D vector: vertical when its axis has word labels (tokens, vocab), else one row."""
    check_int("limit", limit, 10**9, rec.name, low=1)
    check_int("edge", edge, limit + 1, rec.name, low=1)
    picked = pick is not None or limit != DEFAULT_LIMIT or edge != DEFAULT_EDGE
    axis = _axis(ctx, axes[0], values.shape[0], pick, limit, edge, batch, "cols", rec.name, picked)
    unit = Axis("", [0], [""], 1)
    ctx.mark(rec.name)
    corner = html_text(axes[0])
    vertical = axes[0] in LABELLED_AXES
    grid = values[:, None] if vertical else values[None, :]
    rows_axis, cols_axis = (axis, unit) if vertical else (unit, axis)
    mode = scale.mode_of(values.shape[0], 1, limit) if vertical else scale.mode_of(1, values.shape[0], limit)
    view = scale.View(rec, grid, tuple(at), rows_axis, cols_axis, _sym(ctx, rec), corner, mode, picked=picked,
                      head=head, batch=batch, other=ctx.other_block, vector=True,
                      ships=scale.trace_ships(ctx), check=ctx.check_line(rec.name))
    if ctx.other is not None:
        layout = "col" if vertical else "row"
        view.compare = lambda r, c: _compare(ctx, rec, batch, head, row, r, c, corner, grid, layout)
    return Markup(scale.defer(ctx, view))

def _sym(ctx: PageContext, rec: Any) -> str:
    """The caption's symbol as a math slot (made now, so a formula error names the macro's line)."""
    return ctx.slot(rec.symbol, False) if rec.symbol else ""

@macro
def value(ctx: PageContext, name: str, index: Any = None, digits: int = 4) -> Markup:
    """One element inline, e.g. `value("loss")` or `value("L0.attn.weights", (0, 1, 2, 0))`."""
    rec = ctx.record(name)
    idx = _index(rec, index)
    check_int("digits", digits, 17, name)
    ctx.mark(name)
    x = np.asarray(rec.value)[idx]
    return ctx.place(Value(name, idx, format_number(x, digits)), tables.inline_value(x, digits, name, idx))

def _index(rec: Any, index: Any) -> tuple[int, ...]:
    shape = np.shape(rec.value)
    if index is None:
        index = ()
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        index = (int(index),)
    if not isinstance(index, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index
    ):
        raise MacroError(f"bad index {index!r} for '{rec.name}': give a tuple of whole numbers")
    index = tuple(int(i) for i in index)
    where = f"'{rec.name}' with shape {describe_shape(shape, rec.axes)}"
    if len(index) != len(shape):
        raise MacroError(f"bad index {index} for {where}: needs {len(shape)} numbers")
    for i, n, axis in zip(index, shape, rec.axes):
        if not 0 <= i < n:
            raise MacroError(f"bad index {index} for {where}: {axis} index {i} is outside 0..{n - 1}")
    return index

def _row_index(rec: Any, index: Any) -> tuple[int, ...]:
    """The index of one row (every axis but the last) of `rec`, checked like `_index`."""
    shape, axes = np.shape(rec.value), list(rec.axes)
    if index is None:
        index = ()
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        index = (int(index),)
    if not isinstance(index, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index
    ):
        raise MacroError(f"bad index {index!r} for '{rec.name}' jacobian: give a tuple of whole numbers, "
                         f"one per axis of ({', '.join(axes[:-1])})")
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) - 1:
        raise MacroError(f"bad index {index} for '{rec.name}' jacobian: needs the index of one row, "
                         f"{len(shape) - 1} numbers ({', '.join(axes[:-1])})")
    for i, n, axis in zip(index, shape, axes):
        if not 0 <= i < n:
            raise MacroError(f"bad index {index} for '{rec.name}' jacobian: {axis} index {i} is outside 0..{n - 1}")
    return index

@macro
def formula(ctx: PageContext, name: str, inline: bool = False) -> Markup:
    """The LaTeX formula that defines a record, typeset (display by default)."""
    rec = ctx.record(name)
    if not rec.formula:
        raise MacroError(f"'{name}' has no formula in the trace")
    slot = ctx.slot(rec.formula, not inline)
    tag = "span" if inline else "div"
    numpy = "" if inline else numpy_html(ctx.trace, name)  # under a displayed formula, after Markdown
    return ctx.place(Formula(name, rec.formula.strip(), not inline),
                     f'<{tag} class="formula" data-record="{escape(name)}">{slot}</{tag}>', numpy)

@macro
def shape(ctx: PageContext, name: str) -> Markup:
    """The record's shape with axis names, e.g. `6 × 16 (tokens × d_model)`."""
    rec = ctx.record(name)
    return html_text(describe_shape(np.shape(rec.value), rec.axes))

@macro
def calc(ctx: PageContext, name: str, index: Any = None) -> Markup:
    """The arithmetic that produced one element, with the real numbers, typeset."""
    idx = _index(ctx.record(name), index)
    # a Calc block: its row and column are marked in the record's table (macros.scale)
    return ctx.place(Calc(name, idx), calc_html(ctx, name, idx))


def calc_html(ctx: PageContext, name: str, idx: tuple[int, ...], css: str = "calc-step") -> str:
    """The HTML of calc(): a <div> of class `css` (the exercises' working has a class of its own)."""
    expl = ctx.explain(name, idx)
    ctx.mark(name)
    at = ",".join(str(i) for i in idx)
    lines = "".join(f'<div class="calc-line">{calc_line(ctx, tex)}</div>' for tex in expl.latex)
    text = getattr(expl, "text", "")
    summary = f'<p class="calc-text">{html_words_in(text, risky_words(ctx))}</p>' if text else ""
    return f'<div class="{css}" data-record="{escape(name)}" data-at="{at}">{summary}{lines}</div>'

def calc_line(ctx: PageContext, tex: str) -> str:
    """One line of working: its left side (up to the first `=`) and the rest typeset apart, so that the rest wraps
    between its terms onto lines that start under its own start (site CSS: .calc-lhs, .calc-rhs); a line with
    no such `=` whole, wrapping with a hanging indent. The click panel lays out its lines alike (explain.js)."""
    lhs, rhs = split_line(tex)
    if not lhs:
        return ctx.slot(tex, True)
    return f'<span class="calc-lhs">{ctx.slot(lhs, True)}</span><span class="calc-rhs">{ctx.slot(rhs, True)}</span>'

def risky_words(ctx: PageContext) -> list[str]:
    """The vocabulary words that need bidi isolation (html_words_in), found once per build: 50,257 words."""
    if "risky" not in ctx.memo:
        ctx.memo["risky"] = [w for w in map(str, ctx.trace.labels["vocab"]) if needs_isolation(w)]
    return ctx.memo["risky"]

@macro
def jacobian(ctx: PageContext, name: str, index: Any = None) -> Markup:
    """The full Jacobian of one softmax, LayerNorm or RMSNorm row w.r.t. its input row, as a matrix table."""
    rec = ctx.record(name)
    if rec.op not in ("softmax", "normalize", "rms_normalize"):
        raise MacroError(f"no Jacobian for {name} (op {rec.op}): give a softmax, LayerNorm or RMSNorm xhat record "
                         "(e.g. L0.attn.weights, probs, ln_f.xhat)")
    row = _row_index(rec, index)
    try:
        J, how = engine_jacobian(ctx.trace, name, row)
    except (KeyError, IndexError, ValueError) as err:  # the checks above should leave nothing for these
        raise MacroError(f"jacobian('{name}', {row}): {str(err).strip(chr(39))}") from None
    axis = rec.axes[-1]
    size = J.shape[0]
    labels = _labels(ctx, axis, size, row[0] if rec.axes[0] == "batch" else 0)
    limit = DEFAULT_LIMIT if size * size <= MAX_CELLS else 2 * DEFAULT_EDGE
    shown = tables.elide(list(range(size)), limit, DEFAULT_EDGE)
    rows = Axis(axis, shown, labels, size)
    cols = Axis(axis, shown, labels, size)
    sym = rec.symbol
    sym_html = ctx.slot(rf"\partial {sym} / \partial\,\mathrm{{in}}", False)
    n = _count(shown)
    cut = f' <span class="shown">showing {n} × {n}: the first and last {DEFAULT_EDGE} of each axis</span>' \
        if n < size else ""
    caption = (f'<span class="sym">{sym_html}</span> '
               f"Jacobian of one row of <code>{html_text(name)}</code> at {html_text(str(list(row)))}: "
               f'<span class="shape">{size} × {size} ({html_text(axis)} × {html_text(axis)}), '
               f"{html_text(how)}</span>{cut}")
    return ctx.place(Table((name,)), tables.table(J, rows, cols, caption, "", (), "out ╲ in"))

@macro
def every_head(ctx: PageContext, names: Any, titled: bool = False) -> Markup:
    """`matrix(name, head=h)` for every head of a record with a heads axis (its query or its key/value heads), one
    after another, each a block of its own: `{{ every_head("L0.attn.weights") }}` where a page would loop. Several
    records (with as many heads) go head by head, each record's matrix of that head in turn:
    `{{ every_head(["L0.attn.q", "L0.attn.k", "L0.attn.v"], titled=true) }}`, each head under `### Head h`."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise MacroError(f"bad argument names={names!r} for every_head(): give a record name or a list of them")
    counts = {}
    for name in names:
        rec = ctx.record(name)
        axis = next((a for a in rec.axes if a in HEAD_AXES), None)
        if axis is None:
            raise MacroError(f"every_head('{name}'): the record has no heads axis; show it with matrix('{name}')")
        counts[name] = int(np.shape(rec.value)[list(rec.axes).index(axis)])
    if len(set(counts.values())) > 1:
        raise MacroError(f"every_head: the records have different numbers of heads ({counts})")
    parts = []
    for h in range(counts[names[0]]):
        parts += [f"### Head {h}"] if titled else []
        parts += [str(matrix(ctx, name, head=h)) for name in names]
    return Markup("\n\n".join(parts))


@macro
def other_blocks(ctx: PageContext, names: Any, title: str = "", layers: Any = None) -> Markup:
    """The same records for the other transformer blocks, one closed `<details>` per block.

    `names` are record names with `{l}` where the block number goes, e.g. `["L{l}.ln_1.mean",
    "grad.L{l}.ln_1.xhat"]`; `layers` the blocks to show (default: 1 to n_layers - 1, the ones the
    walkthrough of block 0 does not show). A record with a heads axis gets one table per head.
    Nothing at all for a one-block model, so a page can call it unconditionally.
    """
    n_layers = int(ctx.trace.config["model"]["n_layers"])
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise MacroError(f"bad argument names={names!r} for other_blocks(): give a list of record names with {{l}}")
    for n in names:
        if not isinstance(n, str) or "{l}" not in n:
            raise MacroError(f"bad record name {n!r} for other_blocks(): write {{l}} where the block number goes, "
                             "e.g. 'L{l}.ln_1.mean'")
    if not isinstance(title, str):
        raise MacroError(f"bad argument title={title!r} for other_blocks(): give text")
    wanted = range(1, n_layers) if layers is None else layers
    picked = pick_indices(wanted, n_layers, "layers", "other_blocks", "layers", allow_empty=True)
    compact = len(picked) * len(names) > OTHER_TABLES
    out = []
    ctx.other_block = True  # their windows are small: the walkthrough is the first block's
    try:
        for layer in picked:
            summary = f"Block {layer}{': ' if title else ''}{title}"
            parts = [ctx.place(Wrapper(summary), f'<details class="other-block"><summary>Block {layer}'
                               f'{": " if title else ""}{html_text(title)}</summary>')]
            if compact:
                parts.append(_block_statistics(ctx, [p.replace("{l}", str(layer)) for p in names], layer))
                parts.append(ctx.place(Wrapper(), "</details>"))
                out.append("".join(parts))
                continue
            for pattern in names:
                name = pattern.replace("{l}", str(layer))
                rec = ctx.record(name)
                axis = next((a for a in rec.axes if a in HEAD_AXES), None)
                if axis is None:
                    parts.append(str(matrix(ctx, name)))
                    continue
                shape = np.shape(rec.value)
                if shape[-1] * shape[-2] > MAX_CELLS:  # a big model: every head at a glance, not 12 windows each
                    parts.append(heads_summary(ctx, name))
                    continue
                parts.extend(str(matrix(ctx, name, head=h)) for h in range(shape[list(rec.axes).index(axis)]))
            parts.append(ctx.place(Wrapper(), "</details>"))
            out.append("".join(parts))
    finally:
        ctx.other_block = False
    return Markup("".join(out))


OTHER_TABLES = 160  # other_blocks draws up to this many tables (GPT-2 small: 11 blocks of up to 12 records) ...
STAT_NAMES = ("mean", "std", "min", "max", "norm")


def _block_statistics(ctx: PageContext, names: list[str], layer: int) -> str:
    """... beyond that (SmolLM's 29 other blocks), each block is one table: a row of statistics per record, with its
    .npy file or CSV."""
    rows, files = [], []
    for name in names:
        rec = ctx.record(name)
        ctx.mark(name)
        stats = scale.stats_of(rec.value)
        link = ""
        if scale.has_npy(rec.value):
            files.append(npy_file(name))
            link = f' <a class="csv" href="{escape(files[-1].path)}" download>.npy</a>'
        elif has_csv(rec.value):
            link = f' <a class="csv" href="{escape(csv_path(name))}" download>CSV</a>'
        shape = " × ".join(map(str, np.shape(rec.value))) or "scalar"
        rows.append(f'<tr><th scope="row"><code>{html_text(name)}</code>{link}</th><td>{shape}</td>'
                    + "".join(f"<td>{scale.sig(stats[k], 4)}</td>" for k in STAT_NAMES) + "</tr>")
    head = "".join(f'<th scope="col">{k}</th>' for k in ("record", "shape", *STAT_NAMES))
    html = (f'<figure class="big block-stats"><figcaption>Block {layer}: each record in statistics (a model this '
            "deep would make the page too long to load with every table); the walkthrough above shows the same "
            "records of its block number by number, and the downloads have every value.</figcaption>"
            f'<div class="matrix-wrap"><table class="matrix stats-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div></figure>')
    return ctx.place(Table(tuple(names), tuple(files)), html)


@macro
def heads_summary(ctx: PageContext, name: str, batch: int = 0) -> Markup:
    """Every head of a (batch, heads, ...) record at a glance: one heatmap of all heads side by side and a table of
    each head's statistics (mean, standard deviation, min, max, norm); what other_blocks shows of a big model."""
    rec = ctx.record(name)
    if list(rec.axes[:1]) != ["batch"] or rec.axes[1] not in HEAD_AXES or len(rec.axes) != 4:
        raise MacroError(f"heads_summary needs a record with axes (batch, heads, ., .), such as 'L0.attn.weights'; "
                         f"'{name}' has ({', '.join(rec.axes)})")
    check_int("batch", batch, rec.value.shape[0], name)
    ctx.mark(name)
    values = np.asarray(rec.value)[batch]
    heads, rows, cols = values.shape
    stats = [scale.stats_of(values[h]) for h in range(heads)]
    names = ("mean", "std", "min", "max", "norm")
    body = "".join(f"<tr><th scope=\"row\">{h}</th>" + "".join(f"<td>{scale.sig(s[k], 4)}</td>" for k in names)
                   + "</tr>" for h, s in enumerate(stats))
    sym = _sym(ctx, rec)
    sym_html = f'<span class="sym">{sym}</span> ' if sym else ""
    tile_rows, tile_cols = tile_heads(np.zeros((heads, rows, cols), dtype=np.uint8)).shape
    width, height = scale.display_size(tile_rows, tile_cols)
    masked = sum(s["masked"] for s in stats)
    note = f"; the {masked} masked entries (−∞) are left out of the statistics" if masked else ""
    npy = [npy_file(name)] if scale.has_npy(rec.value) else []
    heat = heat_file(name, batch, heads=True)
    files = " ".join(f'<a class="csv" href="{escape(f.path)}" download>.npy</a>' for f in npy)
    html = (
        f'<figure class="big heads-summary"><figcaption>{sym_html}'
        f"<code>{html_text(name)}</code> batch {batch}: {heads} heads × {rows} × {cols} "
        f"({html_text(' × '.join(rec.axes[1:]))}) {files}</figcaption>"
        f'<p class="shown">Shown: each head\'s statistics and a heatmap of every value of every head (heads left '
        f"to right, then down){note}. The numbers themselves: the walkthrough above shows them for block "
        f"{ctx.block or 0}; {'the .npy file has all of them' if files else 'the trace has all of them'}.</p>"
        f'<div class="hm"><img src="{escape(heat.path)}" width="{width}" '
        f'height="{height}" alt="Heatmap of the {heads} heads of {escape(name)}" loading="lazy" decoding="async">'
        "</div>"
        f'<div class="matrix-wrap"><table class="matrix stats-table"><thead><tr><th class="axes" scope="col">head'
        "</th>" + "".join(f'<th scope="col">{k}</th>' for k in ("mean", "std", "min", "max", "norm"))
        + f"</tr></thead><tbody>{body}</tbody></table></div>{ctx.check_line(name)}</figure>")
    return ctx.place(Table((name,), (*npy, heat)), html)

@macro
def token(ctx: PageContext, position: int, batch: int = 0) -> Markup:
    """The input token at a position, escaped for prose."""
    inputs = ctx.trace.labels["inputs"]
    check_int("batch", batch, len(inputs), "inputs")
    check_int("position", position, len(inputs[batch]), "inputs")
    return html_words(inputs[batch][position])


# -- numbers in prose and math -----------------------------------------------------------------------------------
@macro(context=False)
@filter("num")
def num(x: Any, decimals: int = 4, digits: int | None = None, sign: bool = False) -> str:
    """A number for prose and `$...$`: `num(x)` 4 decimals, `num(x, 6)` 6 decimals, `num(x, digits=3)` 3
    significant digits; `sign=true` shows a + on positive numbers. Also a filter: `{{ x | num(2) }}`."""
    return fixed(x, decimals, sign) if digits is None else general(x, digits, sign)


@macro(name="sci", context=False)
def sci_number(x: Any) -> Markup:
    r"""`{{ sci(x) }}`: a number far from 1 as `$1.2 \times 10^{-17}$`, or `exactly $0$`."""
    return Markup(sci(x))


@macro(name="tex_number", context=False)
def tex_constant(x: Any) -> Markup:
    """`$\\eta = {{ tex_number(lr) }}$`: a config constant in LaTeX (`0.01`, `10^{-8}`)."""
    return Markup(tex_number(x))


LIST_ALL = 16  # listed(): up to this many elements, every one ...
LIST_EDGE = 3  # ... else this many at each end, plus the ones the page asks to keep


class Listing(list):
    """What `listed` returns: the indices to write out, None where a run is left out, and what the sentence
    that says so needs (`whole`, `count`, `edge`, `extra`: the kept indices that are not at an end)."""

    def __init__(self, shown: list[int | None], size: int, extra: list[int]) -> None:
        super().__init__(shown)
        self.count = sum(1 for i in shown if i is not None)
        self.whole = self.count == size
        self.edge = LIST_EDGE
        self.extra = extra


@macro(context=False)
def listed(n: Any, keep: Any = ()) -> Listing:
    """The elements 0..n-1 a page writes out one by one (a row, element by element): all of them up to 16, else
    the first and last 3 and those in `keep`, in order, with None where a run is left out:
    `{% set js = listed(C, keep=[c]) %}{% for j in js %}...`. A list is never cut silently: when `js.whole` is
    false the page says `js.count` of n are shown, the first and last `js.edge`, and `js.extra`."""
    check_int("n", n, sys.maxsize, "listed", low=0)
    keep = [keep] if isinstance(keep, (int, np.integer)) else list(keep)
    for k in keep:
        check_int("keep", k, n, "listed")
    if n <= LIST_ALL:
        return Listing(list(range(n)), n, [])
    ends = {*range(LIST_EDGE), *range(n - LIST_EDGE, n)}
    extra = sorted({int(k) for k in keep} - ends)
    shown: list[int | None] = []
    for i in sorted(ends | set(extra)):
        if shown and i > shown[-1] + 1:  # type: ignore[operator]
            shown.append(None)
        shown.append(i)
    return Listing(shown, n, extra)


@macro
def largest(ctx: PageContext, name: str) -> tuple[int, ...]:
    """The index of the element of largest magnitude: `{% set ix = largest("grad.wte") %}`."""
    values = np.abs(np.asarray(ctx.record(name).value))
    return tuple(int(i) for i in np.unravel_index(int(values.argmax()), values.shape))


@macro
def norm(ctx: PageContext, name: str) -> Any:
    """The L2 (Frobenius) norm of a record, the square root of the sum of its squares: `{{ num(norm("wte")) }}`."""
    values = np.asarray(ctx.record(name).value)
    return (values * values).sum() ** (1 / 2)


@macro
def record(ctx: PageContext, name: str) -> Any:
    """The trace record itself (`.shape`, `.axes`, `.op`, `.inputs`, `.formula`, `.meta`)."""
    return ctx.record(name)


def _ndim_message(rec: Any, ndim: int) -> str:
    if ndim == 0:
        return f"'{rec.name}' is a single number: use value('{rec.name}')"
    return f"'{rec.name}' still has {ndim} axes after fixing batch and head (axes: {', '.join(rec.axes)})"


def _count(shown: list[int | None]) -> int:
    return sum(1 for i in shown if i is not None)
