"""Charts drawn at build time from a trace, as SVG strings (no plotting library).

Every function here is pure: the same trace gives a byte-identical string. Colours come only
from CSS variables, set through class names in `templates/assets/charts.css`, so the charts
follow the light/dark theme. Every text taken from the config (vocab words, training text) is
HTML-escaped, and wrapped in the Unicode isolates FSI/PDI when it holds right-to-left text or a bidi
control (SVG text has no <bdi>). Each chart has `role="img"` (a diagram with links has `role="group"`, so its
links stay reachable for screen readers), a `<title>` and a `<desc>` that states its key
numbers. The viewBox is 360 units wide: one unit is about one CSS pixel on a 390 px phone.

Class names used inside the SVGs (styled in charts.css):
  tt chart title, tx muted small text, sm small value label, ax axis line, gr grid line,
  bx diagram box, fr frame or tie line, ed edge line, ah arrow head, cu current step,
  cells the heatmap grid (one rect per query and key, row by row), po/ne positive/negative
  cell, bg empty cell, ms masked cell, ht hatch lines, va value in a cell (xs smaller,
  hi on a strong fill), b1/b2 first/second bar series, ln curve, pt marked point.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

from site_build.escape import isolate_plain

W = 360  # viewBox width of every chart
CHAR = 0.6  # average glyph width as a fraction of the font size, for layout estimates
IGNORED = "<ignored>"

__all__ = [
    "STEP_KEYS",
    "all_updates",
    "architecture",
    "bars",
    "before_after",
    "grad_norms",
    "heatmap",
    "histogram",
    "line",
    "loss_curves",
    "update_sizes",
]

# The step pages the diagrams can link to, in reading order.
STEP_KEYS = (
    "embeddings",
    "layernorm",
    "qkv",
    "attention",
    "multihead",
    "feedforward",
    "output",
    "loss",
    "loss-gradient",
    "output-backward",
    "feedforward-backward",
    "attention-backward",
    "embedding-gradients",
    "adamw",
)


# --------------------------------------------------------------------------- formatting


def _e(text: object) -> str:
    """Escape any text for SVG/HTML content and attribute values."""
    return escape(str(text), quote=True)


def _c(x: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros, never '-0'."""
    s = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _fix(v: float, decimals: int) -> str:
    """A value with a fixed number of decimals, never '-0.00'."""
    s = f"{v:.{decimals}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", "\u2212")


