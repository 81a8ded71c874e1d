"""Compare two runs: the other run's numbers beside each matrix, a summary page, a standalone report.

`handstep build --compare OTHER.yaml` (or `--compare-seed N`) runs the engine twice. Each
matrix then gets a closed `<details class="compare">` with the other run's values at the
same positions, shaded by how far each moved; `compare.html` says how the loss, the
attention weights and the update changed and lists every record (from
`engine.diff.diff_traces`). `handstep diff A B --html OUT.html` writes the same summary as
one self-contained file.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from site_build.format import format_number, short, signed
from site_build.tables import Axis

COMPARE_PAGE = "compare.html"


def run_label(trace: Any, source: str) -> str:
    """`configs/default.yaml, seed 42`: how a run is named on the pages."""
    return f"{source}, seed {trace.config.get('seed')}"


# -- beside each matrix ---------------------------------------------------------
def compare_block(a: np.ndarray, b: np.ndarray | None, rows: Axis, cols: Axis, corner: str, label: str,
                  problem: str = "", full: bool = False) -> str:
    """`<details class="compare">` under a matrix: the largest change, and the other run's values.

    On content pages (`full=False`) the table of the other run's values is drawn by explain.js
    from the page's data file when the reader opens the details, so pages stay within their
    size budget; `full=True` (the summary page, the standalone report) writes the table here.
    """
    if b is None:
        return f'<details class="compare"><summary>{escape(label)}: {escape(problem)}</summary></details>'
    ri = [i for i in rows.shown if i is not None]
    ci = [j for j in cols.shown if j is not None]
    pa, pb = np.asarray(a, dtype=float)[np.ix_(ri, ci)], np.asarray(b, dtype=float)[np.ix_(ri, ci)]
    delta = _delta(pa, pb)
    top = float(delta.max()) if delta.size else 0.0
    if top == 0:
        return f'<details class="compare"><summary>{escape(label)}: the same numbers</summary></details>'
    where = np.unravel_index(int(np.argmax(delta)), delta.shape)
    at = f"{escape(rows.labels[ri[where[0]]])} × {escape(cols.labels[ci[where[1]]])}" if rows.name and cols.name else \
        escape(rows.labels[ri[where[0]]] if rows.name else cols.labels[ci[where[1]]])
    head = f"<summary>{escape(label)}: max |Δ| {short(top)} at {at}</summary>"
    if not full:
        return (f'<details class="compare" data-compare>{head}<p class="compare-note">Opening this draws the other '
                f'run\'s values here (needs JavaScript); <a href="{COMPARE_PAGE}">the comparison page</a> '
                "lists every record.</p></details>")
    out = [f'<details class="compare">{head}',
           '<div class="matrix-wrap"><table class="cmp">',
           f'<thead><tr><th class="axes">{corner}</th>']
    out += ['<th class="gap">⋯</th>' if j is None else f"<th>{escape(cols.labels[j])}</th>" for j in cols.shown]
    out.append("</tr></thead><tbody>")
    r = 0
    for i in rows.shown:
        if i is None:
            out.append('<tr class="gap"><th>⋮</th>' + "".join('<td class="gap"></td>' for _ in cols.shown) + "</tr>")
            continue
        out.append(f"<tr><th>{escape(rows.labels[i])}</th>")
        c = 0
        for j in cols.shown:
            if j is None:
                out.append('<td class="gap">⋯</td>')
                continue
            out.append(_cmp_cell(float(pa[r, c]), float(pb[r, c]), float(delta[r, c]) / top))
            c += 1
        out.append("</tr>")
        r += 1
    out.append("</tbody></table></div></details>")
    return "".join(out)


def _delta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| where it is defined, 0 where both are the same (also −∞ and −∞)."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        d = np.where(same, 0.0, np.abs(a - b))
    return np.where(np.isfinite(d), d, 0.0)


def _cmp_cell(a: float, b: float, share: float) -> str:
    text = format_number(b)
    if a == b or (math.isnan(a) and math.isnan(b)):
        return f"<td>{text}</td>"
    s = "1" if share >= 0.995 else f"{share:.2f}".lstrip("0")
    return f'<td class="d" style="--d:{s}" title="Δ {signed(b - a)}">{text}</td>'


# -- the summary page -----------------------------------------------------------
def summary_html(a: Any, b: Any, d: Any, label_a: str, label_b: str) -> str:
    """The comparison body: runs, loss, attention, update, record by record (HTML fragment)."""
    changed = [r for r in d.records if r.status == "changed"]
    other = [r for r in d.records if r.status != "changed"]
    reshaped = sum(r.status == "reshaped" for r in d.records)
    if d.identical:
        verdict = "identical: no record differs"
    else:
        parts = [f"{len(changed)} with other values"] if changed else []
        parts += [f"{reshaped} reshaped"] if reshaped else []
        parts += [f"{len(other) - reshaped} in one run only"] if len(other) > reshaped else []
        n = len(d.records)
        verdict = f"{n} record{'s' if n != 1 else ''} differ" + (f" ({', '.join(parts)})" if parts else "")
    out = [
        f'<p class="compare-summary" data-compared="{d.compared}" data-changed="{len(changed)}" '
        f'data-missing="{len(other)}">A = {escape(label_a)}; B = {escape(label_b)}: <strong>{verdict}</strong>. '
        f"{d.compared} records compared, {len(changed)} changed, {len(other)} missing or reshaped; "
        f"first difference: <code>{escape(d.first or 'none')}</code>.</p>"
    ]
    if d.config_changes:
        items = "".join(f"<li><code>{escape(c)}</code></li>" for c in d.config_changes)
        out.append(f"<p>Config changes:</p><ul>{items}</ul>")
    out += _loss_section(a, b)
    out += _attention_section(a, b)
    out += _update_section(a, b)
    out += _records_section(d)
    return "\n".join(out)


def _value(t: Any, name: str, pick: Any = ()) -> float | None:
    return float(np.asarray(t[name])[pick]) if name in t else None


def _row(label: str, va: float | None, vb: float | None) -> str:
    fa = format_number(va) if va is not None else "–"
    fb = format_number(vb) if vb is not None else "–"
    diff = signed(vb - va) if va is not None and vb is not None else "–"
    return f"<tr><td>{escape(label)}</td><td>{fa}</td><td>{fb}</td><td>{diff}</td></tr>"


def _loss_section(a: Any, b: Any) -> list[str]:
    rows = [_row("loss before the step (loss)", _value(a, "loss"), _value(b, "loss")),
            _row("loss after the step (after.loss)", _value(a, "after.loss"), _value(b, "after.loss"))]
    if "train.loss" in a and "train.loss" in b:
        rows.append(_row("end of the training run (train.loss, last)", _value(a, "train.loss", -1),
                         _value(b, "train.loss", -1)))
    return ['<h2 id="loss">Loss</h2>', '<table class="compare-table"><thead><tr><th>quantity</th><th>A</th><th>B</th>'
            "<th>B − A</th></tr></thead><tbody>", *rows, "</tbody></table>"]


def _attention_section(a: Any, b: Any) -> list[str]:
    out = ['<h2 id="attention">Attention weights</h2>']
    names = [r.name for r in a.records if r.op == "softmax" and r.name.endswith(".attn.weights")]
    words = [str(w) for w in a.labels["inputs"][0]]
    for name in names:
        if name not in b or b[name].shape != a[name].shape:
            out.append(f"<p><code>{escape(name)}</code>: not comparable (missing or reshaped in B).</p>")
            continue
        wa, wb = np.asarray(a[name])[0], np.asarray(b[name])[0]  # first text: (heads, tokens, keys)
        for h in range(wa.shape[0]):
            delta = _delta(wa[h], wb[h])
            top = float(delta.max())
            title = f"<h3>{escape(name)}, head {h}</h3>"
            if top == 0:
                out += [title, "<p>The same weights in both runs.</p>"]
                continue
            t, s = np.unravel_index(int(np.argmax(delta)), delta.shape)
            labels = words[: wa.shape[1]] + [str(i) for i in range(len(words), wa.shape[1])]
            axis = Axis("tokens", list(range(wa.shape[1])), labels, wa.shape[1])
            keys = Axis("keys", list(range(wa.shape[2])), labels, wa.shape[2])
            out += [title, f"<p>Largest change: query {escape(labels[t])} → key {escape(labels[s])}, "
                           f"{format_number(float(wa[h, t, s]))} in A, {format_number(float(wb[h, t, s]))} in B "
                           f"(mean |Δ| over visible entries {short(_visible_mean(delta))}). "
                           "B's weights, shaded by the change:</p>",
                    compare_block(wa[h], wb[h], axis, keys, "tokens ╲ keys", "B's weights", full=True).replace(
                        '<details class="compare">', '<details class="compare" open>', 1)]
    if not names:
        out.append("<p>No attention weights in A.</p>")
    return out


def _visible_mean(delta: np.ndarray) -> float:
    """The mean of the entries on and below the diagonal: the ones the causal mask leaves visible."""
    return float(delta[np.tril_indices(delta.shape[0], 0, delta.shape[1])].mean())


def _parameters(t: Any) -> dict[str, str]:
    """{a parameter's record: its updated record}, in the trace's order."""
    return {n["initial"]: n["updated"] for n in t.index.values()
            if isinstance(n, dict) and "updated" in n and n["initial"] in t and n["updated"] in t}


def _step(t: Any, p: str, u: str | None) -> np.ndarray | None:
    return np.asarray(t[u]) - np.asarray(t[p]) if u is not None else None


def _update_section(a: Any, b: Any) -> list[str]:
    """Matched by record name (`wte`, `L0.ln_1.weight`): the same tensor in both runs, whichever library's name its
    architecture gives it (GPT-2's `transformer.wte.weight` is Llama's `model.embed_tokens.weight`); then the
    parameters only run B has."""
    rows = []
    in_a, in_b = _parameters(a), _parameters(b)
    for p in [*in_a, *(p for p in in_b if p not in in_a)]:
        da, db = _step(a, p, in_a.get(p)), _step(b, p, in_b.get(p))
        cells = [short(float(np.linalg.norm(d))) if d is not None else "–" for d in (da, db)]
        cells += [short(float(np.abs(d).max())) if d is not None and d.size else "–" for d in (da, db)]
        if da is None or db is None:
            last = "not in A" if da is None else "not in B"
        elif db.shape != da.shape:
            last = f"shapes {_shape(da.shape)} and {_shape(db.shape)}"
        else:
            last = short(float(np.abs(db - da).max())) if da.size else "–"
        rows.append(f"<tr><td><code>{escape(p)}</code></td>" + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{escape(last)}</td></tr>")
    if not rows:
        return ['<h2 id="update">The update</h2>', "<p>Run A has no parameter updates to compare.</p>"]
    return ['<h2 id="update">The update</h2>',
            "<p>Per parameter: the size of the step θ<sub>new</sub> − θ (its norm and largest entry) in each run, "
            "and the largest difference between the two steps where the tensors have the same shape.</p>",
            '<table class="compare-table"><thead><tr><th>parameter</th><th>‖Δθ‖ A</th><th>‖Δθ‖ B</th>'
            "<th>max |Δθ| A</th><th>max |Δθ| B</th><th>max |Δθ<sub>B</sub> − Δθ<sub>A</sub>|</th></tr></thead><tbody>",
            *rows, "</tbody></table>"]


def _shape(shape: tuple[int, ...]) -> str:
    return " × ".join(map(str, shape)) or "scalar"


def _records_section(d: Any) -> list[str]:
    out = ['<h2 id="records">Record by record</h2>']
    if not d.records:
        return [*out, "<p>No differences: every record holds the same numbers in both runs.</p>"]
    top = max([r.max_rel for r in d.records if r.status == "changed"] + [0.0])
    out.append('<table class="compare-table records"><thead><tr><th>record</th><th>max |A − B|</th><th>relative</th>'
               "<th>at</th><th>A there</th><th>B there</th></tr></thead><tbody>")
    for r in d.records:
        if r.status == "changed":
            width = f"{100 * r.max_rel / top:.0f}" if top > 0 else "0"
            out.append(f'<tr data-status="changed"><td><code>{escape(r.name)}</code></td><td>{short(r.max_abs)}</td>'
                       f'<td><span class="bar" style="--w:{width}"></span>{short(r.max_rel)}</td>'
                       f"<td>{list(r.where)}</td><td>{format_number(r.a)}</td><td>{format_number(r.b)}</td></tr>")
        else:
            what = (f"shape {list(r.shape_a)} in A, {list(r.shape_b)} in B" if r.status == "reshaped"
                    else f"only in {'A' if r.status == 'only_a' else 'B'}")
            out.append(f'<tr data-status="{r.status}"><td><code>{escape(r.name)}</code></td>'
                       f'<td colspan="5">{what}</td></tr>')
    out.append("</tbody></table>")
    return out


# -- the standalone report of `handstep diff --html` ---------------------------------
STYLE = Path(__file__).resolve().parents[2] / "templates" / "assets" / "style.css"  # its palette: every colour
STANDALONE_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:62rem;padding:0 1rem;
  color:var(--fg);background:var(--bg)}
table{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums;font-size:.85rem}
th,td{border:1px solid var(--line);padding:.2rem .5rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
.matrix-wrap{overflow-x:auto}
td.d{background:color-mix(in srgb,var(--changed) calc(var(--d)*55%),transparent)}
.bar{display:inline-block;height:.6em;width:calc(var(--w)*.04rem);margin-right:.3rem;
  background:color-mix(in srgb,var(--changed) 70%,transparent)}
details.compare>summary{cursor:pointer;color:var(--muted)}
code{font-size:.9em}
"""


def palette_css(style: Path = STYLE) -> str:
    """The palette block of the site's style.css, the one definition of every colour ('' if it is missing)."""
    try:
        text = style.read_text(encoding="utf-8")
    except OSError:
        return ""
    start, end = text.find("/* palette"), text.find("/* end of palette */")
    return text[start:end] if 0 <= start < end else ""



def standalone_html(a: Any, b: Any, d: Any, label_a: str, label_b: str) -> str:
    """A self-contained HTML page (inline CSS, no scripts) with the comparison summary."""
    body = summary_html(a, b, d, label_a, label_b)
    return (f"{DIFF_HTML_HEAD}\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>handstep diff: {escape(label_a)} vs {escape(label_b)}</title>\n"
            f"<style>{palette_css()}{STANDALONE_CSS}</style>\n</head>\n"
            f"<body>\n<h1>Comparing two runs</h1>\n{body}\n</body>\n</html>\n")


DIFF_HTML_HEAD = "<!doctype html>\n<!-- handstep diff -->"  # how `handstep diff --html` knows a page it wrote


def write_diff_html(a: Any, b: Any, d: Any, path: str | Path, label_a: str, label_b: str) -> None:
    """Write the standalone comparison (what `handstep diff A B --html OUT.html` does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(standalone_html(a, b, d, label_a, label_b), encoding="utf-8", newline="\n")
