"""Jinja2 macros that put trace numbers on a page: matrix, vector, value, formula, shape, calc.

Every macro validates its record name, index and arguments and raises MacroError with
a message a writer can act on; the page renderer adds file and line. Every record a
macro shows is remembered so the build can report coverage (`records shown: N/M`).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

import numpy as np
from markupsafe import Markup

from site_build import tables
from site_build.chart_macros import ChartMacros
from site_build.compare import compare_block
from site_build.downloads import csv_path, has_csv
from site_build.escape import html_code, html_text, html_word_list, html_words, html_words_in, latex_escape, latex_text
from site_build.mathslots import MathSlots
from site_build.tables import Axis

LABELLED_AXES = {"tokens", "keys", "vocab"}
DEFAULT_LIMIT = 64  # show every row/column up to this many, else elide
DEFAULT_EDGE = 4  # rows/columns kept at each end when eliding
MAX_CELLS = 1024  # past this many cells a matrix shows only its corners (the default's largest is 16 × 64)


class MacroError(Exception):
    """A bad macro call; `line` is the line of the call in the page, when known."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def template_line() -> int:
    """Line (in the page body) of the Jinja expression currently calling a macro."""
    frame = sys._getframe(1)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return int(template.get_corresponding_lineno(frame.f_lineno))
        frame = frame.f_back
    return 0