def _sig(v: float, digits: int = 3) -> str:
    """A value to a fixed number of significant digits (plain decimals where short)."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    exp = math.floor(math.log10(abs(v)))
    if -5 <= exp < 6:
        return _fix(v, max(0, digits - 1 - exp))
    return f"{v:.{digits - 1}e}".replace("-", "\u2212")


def _opacity(strength: float) -> str:
    """A fill opacity in [0, 1] with two decimals, written short ('.47', '1')."""
    s = f"{strength:.2f}".rstrip("0").rstrip(".")
    return s.removeprefix("0") or "0"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _width(text: str, size: float) -> float:
    return len(text) * size * CHAR


def _shape(*dims: int) -> str:
    return "\u00d7".join(str(d) for d in dims)


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "", extra: str = "") -> str:
    """A text element; `text` must already be escaped."""
    attrs = f' class="{cls}"' if cls else ""
    if anchor:
        attrs += f' text-anchor="{anchor}"'
    return f'<text x="{_c(x)}" y="{_c(y)}"{attrs}{extra}>{text}</text>'


def _rect(x: float, y: float, w: float, h: float, cls: str, extra: str = "") -> str:
    return f'<rect x="{_c(x)}" y="{_c(y)}" width="{_c(w)}" height="{_c(h)}" class="{cls}"{extra}/>'


def _svg(kind: str, height: float, title: str, desc: str, body: str, role: str = "img") -> str:
    """Wrap a chart body: viewBox, role, and an escaped title and description referenced by id."""
    digest = hashlib.sha1(f"{title}\n{desc}\n{body}".encode()).hexdigest()[:8]
    uid = f"chart-{kind}-{digest}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" viewBox="0 0 {W} {_c(height)}" '
        f'width="100%" role="{role}" aria-labelledby="{uid}-t {uid}-d">'
        f'<title id="{uid}-t">{_e(title)}</title><desc id="{uid}-d">{_e(desc)}</desc>{body}</svg>'
    )


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10 * mag


def _decimals(step: float) -> int:
    d = max(0, -math.floor(math.log10(step) + 1e-9))
    return d + 1 if abs(step / 10**-d - round(step / 10**-d)) > 1e-6 else d


def _ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float], int]:
    """A nice axis covering [lo, hi]: (new lo, new hi, tick values, decimals for their labels)."""
    if not (hi > lo):
        lo, hi = (lo - 0.5, hi + 0.5) if lo != 0 else (0.0, 1.0)
    step = _nice_step(hi - lo, count)
    start = math.floor(lo / step + 1e-9)
    stop = math.ceil(hi / step - 1e-9)
    ticks = [round(i * step, 12) for i in range(start, stop + 1)]
    return ticks[0], ticks[-1], ticks, _decimals(step)


def _arrow(x1: float, y1: float, x2: float, y2: float, size: float = 5) -> tuple[str, str]:
    """Path data for a line and its arrow head at (x2, y2)."""
    dx, dy = x2 - x1, y2 - y1
    n = math.hypot(dx, dy) or 1.0
    ux, uy = dx / n, dy / n
    bx, by = x2 - ux * size, y2 - uy * size
    px, py = -uy * size * 0.6, ux * size * 0.6
    line = f"M{_c(x1)} {_c(y1)}L{_c(bx)} {_c(by)}"
    head = f"M{_c(x2)} {_c(y2)}L{_c(bx + px)} {_c(by + py)}L{_c(bx - px)} {_c(by - py)}Z"
    return line, head


# --------------------------------------------------------------------------- architecture


class _Diagram:
    """Collects boxes, edges and labels of a diagram; links boxes to step pages."""

    def __init__(self, current: str | None, links: Mapping[str, str] | None):
        self.current = current
        self.links = dict(links or {})
        self.parts: list[str] = []
        self.lines: list[str] = []
        self.heads: list[str] = []

    def box(self, x: float, y: float, w: float, h: float, lines: Sequence[str], key: str | None = None,
            size: float = 11) -> None:
        """A box with centred lines of (unescaped) text, linked when `key` has a link."""
        cls = "bx"
        inner = [f'<rect x="{_c(x)}" y="{_c(y)}" width="{_c(w)}" height="{_c(h)}" rx="4" class="{cls}"/>']
        lead = size * 1.2
        top = y + h / 2 - lead * (len(lines) - 1) / 2 + size * 0.35
        for i, line in enumerate(lines):
            cls_t = "" if i == 0 else "tx"
            inner.append(_text(x + w / 2, top + i * lead, _e(line), cls_t, "middle"))
        body = "".join(inner)
        is_current = key is not None and key == self.current
        attrs = ' class="cu" aria-current="step"' if is_current else ""
        href = self.links.get(key) if key else None
        if href is not None:
            self.parts.append(f'<a href="{_e(href)}"{attrs}>{body}</a>')
        elif is_current:
            self.parts.append(f"<g{attrs}>{body}</g>")
        else:
            self.parts.append(body)

    def arrow(self, x1: float, y1: float, x2: float, y2: float, label: str = "", side: str = "right") -> None:
        line, head = _arrow(x1, y1, x2, y2)
        self.lines.append(line)
        self.heads.append(head)
        if label:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2 + 3.5
            if side == "right":
                self.parts.append(_text(mx + 6, my, _e(label), "tx"))
            else:
                self.parts.append(_text(mx - 6, my, _e(label), "tx", "end"))

    def path(self, d: str, head: str | None = None) -> None:
        self.lines.append(d)
        if head:
            self.heads.append(head)

    def plus(self, x: float, y: float) -> None:
        self.parts.append(f'<circle cx="{_c(x)}" cy="{_c(y)}" r="8" class="bx"/>')
        self.parts.append(_text(x, y + 4, "+", "", "middle"))

    def render(self) -> str:
        edges = ""
        if self.lines:
            edges += f'<path class="ed" d="{"".join(self.lines)}"/>'
        if self.heads:
            edges += f'<path class="ah" d="{"".join(self.heads)}"/>'
        return edges + "".join(self.parts)


def _optimizer_key(name: str, links: Mapping[str, str] | None) -> str:
    """The link key of the optimizer box: its own name if linked, else 'adamw' (the step page)."""
    links = links or {}
    for key in (name, "optimizer", "adamw"):
        if key in links:
            return key
    return "adamw"


def architecture(trace, current: str | None = None, links: Mapping[str, str] | None = None,
                 small: bool = False) -> str:
    """The model drawn from the config, sizes on the edges; boxes link to step pages via `links`.

    `small=True` draws the compact two-column map of the steps (forward down, backward up, then the
    optimizer) for step pages, with `current` highlighted. With links the SVG is a `group` (its links
    stay reachable for screen readers); without, an `img`.
    """
    cfg = trace.config
    m = cfg["model"]
    d, heads, d_ff, layers = m["d_model"], m["n_heads"], m["d_ff"], m["n_layers"]
    vocab_n = len(m["vocab"])
    inputs = trace.labels["inputs"]
    batch, tokens = len(inputs), len(inputs[0])
    opt = cfg["optimizer"]
    opt_key = _optimizer_key(opt["name"], links)
    lead = (batch,) if batch > 1 else ()
    loss = float(trace["loss"])
    diagram = _Diagram(current, links)
    role = "group" if links else "img"
    sizes = (f"{layers} block{'s' if layers != 1 else ''}, {heads} attention head{'s' if heads != 1 else ''}, "
             f"d_model {d}, d_ff {d_ff}, vocabulary {vocab_n}")

    if small:
        return _architecture_small(diagram, cfg, opt_key, layers, heads, d_ff, sizes, role)

    cx, bw = 180.0, 220.0
    bl = cx - bw / 2
    y = 8.0
    words = " ".join(isolate_plain(w) for w in inputs[0])
    first = "input tokens" if batch == 1 else f"input tokens (text 1 of {batch})"
    diagram.box(bl, y, bw, 34, [first, _short(words, 36)], key=None)
    y += 34
    wte_x, wpe_x, ew, eh, ey = 20.0, 190.0, 150.0, 34.0, y + 26
    diagram.arrow(cx - 40, y, wte_x + ew / 2, ey, f"{_shape(*lead, tokens)} ids", "left")
    diagram.arrow(cx + 40, y, wpe_x + ew / 2, ey, f"positions 0\u2013{tokens - 1}")
    diagram.box(wte_x, ey, ew, eh, ["token embedding", f"wte {_shape(vocab_n, d)}"], "embeddings")
    diagram.box(wpe_x, ey, ew, eh, ["position embedding", f"wpe {_shape(m['n_positions'], d)}"], "embeddings")
    y = ey + eh
    act = _shape(*lead, tokens, d)
    py = y + 26
    diagram.arrow(wte_x + ew / 2, y, cx - 8, py - 2, act, "left")
    diagram.arrow(wpe_x + ew / 2, y, cx + 8, py - 2, act)
    diagram.plus(cx, py + 6)
    y = py + 14
    tie_top = ey + eh / 2

    shown = list(range(layers)) if layers <= 3 else [0, None, layers - 1]
    for layer in shown:
        y += 10
        if layer is None:
            diagram.arrow(cx, y - 10, cx, y + 10)
            diagram.parts.append(_text(cx, y + 26, _e(f"blocks 1\u2013{layers - 2}: the same as block 0"), "tx",
                                   "middle"))
            y += 36
            continue
        top = y
        parts_start = len(diagram.parts)
        y += 18
        for sub in ("attn", "mlp"):
            split = y
            diagram.parts.append(f'<circle cx="{_c(cx)}" cy="{_c(split)}" r="2.5" class="ah"/>')
            diagram.arrow(cx, split, cx, split + 20, act)
            y = split + 20
            diagram.box(bl, y, bw, 26, ["LayerNorm ln_1" if sub == "attn" else "LayerNorm ln_2"], "layernorm")
            y += 26
            diagram.arrow(cx, y, cx, y + 20, act)
            y += 20
            if sub == "attn":
                diagram.box(bl, y, bw, 34,
                            ["Q, K, V = x \u00b7 c_attn", f"{d} \u2192 3\u00d7{d}, split into {heads} heads"],
                            "qkv")
                y += 34
                head_dim = d // heads
                diagram.arrow(cx, y, cx, y + 20, f"3 \u00d7 {_shape(*lead, heads, tokens, head_dim)}")
                y += 20
                h_box = 54
                diagram.box(bl, y, bw, h_box, ["", "", f"softmax(QK\u1d40/\u221a{head_dim}) V, causal mask"],
                            "attention")
                hs = min(40.0, (bw - 16) / heads - 4)
                row_w = heads * (hs + 4) - 4
                hx = cx - row_w / 2
                for h in range(heads):
                    diagram.parts.append(_rect(hx + h * (hs + 4), y + 6, hs, 22, "ms"))
                    if hs >= 18:
                        diagram.parts.append(_text(hx + h * (hs + 4) + hs / 2, y + 21, f"h{h}", "tx", "middle"))
                y += h_box
                diagram.arrow(cx, y, cx, y + 20, _shape(*lead, heads, tokens, head_dim))
                y += 20
                diagram.box(bl, y, bw, 34, [f"merge {heads} heads, c_proj", f"{d} \u2192 {d}"], "multihead")
                y += 34
            else:
                diagram.box(bl, y, bw, 34, ["feed-forward up: c_fc, GELU", f"{d} \u2192 {d_ff}"], "feedforward")
                y += 34
                diagram.arrow(cx, y, cx, y + 20, _shape(*lead, tokens, d_ff))
                y += 20
                diagram.box(bl, y, bw, 34, ["feed-forward down: c_proj", f"{d_ff} \u2192 {d}"], "feedforward")
                y += 34
            diagram.arrow(cx, y, cx, y + 16, act)
            plus_y = y + 24
            diagram.plus(cx, plus_y)
            line, head = _arrow(44, plus_y, cx - 8, plus_y)
            diagram.path(f"M{_c(cx)} {_c(split)}L44 {_c(split)}L44 {_c(plus_y)}" + line[line.index("L"):], head)
            diagram.parts.append(_text(48, (split + plus_y) / 2, "residual", "tx",
                                       extra=f' transform="rotate(90 48 {_c((split + plus_y) / 2)})"'))
            y = plus_y + 8
            if sub == "attn":
                diagram.arrow(cx, y, cx, y + 14)
                y += 14
        y += 8
        frame = _rect(14, top, W - 28, y - top, "fr", ' rx="6"')
        label = _text(22, top + 13, _e(f"block {layer}" + (f" of {layers}" if layers > 1 else "")), "tx")
        diagram.parts.insert(parts_start, frame + label)
        y += 6
    diagram.arrow(cx, y - 6, cx, y + 14, act)
    y += 14
    diagram.box(bl, y, bw, 26, ["LayerNorm ln_f"], "layernorm")
    y += 26
    diagram.arrow(cx, y, cx, y + 20, act)
    y += 20
    logits_y = y
    diagram.box(bl, y, bw, 34, ["logits = x \u00b7 wte\u1d40", f"tied to wte: {d} \u2192 {vocab_n} words"], "output")
    y += 34
    diagram.arrow(cx, y, cx, y + 20, _shape(*lead, tokens, vocab_n))
    y += 20
    diagram.box(bl, y, bw, 34, ["loss: softmax, cross-entropy", f"mean over predictions = {loss:.4f}"], "loss")
    y += 34
    tie = f"M{_c(wte_x)} {_c(tie_top)}L6 {_c(tie_top)}L6 {_c(logits_y + 17)}"
    line, head = _arrow(6, logits_y + 17, bl, logits_y + 17)
    diagram.parts.insert(0, f'<path class="fr" d="{tie}{line[line.index("L"):]}"/>')
    diagram.heads.append(head)
    diagram.arrow(cx, y, cx, y + 20, "1 number")
    y += 20
    half = (bw - 8) / 2
    diagram.box(bl, y, half, 34, ["backward", "gradients flow up"], "loss-gradient", size=10)
    diagram.box(bl + half + 8, y, half, 34, [f"{opt['name']} update", f"lr {_sig(opt['lr'])}"], opt_key, size=10)
    y += 34 + 8
    desc = (f"The model as configured: {sizes}. {_shape(*lead, tokens)} input tokens are embedded to {act}, "
            f"pass through the block{'s' if layers != 1 else ''} (LayerNorm, attention, residual add, LayerNorm, "
            f"feed-forward {d} to {d_ff} to {d}, residual add), a final LayerNorm and the output layer tied to the "
            f"token embedding ({_shape(*lead, tokens, vocab_n)} logits), then the loss, {loss:.4f}.")
    return _svg("architecture", y, "Architecture of the model", desc, diagram.render(), role)


def _architecture_small(diagram: _Diagram, cfg, opt_key: str, layers: int, heads: int, d_ff: int, sizes: str,
                        role: str) -> str:
    pitch, bh, top = 26.0, 18.0, 22.0
    lx, rx, bw = 20.0, 192.0, 148.0
    diagram.parts.append(_text(lx + bw / 2, 13, "forward \u2193", "tt", "middle"))
    diagram.parts.append(_text(rx + bw / 2, 13, "backward \u2191", "tt", "middle"))

    def row(i: float) -> float:
        return top + i * pitch

    forward = [
        ("embeddings", "embeddings"),
        ("layernorm", "LayerNorm"),
        ("qkv", "Q, K, V"),
        ("attention", f"attention, {heads} head{'s' if heads != 1 else ''}"),
        ("multihead", "merge heads"),
        ("feedforward", f"feed-forward ({d_ff})"),
        ("output", "output logits"),
        ("loss", "loss"),
    ]
    for i, (key, label) in enumerate(forward):
        diagram.box(lx, row(i), bw, bh, [label], key, size=10.5)
        if i:
            diagram.arrow(lx + bw / 2, row(i) - pitch + bh, lx + bw / 2, row(i))
    # the repeated block: a bracket left of rows 1..5
    y1, y2 = row(1), row(5) + bh
    diagram.path(f"M14 {_c(y1)}L10 {_c(y1)}L10 {_c(y2)}L14 {_c(y2)}")
    mid = (y1 + y2) / 2
    diagram.parts.append(_text(7, mid, _e(f"block \u00d7{layers}"), "tx", "middle",
                               f' transform="rotate(-90 7 {_c(mid)})"'))
    backward = [
        (7, 1, "loss-gradient", "loss gradient"),
        (6, 1, "output-backward", "output backward"),
        (5, 1, "feedforward-backward", "feed-forward backward"),
        (2, 3, "attention-backward", "attention backward"),
        (0, 1, "embedding-gradients", "embedding gradients"),
    ]
    prev_top = None
    for start, span, key, label in backward:
        h = bh + (span - 1) * pitch
        diagram.box(rx, row(start), bw, h, [label], key, size=10.5)
        if prev_top is not None:
            diagram.arrow(rx + bw / 2, prev_top, rx + bw / 2, row(start) + h)
        prev_top = row(start)
    diagram.arrow(lx + bw, row(7) + bh / 2, rx, row(7) + bh / 2)
    opt = cfg["optimizer"]
    oy = row(8) + 4
    diagram.box(lx, oy, rx + bw - lx, bh, [f"{opt['name']} update of every weight (lr {_sig(opt['lr'])})"],
                opt_key, size=10.5)
    diagram.path(f"M{_c(rx + bw)} {_c(row(0) + bh / 2)}L354 {_c(row(0) + bh / 2)}L354 {_c(oy + bh / 2)}"
                 f"L{_c(rx + bw + 5)} {_c(oy + bh / 2)}")
    _, head = _arrow(354, oy + bh / 2, rx + bw, oy + bh / 2)
    diagram.heads.append(head)
    height = oy + bh + 6
    where = ""
    if diagram.current:
        names = {k: v for k, v in forward} | {k: v for _, _, k, v in backward} | {opt_key: f"{opt['name']} update"}
        if diagram.current in names:
            where = f" This page: {names[diagram.current]}."
    desc = (f"The steps of one training step ({sizes}): forward through embeddings, LayerNorm, Q K V, attention, "
            f"merging heads, feed-forward, output logits and loss; backward from the loss gradient through the "
            f"output, feed-forward and attention to the embedding gradients; then the {opt['name']} update."
            + where)
    return _svg("steps", height, "Map of the training step", desc, diagram.render(), role)


# --------------------------------------------------------------------------- heatmap

_LAYER = re.compile(r"L(\d+)\.")


def heatmap(trace, name: str, head: int, batch: int = 0) -> str:
    """One head of a (batch, heads, tokens, keys) record as a grid: queries down, keys across.

    Cells where the key comes after the query (the causal mask) are hatched and carry class `ms`;
    signed records (gradients) use a diverging scale, others a single colour from 0 to the maximum.
    """
    record = trace.record(name)
    values = np.asarray(record.value, dtype=float)
    if values.ndim != 4:
        raise ValueError(f"heatmap: {name} has axes {record.axes}, expected (batch, heads, tokens, keys)")
    grid = values[batch, head]
    n = grid.shape[0]
    words = [isolate_plain(w) for w in trace.labels["inputs"][batch]]
    labels = [_short(f"{i} {w}", 12) for i, w in enumerate(words[:n])]
    masked = np.triu(np.ones((n, n), dtype=bool), k=1)
    visible = grid[~masked]
    signed = name.startswith("grad.") or bool((visible < 0).any())
    peak = float(np.abs(visible).max()) if visible.size else 0.0
    scale = peak or 1.0
    decimals = max(2, (2 if signed else 1) - math.floor(math.log10(scale)))

    label_w = max(_width(lab, 10) for lab in labels) + 6
    left = 16 + label_w
    cell = int(max(14, min(44, (W - left - 8) // n)))
    top = 26
    gw = cell * n
    show_values = cell >= 30
    value_size = 9 if cell >= 40 else 8

    out = [_text(4, 14, _e(_heatmap_title(name, head)), "tt")]
    out.append(_rect(left, top, gw, gw, "bg"))
    out.append('<g class="cells">')
    hatch = []
    for q in range(n):
        for k in range(n):
            x, y = left + k * cell, top + q * cell
            if masked[q, k]:
                out.append(_rect(x, y, cell, cell, "ms"))
                hatch.append(f"M{_c(x)} {_c(y + cell / 2)}L{_c(x + cell / 2)} {_c(y)}"
                             f"M{_c(x)} {_c(y + cell)}L{_c(x + cell)} {_c(y)}"
                             f"M{_c(x + cell / 2)} {_c(y + cell)}L{_c(x + cell)} {_c(y + cell / 2)}")
                continue
            v = float(grid[q, k])
            strength = min(1.0, abs(v) / scale)
            cls = "ne" if v < 0 else "po"
            out.append(_rect(x, y, cell, cell, cls, f' fill-opacity="{_opacity(strength)}"'))
            if show_values:
                vcls = ("va" if value_size == 9 else "va xs") + (" hi" if strength > 0.6 else "")
                out.append(_text(x + cell / 2, y + cell / 2 + value_size * 0.35, _fix(v, decimals), vcls))
    out.append("</g>")
    if hatch:
        out.append(f'<path class="ht" d="{"".join(hatch)}"/>')
    # axes: query labels on the left, key labels rotated under the grid
    for i, lab in enumerate(labels):
        out.append(_text(left - 4, top + i * cell + cell / 2 + 3.5, _e(lab), "tx", "end"))
    bottom = top + gw
    for i, lab in enumerate(labels):
        x = left + i * cell + cell / 2 + 3
        out.append(_text(x, bottom + 8, _e(lab), "tx", "end", f' transform="rotate(-50 {_c(x)} {_c(bottom + 8)})"'))
    drop = max(_width(lab, 10) for lab in labels) * 0.77 + 10
    axis_y = bottom + drop + 14
    out.append(_text(left + gw / 2, axis_y, "key position (token)", "", "middle"))
    mid = top + gw / 2
    out.append(_text(11, mid, "query position (token)", "", "middle", f' transform="rotate(-90 11 {_c(mid)})"'))
    # legend
    ly = axis_y + 14
    sw = 16
    if signed:
        steps = [(-1.0, "ne"), (-0.5, "ne"), (0.0, "bg"), (0.5, "po"), (1.0, "po")]
        lo_text, hi_text = _fix(-scale, decimals), _fix(scale, decimals)
    else:
        steps = [(0.0, "bg"), (0.25, "po"), (0.5, "po"), (0.75, "po"), (1.0, "po")]
        lo_text, hi_text = _fix(0, decimals), _fix(scale, decimals)
    out.append(_text(4, ly + 11, "scale", "tx"))
    out.append(_text(40, ly + 11, lo_text, "tx"))
    x0 = 44 + _width(lo_text, 10)
    for i, (s, cls) in enumerate(steps):
        extra = f' fill-opacity="{_opacity(abs(s))}"' if cls != "bg" else ""
        out.append(_rect(x0 + i * sw, ly, sw, 14, cls, extra))
    out.append(_text(x0 + len(steps) * sw + 4, ly + 11, hi_text, "tx"))
    mx, ly = 4.0, ly + 20
    out.append(_rect(mx, ly, 14, 14, "ms"))
    out.append(f'<path class="ht" d="M{_c(mx)} {_c(ly + 7)}L{_c(mx + 7)} {_c(ly)}M{_c(mx)} {_c(ly + 14)}'
               f'L{_c(mx + 14)} {_c(ly)}M{_c(mx + 7)} {_c(ly + 14)}L{_c(mx + 14)} {_c(ly + 7)}"/>')
    out.append(_text(mx + 18, ly + 11, "masked (key after query)", "tx"))
    lo_v = float(visible.min()) if visible.size else 0.0
    hi_v = float(visible.max()) if visible.size else 0.0
    ry = ly + 30
    out.append(_text(4, ry, f"values from {_fix(lo_v, decimals)} to {_fix(hi_v, decimals)}", "tx"))
    height = ry + 8
    desc = _heatmap_desc(name, head, batch, words[:n], grid, masked, signed, decimals, lo_v, hi_v)
    return _svg("heatmap", height, _heatmap_title(name, head), desc, "".join(out))


def _heatmap_title(name: str, head: int) -> str:
    match = _LAYER.match(name.removeprefix("grad."))
    where = f"layer {match.group(1)}, head {head}" if match else f"head {head}"
    if name.endswith("attn.weights"):
        what = "Gradient of the attention weights" if name.startswith("grad.") else "Attention weights"
        return f"{what}, {where}"
    return f"{name}, {where}"


def _heatmap_desc(name, head, batch, words, grid, masked, signed, decimals, lo_v, hi_v) -> str:
    n = grid.shape[0]
    masked_grid = np.where(masked, 0.0, np.abs(grid) if signed else grid)
    q, k = np.unravel_index(int(np.argmax(masked_grid)), grid.shape)
    text = " ".join(words)
    kind = "largest magnitude" if signed else "largest value"
    desc = (f"{_heatmap_title(name, head)} for the {n} tokens of text {batch + 1} ({text}): one row per query "
            f"position, one column per key position. Values range from {_fix(lo_v, decimals)} to "
            f"{_fix(hi_v, decimals)}; the {kind} is {_fix(float(grid[q, k]), decimals)}, where query {q} "
            f"({words[q]}) meets key {k} ({words[k]}).")
    if name.endswith("attn.weights") and not name.startswith("grad."):
        last = grid[n - 1]
        desc += (f" The last query ({words[n - 1]}) gives most weight to key {int(np.argmax(last))} "
                 f"({words[int(np.argmax(last))]}), {_fix(float(last.max()), decimals)}.")
    desc += (f" The {int(masked.sum())} cells above the diagonal, where the key comes after the query, are "
             "masked: the causal mask fixes their weight at 0.")
    return desc


# --------------------------------------------------------------------------- bars


def grad_norms(trace) -> list[tuple[str, float, float]]:
    """Per parameter tensor (HF order): (record name, L2 norm of its gradient, largest |gradient|)."""
    items = []
    for entry in trace.index.values():
        if isinstance(entry, Mapping):
            g = np.asarray(trace[entry["grad"]], dtype=float)
            items.append((entry["initial"], float(np.linalg.norm(g)), float(np.abs(g).max())))
    return items


def update_sizes(trace) -> list[tuple[str, float, float]]:
    """Per parameter tensor (HF order): (record name, L2 norm of updated - initial, largest |update|)."""
    items = []
    for entry in trace.index.values():
        if isinstance(entry, Mapping):
            u = np.asarray(trace[entry["updated"]], dtype=float) - np.asarray(trace[entry["initial"]], dtype=float)
            items.append((entry["initial"], float(np.linalg.norm(u)), float(np.abs(u).max())))
    return items


def all_updates(trace, per_lr: bool = False) -> np.ndarray:
    """Every parameter's update (updated - initial) in HF order, flattened; |update| / lr with per_lr."""
    parts = []
    for entry in trace.index.values():
        if isinstance(entry, Mapping):
            u = np.asarray(trace[entry["updated"]], dtype=float) - np.asarray(trace[entry["initial"]], dtype=float)
            parts.append(u.ravel())
    values = np.concatenate(parts) if parts else np.zeros(0)
    if per_lr:
        values = np.abs(values) / float(trace.config["optimizer"]["lr"])
    return values


def bars(items: Sequence[tuple], title: str, unit: str,
         series: Sequence[str] = ("L2 norm", "largest |value|")) -> str:
    """Horizontal bars, one row per item: (label, value) or (label, value1, value2) for two series."""
    rows = [(str(item[0]), [float(v) for v in item[1:]]) for item in items]
    if not rows:
        raise ValueError("bars: no items")
    count = len(rows[0][1])
    names = list(series)[:count] if count > 1 else [unit]
    labels = [_short(label, 26) for label, _ in rows]
    left = min(170.0, max(_width(lab, 10) for lab in labels) + 10)
    values = [v for _, vs in rows for v in vs]
    lo, hi, ticks, dec = _ticks(min(0.0, min(values)), max(0.0, max(values)), 4)
    right = W - 52
    span = hi - lo

    def sx(v: float) -> float:
        return left + (v - lo) / span * (right - left)

    bar_h = 8.0 if count > 1 else 12.0
    pitch = count * (bar_h + 1) + 7
    top = 30.0 if count == 1 else 44.0
    out = [_text(4, 14, _e(title), "tt")]
    if count > 1:
        x = 4.0
        for i, nm in enumerate(names):
            out.append(_rect(x, 22, 12, 10, f"b{i + 1}"))
            out.append(_text(x + 16, 31, _e(nm), "tx"))
            x += 28 + _width(nm, 10)
    plot_h = pitch * len(rows)
    grid = []
    for t in ticks:
        x = sx(t)
        grid.append(f"M{_c(x)} {_c(top - 4)}V{_c(top + plot_h)}")
        out.append(_text(x, top + plot_h + 12, _fix(t, dec), "tx", "middle"))
    out.insert(1, f'<path class="gr" d="{"".join(grid)}"/>')
    for r, (_, vs) in enumerate(rows):
        y = top + r * pitch
        out.append(_text(left - 5, y + count * (bar_h + 1) / 2 + 3, _e(labels[r]), "", "end"))
        for i, v in enumerate(vs):
            x0, x1 = sorted((sx(0), sx(v)))
            by = y + i * (bar_h + 1)
            out.append(_rect(x0, by, max(x1 - x0, 0.5), bar_h, f"b{i + 1}"))
            out.append(_text(max(x1, sx(0)) + 3, by + bar_h - 1, _sig(v), "tx sm"))
    axis_y = top + plot_h
    out.append(f'<path class="ax" d="M{_c(sx(0))} {_c(top - 4)}V{_c(axis_y)}"/>')
    out.append(_text((left + right) / 2, axis_y + 28, _e(unit), "", "middle"))
    height = axis_y + 36
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][1][0], i))
    big, small = rows[order[0]], rows[order[-1]]
    first = names[0]
    listing = "; ".join(f"{label}: " + ", ".join(f"{nm} {_sig(v)}" for nm, v in zip(names, vs)) for label, vs in rows)
    desc = (f"{title}, in {unit}. Largest {first}: {big[0]} ({_sig(big[1][0])}); smallest: {small[0]} "
            f"({_sig(small[1][0])}). All values: {listing}.")
    return _svg("bars", height, title, desc, "".join(out))