class Macros:
    """The macro functions for one build, bound to one trace and one math registry."""

    def __init__(self, trace: Any, math: MathSlots, explain: Callable[..., Any], checks: Any = None) -> None:
        self.trace = trace
        self.checks = checks
        self.charts = ChartMacros(self)
        self.math = math
        self.explain = explain
        self.names: list[str] = list(trace.names())
        self.shown: dict[str, set[str]] = {}  # record -> pages that show its numbers
        self.source = ""  # page being rendered (for math error locations)
        self.line_offset = 0  # body line 1 is this file line + 1
        self.other: Any = None  # the other run's trace when comparing (`build --compare`)
        self.other_label = ""

    # -- plumbing ----------------------------------------------------------
    def globals(self) -> dict[str, Any]:
        """What a page sees: the macros, helpers, `trace` and `config`."""
        return {
            "matrix": self.matrix,
            "vector": self.vector,
            "value": self.value,
            "formula": self.formula,
            "shape": self.shape,
            "calc": self.calc,
            "jacobian": self.jacobian,
            "pytorch_snippet": self.pytorch_snippet,
            "default_config": self.default_config,
            "check": self.check,
            "verification": self.verification,
            "record": self.record,
            "token": self.token,
            "latex_escape": latex_escape,
            "latex_text": lambda text: Markup(latex_text(text)),
            "text": html_words,
            "code": html_code,
            "word_list": html_word_list,
            "other_blocks": self.other_blocks,
            "count": count_words,
            "span": span_words,
            "trace": self.trace,
            "config": self.trace.config,
            **self.charts.globals(),
        }

    def filters(self) -> dict[str, Callable[..., Any]]:
        """`{{ x | tex }}` for LaTeX, `{{ x | text }}` for prose, `{{ x | code }}` for a code span."""
        return {"tex": latex_escape, "text": html_words, "code": html_code}

    def begin_page(self, source: str, body_line: int) -> None:
        """Point math error locations at this page."""
        self.source = source
        self.line_offset = body_line - 1

    def _slot(self, tex: str, display: bool) -> str:
        return self.math.slot(tex, display, self.source, self.line_offset + template_line())

    def _mark(self, name: str) -> None:
        self.shown.setdefault(name, set()).add(self.source)

    def record(self, name: str) -> Any:
        """The trace record `name`, or an error suggesting the closest name."""
        if not isinstance(name, str):
            raise MacroError(f"record name must be text, not {name!r}")
        if name not in self.trace:
            close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise MacroError(f"unknown trace record '{name}'{hint}")
        return self.trace.record(name)

    # -- selection ---------------------------------------------------------
    def _select(self, rec: Any, batch: int, head: int | None) -> tuple[np.ndarray, list[str], list[int]]:
        """Fix the batch and head axes; return (values, remaining axes, fixed index)."""
        values, axes, at = np.asarray(rec.value), list(rec.axes), []
        if axes[:1] == ["batch"]:
            _check_int("batch", batch, values.shape[0], rec.name)
            values, at = values[batch], [batch]
            axes.pop(0)
        elif batch != 0:
            raise MacroError(f"'{rec.name}' has no batch axis; drop batch={batch!r}")
        if axes[:1] == ["heads"]:
            if head is None:
                raise MacroError(
                    f"'{rec.name}' has {values.shape[0]} heads: pass head=0..{values.shape[0] - 1}"
                )
            _check_int("head", head, values.shape[0], rec.name)
            values, at = values[head], [*at, head]
            axes.pop(0)
        elif head is not None:
            raise MacroError(f"'{rec.name}' has no heads axis; drop head={head!r}")
        return values, axes, at

    def _axis(self, name: str, size: int, pick: Any, limit: int, edge: int, batch: int, what: str, rec: str) -> Axis:
        indices = _indices(pick, size, what, rec, name)
        return Axis(name, tables.elide(indices, limit, edge), self._labels(name, size, batch), size)

    def _labels(self, axis: str, size: int, batch: int) -> list[str]:
        labels = self.trace.labels
        if axis in ("tokens", "keys"):
            words = labels["inputs"][min(batch, len(labels["inputs"]) - 1)]
            return [str(w) for w in words[:size]] + [str(i) for i in range(len(words), size)]
        if axis == "vocab":
            return [str(w) for w in labels["vocab"][:size]]
        return [str(i) for i in range(size)]

    def _caption(self, rec: Any, at: list[int], axes: list[str], shown: tuple[int, int], full: tuple[int, int]) -> str:
        parts = [f'<span class="sym">{self._slot(rec.symbol, False)}</span>' if rec.symbol else ""]
        parts.append(f"<code>{html_text(rec.name)}</code>")
        kinds = [k for k, axis in (("batch", "batch"), ("head", "heads")) if axis in rec.axes]
        fixed = [f"{kind} {i}" for kind, i in zip([*kinds, "row"], at)]
        parts.extend(f'<span class="at">{f}</span>' for f in fixed)
        dims = " × ".join(str(n) for n in full)
        names = " × ".join(axes)
        parts.append(f'<span class="shape">{dims} ({html_text(names)})</span>')
        if shown != full:
            parts.append(f'<span class="shown">showing {" × ".join(str(n) for n in shown)}</span>')
        if has_csv(rec.value):
            parts.append(f'<a class="csv" href="{escape(csv_path(rec.name))}" download '
                         f'title="Download all {rec.value.size} values at full precision">CSV</a>')
        else:
            parts.append('<a class="csv" href="trace.json" download '
                         f'title="{rec.value.size} values: too many for a CSV; they are in the trace file">trace</a>')
        return " ".join(p for p in parts if p)

    def _compare(self, rec: Any, batch: int, head: int | None, row: int | None, rows: Axis, cols: Axis,
                 corner: str, values: np.ndarray, layout: str) -> str:
        """The other run's values for the same view (only when comparing runs)."""
        if self.other is None:
            return ""
        label = f"Other run ({self.other_label})"
        if rec.name not in self.other:
            return compare_block(values, None, rows, cols, corner, label, "not in this run")
        other = self.other.record(rec.name)
        if other.value.shape != rec.value.shape:
            return compare_block(values, None, rows, cols, corner, label,
                                 f"shape {describe_shape(other.value.shape, other.axes)} there")
        b, _, _ = self._select(other, batch, head)
        if row is not None:
            b = b[row]
        b = b[:, None] if layout == "col" else (b[None, :] if layout == "row" else b)
        return compare_block(values, b, rows, cols, corner, label)

    # -- macros ------------------------------------------------------------
    def matrix(
        self,
        name: str,
        head: int | None = None,
        batch: int = 0,
        rows: Any = None,
        cols: Any = None,
        limit: int = DEFAULT_LIMIT,
        edge: int = DEFAULT_EDGE,
    ) -> Markup:
        """A record as an HTML table (batch and head fixed); 1-D records become vectors."""
        rec = self.record(name)
        values, axes, at = self._select(rec, batch, head)
        _check_int("limit", limit, 10**9, name, low=1)
        _check_int("edge", edge, limit + 1, name, low=1)
        if values.ndim == 1:
            return self._vector(rec, values, axes, at, cols if rows is None else rows, batch, limit, edge, head)
        if values.ndim != 2:
            raise MacroError(_ndim_message(rec, values.ndim))
        row = self._axis(axes[0], values.shape[0], rows, limit, edge, batch, "rows", name)
        col = self._axis(axes[1], values.shape[1], cols, limit, edge, batch, "cols", name)
        if _count(row.shown) * _count(col.shown) > MAX_CELLS:  # a big config: corners only, pages stay small
            row = self._axis(axes[0], values.shape[0], rows, min(limit, 2 * edge), edge, batch, "rows", name)
            col = self._axis(axes[1], values.shape[1], cols, min(limit, 2 * edge), edge, batch, "cols", name)
        shown = (_count(row.shown), _count(col.shown))
        caption = self._caption(rec, at, axes, shown, values.shape)
        self._mark(name)
        corner = f"{html_text(axes[0])} ╲ {html_text(axes[1])}"
        extra = self._compare(rec, batch, head, None, row, col, corner, values, "")
        return Markup(tables.table(values, row, col, caption, name, tuple(at), corner) + extra + self._check_line(name))

    def vector(
        self,
        name: str,
        head: int | None = None,
        batch: int = 0,
        row: int | None = None,
        cols: Any = None,
        limit: int = DEFAULT_LIMIT,
        edge: int = DEFAULT_EDGE,
    ) -> Markup:
        """A 1-D record (or one `row` of a 2-D one) as a one-line table."""
        rec = self.record(name)
        values, axes, at = self._select(rec, batch, head)
        if row is not None and values.ndim == 2:
            _check_int("row", row, values.shape[0], name)
            values, at = values[row], [*at, row]
            axes = axes[1:]
        elif row is not None:
            raise MacroError(f"row= needs a 2-D record; '{name}' has axes ({', '.join(rec.axes)})")
        if values.ndim != 1:
            raise MacroError(_ndim_message(rec, values.ndim) + " (vector shows one axis; pass row=)")
        return self._vector(rec, values, axes, at, cols, batch, limit, edge, head, row)

    def _vector(self, rec: Any, values: np.ndarray, axes: list[str], at: list[int], pick: Any, batch: int, limit: int,
                edge: int, head: int | None = None, row: int | None = None) -> Markup:
        """A 1-D vector: vertical when its axis has word labels (tokens, vocab), else one row."""
        _check_int("limit", limit, 10**9, rec.name, low=1)
        _check_int("edge", edge, limit + 1, rec.name, low=1)
        axis = self._axis(axes[0], values.shape[0], pick, limit, edge, batch, "cols", rec.name)
        unit = Axis("", [0], [""], 1)
        caption = self._caption(rec, at, axes, (_count(axis.shown),), values.shape)
        self._mark(rec.name)
        corner = html_text(axes[0])
        if axes[0] in LABELLED_AXES:
            html = tables.table(values[:, None], axis, unit, caption, rec.name, tuple(at), corner)
            html += self._compare(rec, batch, head, row, axis, unit, corner, values[:, None], "col")
        else:
            html = tables.table(values[None, :], unit, axis, caption, rec.name, tuple(at), corner)
            html += self._compare(rec, batch, head, row, unit, axis, corner, values[None, :], "row")
        return Markup(html + self._check_line(rec.name))

    def value(self, name: str, index: Any = None, digits: int = 4) -> Markup:
        """One element inline, e.g. `value("loss")` or `value("L0.attn.weights", (0, 1, 2, 0))`."""
        rec = self.record(name)
        idx = self._index(rec, index)
        _check_int("digits", digits, 17, name)
        self._mark(name)
        return Markup(tables.inline_value(np.asarray(rec.value)[idx], digits, name, idx))

    def _index(self, rec: Any, index: Any) -> tuple[int, ...]:
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

    def _row_index(self, rec: Any, index: Any) -> tuple[int, ...]:
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

    def formula(self, name: str, inline: bool = False) -> Markup:
        """The LaTeX formula that defines a record, typeset (display by default)."""
        rec = self.record(name)
        if not rec.formula:
            raise MacroError(f"'{name}' has no formula in the trace")
        slot = self._slot(rec.formula, not inline)
        tag = "span" if inline else "div"
        return Markup(f'<{tag} class="formula" data-record="{escape(name)}">{slot}</{tag}>')

    def shape(self, name: str) -> Markup:
        """The record's shape with axis names, e.g. `6 × 16 (tokens × d_model)`."""
        rec = self.record(name)
        return html_text(describe_shape(np.shape(rec.value), rec.axes))

    def calc(self, name: str, index: Any = None) -> Markup:
        """The arithmetic that produced one element, with the real numbers, typeset."""
        rec = self.record(name)
        idx = self._index(rec, index)
        expl = self.explain(self.trace, name, idx)
        self._mark(name)
        at = ",".join(str(i) for i in idx)
        lines = "".join(f'<div class="calc-line">{self._slot(tex, True)}</div>' for tex in expl.latex)
        words = [str(w) for w in self.trace.labels["vocab"]]
        summary = f'<p class="calc-text">{html_words_in(expl.text, words)}</p>' if getattr(expl, "text", "") else ""
        return Markup(
            f'<div class="calc-step" data-record="{escape(name)}" data-at="{at}">{summary}{lines}</div>'
        )

    def _check_line(self, name: str) -> str:
        line = self.checks.line(name) if self.checks is not None else ""
        return f'<p class="check">{html_text(line)}</p>' if line else ""

    def check(self, name: str) -> Markup:
        """The check figures of one record as a line of text (finite differences, PyTorch)."""
        self.record(name)
        return Markup(self._check_line(name))

    def verification(self) -> Markup:
        """One sentence: was this build's trace compared with PyTorch, and how closely."""
        text = self.checks.summary() if self.checks is not None else "not checked against PyTorch in this build"
        return html_text(text)

    def jacobian(self, name: str, index: Any = None) -> Markup:
        """The full Jacobian of one softmax or LayerNorm row w.r.t. its input row, as a matrix table."""
        from engine.explain import jacobian as engine_jacobian

        rec = self.record(name)
        if rec.op not in ("softmax", "normalize"):
            raise MacroError(f"no Jacobian for {name} (op {rec.op}): give a softmax or LayerNorm xhat record "
                             "(e.g. L0.attn.weights, probs, ln_f.xhat)")
        row = self._row_index(rec, index)
        try:
            J, how = engine_jacobian(self.trace, name, row)
        except (KeyError, IndexError, ValueError) as err:  # the checks above should leave nothing for these
            raise MacroError(f"jacobian('{name}', {row}): {str(err).strip(chr(39))}") from None
        axis = rec.axes[-1]
        size = J.shape[0]
        labels = self._labels(axis, size, row[0] if rec.axes[0] == "batch" else 0)
        limit = DEFAULT_LIMIT if size * size <= MAX_CELLS else 2 * DEFAULT_EDGE
        shown = tables.elide(list(range(size)), limit, DEFAULT_EDGE)
        rows = Axis(axis, shown, labels, size)
        cols = Axis(axis, shown, labels, size)
        sym = rec.symbol
        sym_html = self._slot(rf"\partial {sym} / \partial\,\mathrm{{in}}", False)
        caption = (f'<span class="sym">{sym_html}</span> '
                   f"Jacobian of one row of <code>{html_text(name)}</code> at {html_text(str(list(row)))}: "
                   f'<span class="shape">{size} × {size} ({html_text(axis)} × {html_text(axis)}), '
                   f"{html_text(how)}</span>")
        return Markup(tables.table(J, rows, cols, caption, "", (), "out ╲ in"))

    def other_blocks(self, names: Any, title: str = "", layers: Any = None) -> Markup:
        """The same records for the other transformer blocks, one closed `<details>` per block.

        `names` are record names with `{l}` where the block number goes, e.g. `["L{l}.ln_1.mean",
        "grad.L{l}.ln_1.xhat"]`; `layers` the blocks to show (default: 1 to n_layers - 1, the ones the
        walkthrough of block 0 does not show). A record with a heads axis gets one table per head.
        Nothing at all for a one-block model, so a page can call it unconditionally.
        """
        n_layers = int(self.trace.config["model"]["n_layers"])
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise MacroError(f"bad argument names={names!r} for other_blocks(): give a list of record names with {{l}}")
        for n in names:
            if not isinstance(n, str) or "{l}" not in n:
                raise MacroError(f"bad record name {n!r} for other_blocks(): write {{l}} where the block number goes, "
                                 "e.g. 'L{l}.ln_1.mean'")
        if not isinstance(title, str):
            raise MacroError(f"bad argument title={title!r} for other_blocks(): give text")
        wanted = range(1, n_layers) if layers is None else layers
        picked = _indices(wanted, n_layers, "layers", "other_blocks", "layers", allow_empty=True)
        out = []
        for layer in picked:
            parts = [f'<details class="other-block"><summary>Block {layer}{": " if title else ""}{html_text(title)}'
                     "</summary>"]
            for pattern in names:
                name = pattern.replace("{l}", str(layer))
                rec = self.record(name)
                heads = range(np.shape(rec.value)[list(rec.axes).index("heads")]) if "heads" in rec.axes else [None]
                parts.extend(str(self.matrix(name, head=h)) for h in heads)
            parts.append("</details>")
            out.append("".join(parts))
        return Markup("".join(out))

    def default_config(self) -> Markup:
        """The built-in defaults (equal to configs/default.yaml) as a YAML block, generated, never typed."""
        import yaml

        from engine.config import Config

        text = yaml.safe_dump(Config().to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True,
                              width=120)
        return Markup(f'<pre class="code"><code class="language-yaml">{escape(text)}</code></pre>')

    def pytorch_snippet(self, trace_file: str = "trace.json") -> Markup:
        """About 20 lines of PyTorch that reproduce this step from the site's trace.json."""
        from engine.snippet import pytorch_snippet

        if not isinstance(trace_file, str) or not trace_file.strip():
            raise MacroError(f"bad argument trace_file={trace_file!r} for pytorch_snippet(): give a file name such as "
                             "'trace.json'")
        code = pytorch_snippet(self.trace.config, trace_file)
        return Markup(f'<pre class="code"><code class="language-python">{escape(code)}</code></pre>')

    def token(self, position: int, batch: int = 0) -> Markup:
        """The input token at a position, escaped for prose."""
        inputs = self.trace.labels["inputs"]
        _check_int("batch", batch, len(inputs), "inputs")
        _check_int("position", position, len(inputs[batch]), "inputs")
        return html_words(inputs[batch][position])

    def coverage(self) -> tuple[int, int]:
        """(records whose numbers some page shows, records in the trace)."""
        return len(self.shown.keys() & set(self.names)), len(self.names)

    def missing(self) -> list[str]:
        """Records no page shows, in trace order."""
        return [n for n in self.names if n not in self.shown]


def count_words(n: Any, noun: str, plural: str | None = None) -> str:
    """`1 position`, `3 positions`: a number with its noun, singular for exactly one (`count(T, "position")`)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def span_words(first: Any, last: Any, sep: str = " to ") -> str:
    """`3 to 7`, or just `3` when the range holds one number (`columns {{ span(a, b) }}`)."""
    return str(first) if first == last else f"{first}{sep}{last}"


def describe_shape(shape: Iterable[int], axes: Iterable[str]) -> str:
    """`6 × 16 (tokens × d_model)`; `scalar` for a 0-D record."""
    shape, axes = list(shape), list(axes)
    if not shape:
        return "scalar"
    return f"{' × '.join(map(str, shape))} ({' × '.join(axes)})"


def _ndim_message(rec: Any, ndim: int) -> str:
    if ndim == 0:
        return f"'{rec.name}' is a single number: use value('{rec.name}')"
    return f"'{rec.name}' still has {ndim} axes after fixing batch and head (axes: {', '.join(rec.axes)})"


def _check_int(what: str, value: Any, size: int, name: str, low: int = 0) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise MacroError(f"bad argument {what}={value!r} for '{name}': must be a whole number")
    if not low <= value < size:
        raise MacroError(f"bad argument {what}={value} for '{name}': must be in {low}..{size - 1}")


def _indices(pick: Any, size: int, what: str, rec: str, axis: str, allow_empty: bool = False) -> list[int]:
    """Normalise a rows/cols selection (None, int, list, range) to a list of indices."""
    if pick is None:
        return list(range(size))
    items = [pick] if isinstance(pick, (int, np.integer)) else pick
    if isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple, range)):
        raise MacroError(f"bad argument {what}={pick!r} for '{rec}': give a number, a list or a range")
    out = []
    for i in items:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise MacroError(f"bad argument {what}={pick!r} for '{rec}': indices must be whole numbers")
        if not 0 <= i < size:
            raise MacroError(f"bad index {i} in {what}= for '{rec}': {axis} has 0..{size - 1}")
        out.append(int(i))
    if not out and not allow_empty:
        raise MacroError(f"bad argument {what}={pick!r} for '{rec}': selects nothing")
    return out


def _count(shown: list[int | None]) -> int:
    return sum(1 for i in shown if i is not None)