# --------------------------------------------------------------------------- histogram


def histogram(values, bins: int, title: str, unit: str) -> str:
    """The distribution of `values` in `bins` equal bins: counts up, values across."""
    data = np.asarray(values, dtype=float).ravel()
    if data.size == 0:
        raise ValueError("histogram: no values")
    lo_v, hi_v = float(data.min()), float(data.max())
    lo_r, hi_r = (lo_v, hi_v) if hi_v > lo_v else (lo_v - 0.5, hi_v + 0.5)
    lo, hi, xticks, xdec = _ticks(lo_r, hi_r, 4)
    counts, edges = np.histogram(data, bins=bins, range=(lo, hi))
    _, ctop, yticks, _ = _ticks(0, float(counts.max()), 4)
    yticks = [t for t in yticks if float(t).is_integer()]
    left, right, top, bottom = 50.0, W - 12.0, 28.0, 178.0

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    def sy(c: float) -> float:
        return bottom - c / ctop * (bottom - top)

    out = [_text(4, 14, _e(title), "tt")]
    grid = "".join(f"M{_c(left)} {_c(sy(t))}H{_c(right)}" for t in yticks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t in yticks:
        out.append(_text(left - 4, sy(t) + 3.5, str(int(t)), "tx", "end"))
    for t in xticks:
        out.append(_text(sx(t), bottom + 13, _fix(t, xdec), "tx", "middle"))
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            out.append(_rect(sx(a), sy(c), max(sx(b) - sx(a) - 0.5, 0.5), bottom - sy(c), "b1"))
    out.append(f'<path class="ax" d="M{_c(left)} {_c(top - 4)}V{_c(bottom)}H{_c(right)}"/>')
    out.append(_text((left + right) / 2, bottom + 30, _e(unit), "", "middle"))
    mid = (top + bottom) / 2
    out.append(_text(12, mid, "count", "", "middle", f' transform="rotate(-90 12 {_c(mid)})"'))
    height = bottom + 38
    peak = int(np.argmax(counts))
    desc = (f"{title}: {data.size} values in {unit}, from {_sig(lo_v)} to {_sig(hi_v)}, "
            f"mean {_sig(float(data.mean()))}, "
            f"median {_sig(float(np.median(data)))}, in {bins} bins of width {_sig(float(edges[1] - edges[0]))}. "
            f"The fullest bin, {_sig(float(edges[peak]))} to {_sig(float(edges[peak + 1]))}, holds {int(counts[peak])} "
            f"values.")
    return _svg("histogram", height, title, desc, "".join(out))


# --------------------------------------------------------------------------- line


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    a, b = math.floor(math.log10(lo) + 1e-12), math.ceil(math.log10(hi) - 1e-12)
    if b == a:
        b += 1
    ticks = []
    for k in range(a, b + 1):
        mults = (1,) if b - a > 2 else (1, 2, 5)
        ticks += [m * 10.0**k for m in mults if m * 10.0**k <= 10.0**b * (1 + 1e-9)]
    return 10.0**a, 10.0**b, ticks


def _tick_label(t: float) -> str:
    exp = math.floor(math.log10(t) + 1e-9)
    return _fix(t, max(0, -exp)) if exp > -6 else f"{t:.0e}"


def line(xs, ys, title: str, xlabel: str, ylabel: str, log: bool = False) -> str:
    """A curve with numbered ticks on both axes; `log=True` uses a logarithmic y axis."""
    x = np.asarray(xs, dtype=float).ravel()
    y = np.asarray(ys, dtype=float).ravel()
    if x.size != y.size or x.size == 0:
        raise ValueError("line: xs and ys must be non-empty and of the same length")
    if log and (y <= 0).any():
        raise ValueError("line: a log scale needs positive values")
    xlo, xhi, xticks, xdec = _ticks(float(x.min()), float(x.max()), 5)
    if log:
        ylo, yhi, yticks = _log_ticks(float(y.min()), float(y.max()))
        ylabels = [_tick_label(t) for t in yticks]
        f = math.log10
    else:
        ylo, yhi, yticks, ydec = _ticks(min(0.0, float(y.min())), float(y.max()), 5)
        ylabels = [_fix(t, ydec) for t in yticks]

        def f(v: float) -> float:
            return v

    left, right, top, bottom = 54.0, W - 14.0, 30.0, 186.0
    flo, fhi = f(ylo), f(yhi)

    def sx(v: float) -> float:
        return left + (v - xlo) / (xhi - xlo) * (right - left)

    def sy(v: float) -> float:
        return bottom - (f(v) - flo) / (fhi - flo) * (bottom - top)

    out = [_text(4, 14, _e(title + (" (log scale)" if log else "")), "tt")]
    grid = "".join(f"M{_c(left)} {_c(sy(t))}H{_c(right)}" for t in yticks)
    grid += "".join(f"M{_c(sx(t))} {_c(top)}V{_c(bottom)}" for t in xticks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t, lab in zip(yticks, ylabels):
        out.append(_text(left - 4, sy(t) + 3.5, lab, "tx", "end"))
    for t in xticks:
        out.append(_text(sx(t), bottom + 13, _fix(t, xdec), "tx", "middle"))
    points = " ".join(f"{_c(sx(a))},{_c(sy(b))}" for a, b in zip(x, y))
    out.append(f'<polyline class="ln" points="{points}"/>')
    for i, anchor in ((0, "start"), (x.size - 1, "end")):
        px, py = sx(float(x[i])), sy(float(y[i]))
        out.append(f'<circle class="pt" cx="{_c(px)}" cy="{_c(py)}" r="3"/>')
        ty = py - 7 if py > top + 14 else py + 14
        out.append(_text(px + (5 if anchor == "start" else -5), ty, _sig(float(y[i])), "", anchor))
    out.append(f'<path class="ax" d="M{_c(left)} {_c(top)}V{_c(bottom)}H{_c(right)}"/>')
    out.append(_text((left + right) / 2, bottom + 30, _e(xlabel), "", "middle"))
    mid = (top + bottom) / 2
    out.append(_text(12, mid, _e(ylabel), "", "middle", f' transform="rotate(-90 12 {_c(mid)})"'))
    height = bottom + 38
    low = int(np.argmin(y))
    desc = (f"{title}{' on a log scale' if log else ''}: {ylabel} against {xlabel} for {x.size} points, "
            f"{_sig(float(y[0]))} at {_sig(float(x[0]))} and {_sig(float(y[-1]))} at {_sig(float(x[-1]))}; "
            f"lowest {_sig(float(y[low]))} at {_sig(float(x[low]))}, highest {_sig(float(y.max()))}.")
    return _svg("line", height, title + (" (log scale)" if log else ""), desc, "".join(out))


def loss_curves(trace) -> str:
    """The training-run loss, linear, with the log-scale version in a <details> (works without JavaScript)."""
    losses = np.asarray(trace["train.loss"], dtype=float)
    steps = np.arange(losses.size)
    title = f"Loss over {losses.size - 1} training steps"
    args = (steps, losses, title, "training step", "loss (nats)")
    return (line(*args) + '<details class="chart-log"><summary>Log scale</summary>'
            + line(*args, log=True) + "</details>")


# --------------------------------------------------------------------------- before / after


def before_after(trace) -> str:
    """For each predicted position: probability of the correct next word before and after training."""
    before = np.asarray(trace["train.target_prob.before"], dtype=float)
    after = np.asarray(trace["train.target_prob.after"], dtype=float)
    inputs, targets = trace.labels["inputs"], trace.labels["targets"]
    multi = len(inputs) > 1
    rows = []
    for b in range(before.shape[0]):
        for t in range(before.shape[1]):
            if targets[b][t] == IGNORED:
                continue
            label = f"{isolate_plain(inputs[b][t])} \u2192 {isolate_plain(targets[b][t])}"
            rows.append(((f"{b + 1}: " if multi else "") + label, float(before[b, t]), float(after[b, t])))
    steps = trace.config["train_steps"]
    labels = [_short(r[0], 24) for r in rows]
    left = min(160.0, max(_width(lab, 10) for lab in labels) + 10)
    right = W - 44
    bar_h, pitch, top = 8.0, 25.0, 44.0

    def sx(v: float) -> float:
        return left + v * (right - left)

    title = f"Probability of the correct next word, before and after {steps} steps"
    out = [_text(4, 14, "Probability of the correct next word", "tt")]
    x = 4.0
    for cls, nm in (("b1", "before training"), ("b2", f"after {steps} steps")):
        out.append(_rect(x, 22, 12, 10, cls))
        out.append(_text(x + 16, 31, _e(nm), "tx"))
        x += 28 + _width(nm, 10)
    plot_h = pitch * len(rows)
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    grid = "".join(f"M{_c(sx(t))} {_c(top - 4)}V{_c(top + plot_h)}" for t in ticks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t in ticks:
        out.append(_text(sx(t), top + plot_h + 12, _fix(t, 2), "tx", "middle"))
    for r, (_, p0, p1) in enumerate(rows):
        y = top + r * pitch
        out.append(_text(left - 5, y + bar_h + 3, _e(labels[r]), "", "end"))
        for i, p in enumerate((p0, p1)):
            by = y + i * (bar_h + 1)
            out.append(_rect(left, by, max(sx(p) - left, 0.5), bar_h, f"b{i + 1}"))
            out.append(_text(sx(p) + 3, by + bar_h - 1, _fix(p, 3), "tx sm"))
    axis_y = top + plot_h
    out.append(f'<path class="ax" d="M{_c(left)} {_c(top - 4)}V{_c(axis_y)}"/>')
    out.append(_text((left + right) / 2, axis_y + 28, "probability of the correct next word (0 to 1)", "", "middle"))
    height = axis_y + 36
    if not rows:
        raise ValueError("before_after: every target is ignored")
    mean0 = sum(r[1] for r in rows) / len(rows)
    mean1 = sum(r[2] for r in rows) / len(rows)
    listing = "; ".join(f"{label}: {_fix(p0, 3)} before, {_fix(p1, 3)} after" for label, p0, p1 in rows)
    desc = (f"{title}, for {len(rows)} predictions (input word \u2192 correct next word). Mean probability "
            f"{_fix(mean0, 3)} before and {_fix(mean1, 3)} after. {listing}.")
    return _svg("before-after", height, title, desc, "".join(out))
