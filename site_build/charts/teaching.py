"""Pictures for learning, drawn from a trace: GELU (or SiLU) and its slope with this step's inputs, LayerNorm as
centring and scaling, the backward pass as a graph of forks and sums, attention before and after training, greedy
text before and after training, and the update of one tensor as a heatmap of Δθ/η.

Every function is pure (the same trace gives a byte-identical string) and follows the rules of every chart (see
charts/__init__.py): a title and a description that states the key numbers, colours only through CSS classes,
config text escaped and isolated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np

from engine.layers import GELU_C, gelu_backward, gelu_forward, silu_backward, silu_forward
from site_build.charts.svg import Svg, W, arrow, chart, esc, rect, shorten, text, text_width, ticks
from site_build.format import chart_fixed, coord, counted, isolate_plain, opacity, sig

LEVELS = 9  # shades of a heatmap cell: cells of one shade are drawn as one path


# --------------------------------------------------------------------------- shared


def _axis_x(lo: float, hi: float, left: float, right: float):
    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    return sx


def _shaded_cells(cells: Sequence[tuple[float, float, float, float, float]]) -> str:
    """Cells (x, y, w, h, value in [-1, 1]) as one path per sign and shade: small, and each shade one class."""
    paths: dict[tuple[str, int], list[str]] = {}
    for x, y, w, h, v in cells:
        if v == 0 or not math.isfinite(v):
            continue
        level = min(LEVELS, max(1, math.ceil(abs(v) * LEVELS)))
        key = ("po" if v > 0 else "ne", level)
        paths.setdefault(key, []).append(f"M{coord(x)} {coord(y)}h{coord(w)}v{coord(h)}h{coord(-w)}z")
    out = []
    for (cls, level), parts in sorted(paths.items()):
        out.append(f'<path class="{cls}" fill-opacity="{opacity(level / LEVELS)}" d="{"".join(parts)}"/>')
    return "".join(out)


def _dots(xs: np.ndarray, ys: np.ndarray, cls: str) -> str:
    """Many small round marks as one path of zero-length strokes with round caps (a circle each would be ten times
    the bytes); points closer than half a unit are drawn once, in the order they come (GPT-2 has 196,608 of them)."""
    xy = np.stack([np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)], axis=1)
    grid = np.round(xy * 2) + 0.0  # half units; + 0.0 turns a rounded -0.0 into 0, as Python's round() gives
    if not len(grid):
        return ""
    _, first = np.unique(grid, axis=0, return_index=True)
    seen = dict.fromkeys((coord(x / 2), coord(y / 2)) for x, y in grid[np.sort(first)].tolist())
    d = "".join(f"M{x} {y}h0" for x, y in seen)
    return f'<path class="{cls} dots" d="{d}"/>'


def _legend(x: float, y: float, lo_text: str, hi_text: str, signed: bool = True) -> str:
    steps = [(-1.0, "ne"), (-0.5, "ne"), (0.0, "bg"), (0.5, "po"), (1.0, "po")] if signed else \
        [(0.0, "bg"), (0.25, "po"), (0.5, "po"), (0.75, "po"), (1.0, "po")]
    out = [text(x, y + 11, esc(lo_text), "tx")]
    x0 = x + 4 + text_width(lo_text, 10)
    for i, (s, cls) in enumerate(steps):
        extra = f' fill-opacity="{opacity(abs(s))}"' if cls != "bg" else ""
        out.append(rect(x0 + i * 16, y, 16, 14, cls, extra))
    out.append(text(x0 + len(steps) * 16 + 4, y + 11, esc(hi_text), "tx"))
    return "".join(out)


# --------------------------------------------------------------------------- GELU


def _inputs(trace, name: str, batch: int) -> np.ndarray:
    """The entries of a (batch, tokens, ·) record at one text's real positions, flat."""
    values = np.asarray(trace[name], dtype=float)
    n = int((np.asarray(trace["targets"])[batch] >= 0).sum()) or values.shape[1]
    return values[batch, :n].ravel()


def _activation_chart(u: np.ndarray, fn, slope, label: str, axis: str) -> tuple[str, np.ndarray, np.ndarray,
                                                                                  np.ndarray, str]:
    """An activation fn(u) and its slope, each with this step's inputs u marked: the drawing, the grid, the two
    curves on it, and the range of u as the description writes it."""
    lo, hi, xt, xdec = ticks(min(-3.0, float(u.min()) - 0.25), max(3.0, float(u.max()) + 0.25), 6)
    grid = np.linspace(lo, hi, 161)
    g, d = fn(grid), slope(np.ones_like(grid), grid)
    left, right = 46.0, W - 12.0
    sx = _axis_x(lo, hi, left, right)
    out = [text(4, 14, f"{label} and its slope, with this step\u2019s inputs", "tt")]
    panels = [(f"{label}(u)", g, fn(u), 30.0), (f"slope {label}\u2032(u)", d, slope(np.ones_like(u), u), 200.0)]
    for name, curve, marks, top in panels:
        ylo, yhi, yt, ydec = ticks(float(min(curve.min(), 0.0)), float(max(curve.max(), 1.0)), 4)
        bottom = top + 130

        def sy(v: float, ylo=ylo, yhi=yhi, top=top, bottom=bottom) -> float:
            return bottom - (v - ylo) / (yhi - ylo) * (bottom - top)

        lines = "".join(f"M{coord(left)} {coord(sy(t))}H{coord(right)}" for t in yt)
        lines += "".join(f"M{coord(sx(t))} {coord(top)}V{coord(bottom)}" for t in xt)
        out.append(f'<path class="gr" d="{lines}"/>')
        for t in yt:
            out.append(text(left - 4, sy(t) + 3.5, chart_fixed(t, ydec), "tx", "end"))
        for t in xt:
            out.append(text(sx(t), bottom + 13, chart_fixed(t, xdec), "tx", "middle"))
        out.append(f'<path class="ax" d="M{coord(left)} {coord(sy(0))}H{coord(right)}M{coord(sx(0))} {coord(top)}'
                   f'V{coord(bottom)}"/>')
        pts = " ".join(f"{coord(sx(a))},{coord(sy(b))}" for a, b in zip(grid, curve))
        out.append(f'<polyline class="ln" points="{pts}"/>')
        if top < 100:  # the identity, for comparison: the activation stays below it
            out.append(f'<path class="ref2" d="M{coord(sx(max(lo, ylo)))} {coord(sy(max(lo, ylo)))}'
                       f'L{coord(sx(min(hi, yhi)))} {coord(sy(min(hi, yhi)))}"/>')
        xs, ys, right_side = sx(u), sy(np.asarray(marks, dtype=float)), u >= 0
        out.append(_dots(xs[right_side], ys[right_side], "mk"))
        out.append(_dots(xs[~right_side], ys[~right_side], "mn"))
        out.append(text(left + 4, top + 11, esc(name), "tt"))
    out.append(text((left + right) / 2, 380, axis, "", "middle"))
    where = f"over u from {chart_fixed(lo, xdec)} to {chart_fixed(hi, xdec)}"
    return "".join(out), grid, g, d, where


def gelu_chart(trace, name: str = "L0.mlp.fc", batch: int = 0) -> Svg:
    """GELU(u) and its slope GELU'(u), each with the inputs u of this step (record `name`, one text) marked."""
    u = _inputs(trace, name, batch)
    drawing, grid, g, d, where = _activation_chart(u, gelu_forward, gelu_backward, "GELU", "u (an entry of U)")
    ratio = gelu_forward(u[u > 0]) / u[u > 0] if (u > 0).any() else np.zeros(0)
    u_min = grid[int(np.argmin(g))]
    desc = (f"Two curves {where}: GELU(u) on top and its slope "
            f"below, with the {u.size} entries of U ({name}, text {batch + 1}) marked as dots. "
            f"{int((u > 0).sum())} are "
            f"positive and {int((u < 0).sum())} negative; the inputs run from {sig(float(u.min()))} to "
            f"{sig(float(u.max()))}. GELU has its minimum, {sig(float(g.min()))}, near u = {sig(u_min)}; its slope "
            f"runs from {sig(float(d.min()))} to {sig(float(d.max()))} and passes 1 only for u above about 0.7.")
    if ratio.size:
        desc += (f" For the positive inputs, GELU(u)/u runs from {sig(float(ratio.min()))} to "
                 f"{sig(float(ratio.max()))}.")
    return chart("gelu", 390.0, "GELU and its slope, with this step\u2019s inputs", desc, drawing)


def silu_chart(trace, name: str = "L0.mlp.gate", batch: int = 0) -> Svg:
    """SiLU(u) and its slope SiLU'(u), each with the gate inputs u of this step (record `name`, one text) marked."""
    u = _inputs(trace, name, batch)
    drawing, grid, g, d, where = _activation_chart(u, silu_forward, silu_backward, "SiLU", "u (an entry of U_gate)")
    u_min = grid[int(np.argmin(g))]
    desc = (f"Two curves {where}: SiLU(u) = u \u03c3(u) on top and its slope below, with the {u.size} gate inputs "
            f"({name}, text {batch + 1}) marked as dots. {int((u > 0).sum())} are positive and {int((u < 0).sum())} "
            f"negative; the inputs run from {sig(float(u.min()))} to {sig(float(u.max()))}. SiLU has its minimum, "
            f"{sig(float(g.min()))}, near u = {sig(u_min)}; its slope runs from {sig(float(d.min()))} to "
            f"{sig(float(d.max()))}, is negative left of the minimum and above 1 right of u = {sig(-u_min)}.")
    return chart("silu", 390.0, "SiLU and its slope, with this step\u2019s inputs", desc, drawing)


SERIES_C = 2 / (3 * math.pi) - 1 / 6  # the u³ coefficient from matching the series of erf and tanh


@cache
def _gelu_reference() -> dict[str, float]:
    """What does not depend on the run: where GELU's minimum lies (on a fine grid of [-3, 0]) and the largest error of
    the tanh formula against the exact u·Φ(u), with either constant, over |u| ≤ 6 and near 0 (|u| ≤ 1); worked out
    once."""
    grid = np.linspace(-3, 0, 30001)
    g = gelu_forward(grid)
    wide = np.linspace(-6, 6, 24001)
    exact = 0.5 * wide * (1 + np.vectorize(math.erf)(wide / math.sqrt(2)))

    def error(c: float, where: np.ndarray) -> float:
        approx = 0.5 * wide * (1 + np.tanh(math.sqrt(2 / math.pi) * (wide + c * wide**3)))
        return float(np.abs(approx - exact)[where].max())

    near = np.abs(wide) <= 1
    every = np.ones_like(near)
    return {"err_series": error(SERIES_C, every), "err_fitted": error(GELU_C, every),
            "err_series_near": error(SERIES_C, near), "err_fitted_near": error(GELU_C, near),
            "min_u": float(grid[int(np.argmin(g))]), "min_value": float(g.min())}


def gelu_stats(trace, name: str = "L0.mlp.fc", batch: int = 0) -> dict[str, float]:
    """Numbers a page says about GELU on this step's inputs: the ratio GELU(u)/u over the positive entries, where
    the minimum of GELU lies, the u³ coefficient from matching the series of erf and tanh, and the largest error of
    the tanh formula against the exact u·Φ(u) with either constant (over |u| ≤ 6, and near 0: |u| ≤ 1)."""
    values = np.asarray(trace[name], dtype=float)
    n = int((np.asarray(trace["targets"])[batch] >= 0).sum()) or values.shape[1]
    u = values[batch, :n].ravel()
    pos = u[u > 0]
    ratio = gelu_forward(pos) / pos if pos.size else np.zeros(0)
    return {**_gelu_reference(),
            "n": float(u.size), "n_pos": float(pos.size), "n_neg": float((u < 0).sum()),
            "ratio_min": float(ratio.min()) if ratio.size else math.nan,
            "ratio_max": float(ratio.max()) if ratio.size else math.nan,
            "ratio_median": float(np.median(ratio)) if ratio.size else math.nan,
            "series_c": SERIES_C, "fitted_c": GELU_C,
            "g_min": float(gelu_forward(u).min()), "u_min": float(u.min()), "u_max": float(u.max())}


# --------------------------------------------------------------------------- LayerNorm


def _strips(heading: str, strips: list, xhat: np.ndarray, extra: Sequence[float] = ()) -> tuple[str, float, str]:
    """One row at several stages, each a strip on one shared axis (label, values, a reference mark or None), the dots
    coloured by the sign of x̂ and tied from stage to stage; the axis also covers `extra`. Returns the body, the
    height and the axis range in words ("−2 to 2")."""
    every = np.concatenate([s[1] for s in strips] + ([np.asarray(extra, dtype=float)] if len(extra) else []))
    lo, hi, xt, xdec = ticks(float(every.min()), float(every.max()), 6)
    left, right = 14.0, W - 14.0
    sx = _axis_x(lo, hi, left, right)
    top, pitch = 30.0, 62.0
    out = [text(4, 14, heading, "tt")]
    grid = "".join(f"M{coord(sx(t))} {coord(top)}V{coord(top + pitch * len(strips) - 18)}" for t in xt)
    out.append(f'<path class="gr" d="{grid}"/>')
    ties = []
    for k, (label, vals, mark) in enumerate(strips):
        y = top + k * pitch + 24
        out.append(text(left, y - 12, esc(label), ""))
        out.append(f'<path class="ax" d="M{coord(left)} {coord(y)}H{coord(right)}"/>')
        if mark is not None:
            out.append(f'<path class="ref" d="M{coord(sx(mark))} {coord(y - 8)}V{coord(y + 8)}"/>')
        if k + 1 < len(strips):
            nxt = strips[k + 1][1]
            ties += [f"M{coord(sx(a))} {coord(y + 3)}L{coord(sx(b))} {coord(y + pitch - 3)}" for a, b in zip(vals, nxt)]
        for v, h in zip(vals, xhat):
            out.append(f'<circle class="{"mk" if h >= 0 else "mn"}" cx="{coord(sx(v))}" cy="{coord(y)}" r="3"/>')
    out.insert(2, f'<path class="tie" d="{"".join(ties)}"/>')
    axis_y = top + pitch * len(strips) - 10
    for t in xt:
        out.append(text(sx(t), axis_y, chart_fixed(t, xdec), "tx", "middle"))
    return "".join(out), axis_y + 10, f"{chart_fixed(lo, xdec)} to {chart_fixed(hi, xdec)}"


def layernorm_chart(trace, ln: str = "L0.ln_1", batch: int = 0, row: int = 0) -> Svg:
    """One row through a LayerNorm on one shared axis: x, then x − μ (centred), then x̂ (scaled), then the output;
    through an RMSNorm (a llama run): x, then x̂ (scaled), then the output."""
    xhat_rec = trace.record(f"{ln}.xhat")
    if xhat_rec.op == "rms_normalize":
        return _rmsnorm_chart(trace, ln, batch, row)
    x = np.asarray(trace[xhat_rec.inputs[0]], dtype=float)[batch, row]
    mu = float(np.asarray(trace[f"{ln}.mean"])[batch, row])
    var = float(np.asarray(trace[f"{ln}.var"])[batch, row])
    sd = math.sqrt(var + xhat_rec.meta["eps"])
    xhat = np.asarray(trace[f"{ln}.xhat"], dtype=float)[batch, row]
    out_v = np.asarray(trace[f"{ln}.out"], dtype=float)[batch, row]
    strips = [("x: the row as it comes in", x, mu), ("x \u2212 \u03bc: centred", x - mu, 0.0),
              ("x\u0302 = (x \u2212 \u03bc)/\u03c3: scaled", xhat, 0.0),
              ("\u03b3 x\u0302 + \u03b4: the output", out_v, None)]
    body, height, span = _strips(f"One row through {ln.split('.')[-1]}: centre, then scale", strips, xhat)
    c = x.size
    desc = (f"The {c} numbers of row {row} (text {batch + 1}) of the input of {ln}, drawn on one axis from "
            f"{span}, four times: as they come in "
            f"(mean \u03bc = {sig(mu)}, "
            f"marked), centred by subtracting \u03bc (now mean 0), scaled by dividing by \u03c3 = {sig(sd)} (now "
            f"spread {sig(float(np.sqrt((xhat * xhat).mean())))}), and after the gain and shift. Lines tie each "
            f"dimension from one stage to the next. The input runs from {sig(float(x.min()))} to "
            f"{sig(float(x.max()))}, "
            f"the normalised row from {sig(float(xhat.min()))} to {sig(float(xhat.max()))}.")
    return chart("layernorm", height, f"One row through {ln}: centring and scaling", desc, body)


def _rmsnorm_chart(trace, ln: str, batch: int, row: int) -> Svg:
    """One row through an RMSNorm (Llama) on one shared axis: x, then x̂ = x / √(ν + ε), then the output γ x̂. There
    is no centring: zero stays where it is (marked on every strip), and every number keeps its sign."""
    xhat_rec = trace.record(f"{ln}.xhat")
    x = np.asarray(trace[xhat_rec.inputs[0]], dtype=float)[batch, row]
    ms = float(np.asarray(trace[xhat_rec.inputs[1]])[batch, row])
    rms = math.sqrt(ms + xhat_rec.meta["eps"])
    xhat = np.asarray(trace[f"{ln}.xhat"], dtype=float)[batch, row]
    out_v = np.asarray(trace[f"{ln}.out"], dtype=float)[batch, row]
    strips = [("x: the row as it comes in", x, 0.0), ("x\u0302 = x / rms(x): scaled", xhat, 0.0),
              ("\u03b3 \u2299 x\u0302: the output", out_v, 0.0)]
    body, height, span = _strips(f"One row through {ln.split('.')[-1]}: scale only, no centring", strips, xhat,
                                 [0.0])
    desc = (f"The {x.size} numbers of row {row} (text {batch + 1}) of the input of {ln}, drawn on one axis from "
            f"{span}, three times, with zero marked: as they come in "
            f"(mean {sig(float(x.mean()))}, root mean square {sig(rms)}), divided by the root mean square (now "
            f"root mean square {sig(float(np.sqrt((xhat * xhat).mean())))}, mean {sig(float(xhat.mean()))}: "
            f"nothing was subtracted), and after the gain. Lines tie each dimension from one stage to the next. "
            f"The input runs from {sig(float(x.min()))} to {sig(float(x.max()))}, the normalised row from "
            f"{sig(float(xhat.min()))} to {sig(float(xhat.max()))}.")
    return chart("layernorm", height, f"One row through {ln}: scaling by the root mean square", desc, body)


# --------------------------------------------------------------------------- the backward pass as a graph


def backward_graph(trace) -> Svg:
    """The computation of one step as a graph, forward downwards; where a value feeds two places (a fork, ●) its
    gradients add on the way back; where two values are added (+) the gradient is copied to both. The token table
    forks into the logits too when the output layer is tied to it (GPT-2); an untied one is its own W_out."""
    layers = trace.config["model"]["n_layers"]
    tied = trace.config["model"].get("tie_embeddings", True)
    llama = trace.config["model"].get("arch", "gpt2") == "llama"  # RMSNorms, no position table, SwiGLU
    norm = "RMS" if llama else "LN"
    sx, bh = 120.0, 22.0  # the stream's x; box height
    out: list[str] = [text(4, 14, "Where gradients are copied and where they add", "tt")]
    edges: list[str] = []
    heads: list[str] = []

    def box(x: float, y: float, w: float, label: str) -> None:
        out.append(rect(x, y, w, bh, "bx", ' rx="4"'))
        out.append(text(x + w / 2, y + bh / 2 + 4, esc(label), "", "middle"))

    def edge(points: Sequence[tuple[float, float]]) -> None:
        """A polyline with an arrow head at its last point."""
        *rest, (x1, y1), (x2, y2) = points
        line, head = arrow(x1, y1, x2, y2, 4)
        edges.append("".join(f"{'M' if i == 0 else 'L'}{coord(x)} {coord(y)}" for i, (x, y) in enumerate(rest))
                     + (line.replace("M", "L", 1) if rest else line))
        heads.append(head)

    def plus(y: float) -> None:
        out.append(f'<circle cx="{coord(sx)}" cy="{coord(y)}" r="8" class="sum"/>')
        out.append(text(sx, y + 4, "+", "", "middle"))

    def fork(x: float, y: float, mark: str) -> None:
        out.append(f'<circle cx="{coord(x)}" cy="{coord(y)}" r="4" class="fork"/>')
        out.append(text(x + 7, y - 5, mark, "tx"))

    box(25, 28, 90, "W_te[id]")
    if llama:  # the token rows are X: positions enter inside attention, by rotation
        edge([(70, 50), (sx, 50), (sx, 80)])
        branches = (("X", "RMS\u2081, RoPE, attention, W_O", "R"), ("R", "RMS\u2082, SwiGLU, W_down", "X\u2032"))
    else:
        box(125, 28, 90, "W_pe[t]")
        edge([(70, 50), (sx - 6, 72)])
        edge([(170, 50), (sx + 6, 72)])
        plus(78)
        branches = (("X", "LN\u2081, attention, W_O", "R"), ("R", "LN\u2082, W\u2081, GELU, W\u2082", "X\u2032"))
    y = 86.0
    block_top = y + 8
    for k, (stream, branch, result) in enumerate(branches):
        out.append(text(sx - 8, y + 14, stream, "", "end"))
        fy = y + 18
        fork(sx, fy, "\u2460" if k == 0 else "\u2461")
        edge([(sx, fy), (250, fy), (250, fy + 12)])
        box(170, fy + 12, 160, branch)
        sum_y = fy + 62
        edge([(250, fy + 12 + bh), (250, sum_y), (sx + 8, sum_y)])
        edge([(sx, fy), (sx, sum_y - 8)])
        out.append(text(sx - 6, fy + 34, "residual", "tx", "end"))
        plus(sum_y)
        y = sum_y + 8
        if k == 1:
            out.append(text(sx - 8, y + 14, result, "", "end"))
    block_bottom = y + 2
    out.append(rect(4, block_top - 4, W - 8, block_bottom - block_top + 4, "fr", ' rx="6"'))
    out.append(text(10, block_top + 8, esc(f"block, \u00d7 {layers}" if layers > 1 else "the block"), "tx"))
    edge([(sx, y), (sx, y + 22)])
    y += 22
    box(sx - 60, y, 120, f"{norm}_f")
    edge([(sx, y + bh), (sx, y + bh + 16)])
    y += bh + 16
    box(sx - 80, y, 160, f"logits = {norm}_f \u00b7 W_te\u1d40" if tied else f"logits = {norm}_f \u00b7 W_out\u1d40")
    logits_y = y + bh / 2
    if tied:
        fork(25, 39, "")
        out.append(text(8, 24, "\u2462", "tx"))
        edge([(25, 39), (10, 39), (10, logits_y), (sx - 80, logits_y)])
    edge([(sx, y + bh), (sx, y + bh + 16)])
    y += bh + 16
    box(sx - 60, y, 120, "loss")
    y += bh + 20
    legend = [("+", "a sum: going back, its gradient is copied to both inputs"),
              ("\u2460", f"X feeds {norm}\u2081 and the residual: \u2207X = \u2207R + \u2207X|{norm}\u2081"),
              ("\u2461", f"R feeds {norm}\u2082 and the residual: \u2207R = \u2207X\u2032 + \u2207R|{norm}\u2082"),
              ("\u2462", "W_te is used twice: \u2207W_te = \u2207W_te(in) + \u2207W_te(out)")]
    if not tied:  # W_te is read once: no third fork
        legend.pop()
    if llama:  # the forks inside the branches, which GPT-2's packed matrices hide inside one product
        legend += [("\u25cf", "inside: RMS\u2081 feeds W_Q, W_K, W_V and RMS\u2082 feeds W_gate, W_up: gradients add"),
                   ("\u25cf", "inside: a K/V head is read by its group of query heads: gradients add")]
    for mark, words in legend:
        out.append(text(8, y, mark, "", "middle"))
        out.append(text(20, y, esc(words), "tx"))
        y += 14
    out.append(text(4, y + 4, "Forward runs down; the gradient runs the same edges up.", "tx"))
    height = y + 12
    body = f'<path class="ed" d="{"".join(edges)}"/><path class="ah" d="{"".join(heads)}"/>' + "".join(out)
    words = "RMSNorm" if llama else "LayerNorm"
    desc = ("The forward computation as a graph, top to bottom: "
            + ("the token embeddings are X (no position table: positions enter attention as rotations); in "
               if llama else "the token and position embeddings are added into X; in ")
            + f"the block (repeated {layers} time{'s' if layers != 1 else ''}, each reading the previous block's "
            f"output as its X), X forks (1) into {words} 1 and attention and into the residual, which meet again in a "
            f"sum giving R; R forks (2) into {words} 2 and the feed-forward network and into the residual, which meet "
            f"in a sum giving the block's output X'. Then the final {words}, the logits, which use "
            + ("W_te a second time (3)" if tied else "an output matrix of their own, W_out (untied from W_te)")
            + ", and the loss. Going backwards, a sum copies its gradient to each input, and a value used in two "
            "places receives the sum of the two gradients."
            + (" Inside the branches, the first RMSNorm's output feeds the query, key and value projections, the "
               "second's the gate and up projections, and each key/value head is read by its group of query heads: "
               "there too the gradients add." if llama else ""))
    return chart("backward-graph", height, "Where gradients are copied and where they add", desc, body)


# --------------------------------------------------------------------------- attention before and after training


def attention_change(trace, layer: int = 0, head: int = 0, batch: int = 0) -> Svg:
    """One head's attention weights with the initial weights and after the training run, side by side."""
    before = np.asarray(trace[f"L{layer}.attn.weights"], dtype=float)[batch, head]
    after = np.asarray(trace[f"train.L{layer}.attn.weights.after"], dtype=float)[batch, head]
    n = before.shape[0]
    words = [isolate_plain(w) for w in trace.labels["inputs"][batch][:n]]
    labels = [shorten(f"{i} {w}", 10) for i, w in enumerate(words)]
    steps = trace.config["train_steps"]
    label_w = max(text_width(lab, 10) for lab in labels) + 6
    left = 4 + label_w
    gap = 14.0
    cell = max(6.0, min(26.0, (W - left - gap - 6) / (2 * n)))
    top = 44.0
    out = [text(4, 14, f"Layer {layer}, head {head}: attention before and after training", "tt")]
    cells = []
    after_label = f"after {counted(steps, 'step')}" if steps else "no training run"
    for k, (grid, name) in enumerate(((before, "initial weights"), (after, after_label))):
        x0 = left + k * (n * cell + gap)
        out.append(text(x0 + n * cell / 2, 34, esc(name), "tx", "middle"))
        out.append(rect(x0, top, n * cell, n * cell, "bg"))
        for q in range(n):
            for s in range(n):
                if s > q:
                    out.append(rect(x0 + s * cell, top + q * cell, cell, cell, "ms"))
                else:
                    cells.append((x0 + s * cell, top + q * cell, cell, cell, float(grid[q, s])))
    out.append('<g class="cells">' + _shaded_cells(cells) + "</g>")
    for i, lab in enumerate(labels):
        out.append(text(left - 4, top + i * cell + cell / 2 + 3.5, esc(lab), "tx", "end"))
    bottom = top + n * cell
    out.append(text(left, bottom + 13, "rows: query position; columns: key position", "tx"))
    out.append(_legend(4, bottom + 20, "0", "1", signed=False))
    height = bottom + 42
    last_b, last_a = int(np.argmax(before[n - 1])), int(np.argmax(after[n - 1]))
    peak_b = float(np.mean([before[q, : q + 1].max() for q in range(n)]))
    peak_a = float(np.mean([after[q, : q + 1].max() for q in range(n)]))
    desc = (f"Two {n}\u00d7{n} grids of attention weights for layer {layer}, head {head}, text {batch + 1}: with the "
            f"initial weights and {after_label}. The mean of each row's largest weight goes from "
            f"{sig(peak_b)} to {sig(peak_a)}. The last query ({words[n - 1]}) looks hardest at key {last_b} "
            f"({words[last_b]}, {sig(float(before[n - 1, last_b]))}) before and at key {last_a} ({words[last_a]}, "
            f"{sig(float(after[n - 1, last_a]))}) after. Cells above the diagonal are masked.")
    return chart("attention-change", height, f"Attention of layer {layer}, head {head}, before and after training",
                 desc, "".join(out))


# --------------------------------------------------------------------------- greedy text before and after training


def _text_words(trace, b: int) -> list[str]:
    return [w for w, y in zip(trace.labels["targets"][b], np.asarray(trace["targets"])[b]) if y >= 0]


def generation_reference(trace) -> int:
    """The training text (batch index) the trained model's greedy text agrees with most, the first on a tie: from
    <bos> alone a model can write only one of the texts."""
    vocab = trace.labels["vocab"]
    after = [vocab[int(i)] for i in np.asarray(trace["train.generate.after"])]
    hits = [sum(a == w for a, w in zip(after, _text_words(trace, b))) for b in range(len(trace.labels["inputs"]))]
    return int(np.argmax(hits))


def generation(trace) -> Svg:
    """Greedy text from the first input token (<bos>) with the initial and the trained weights, beside the training
    text it is closest to."""
    vocab = trace.labels["vocab"]
    before = [vocab[int(i)] for i in np.asarray(trace["train.generate.before"])]
    after = [vocab[int(i)] for i in np.asarray(trace["train.generate.after"])]
    n = len(before)
    ref_b = generation_reference(trace)
    text0 = _text_words(trace, ref_b)[:n]
    steps = trace.config["train_steps"]
    after_label = f"after {counted(steps, 'step')}" if steps else "no training run"
    rows = [(f"training text {ref_b + 1}", text0, None), ("initial weights", before, text0),
            (after_label, after, text0)]
    start = trace.labels["inputs"][0][0]  # the first input token: <bos>, or a checkpoint's <|endoftext|>
    drawn = "\u27e8bos\u27e9" if start == "<bos>" else isolate_plain(start)
    out = [text(4, 14, esc(f"Greedy text from {drawn}, before and after training"), "tt")]
    y = 26.0
    for label, words, ref in rows:
        out.append(text(4, y + 10, esc(label), "tx"))
        y += 16
        x = 4.0
        for j, w in enumerate(words):
            shown = shorten(isolate_plain(w), 14)
            wbox = max(22.0, text_width(shown, 11) + 10)
            if x + wbox > W - 4:
                x, y = 4.0, y + 26
            cls = "wd" if ref is None else ("gm" if j < len(ref) and w == ref[j] else "gx")
            out.append(rect(x, y, wbox, 20, cls, ' rx="3"'))
            out.append(text(x + wbox / 2, y + 14, esc(shown), "", "middle"))
            x += wbox + 4
        y += 30
    hit_b = sum(1 for j, w in enumerate(before) if j < len(text0) and w == text0[j])
    hit_a = sum(1 for j, w in enumerate(after) if j < len(text0) and w == text0[j])
    out.append(rect(4, y, 12, 12, "gm", ' rx="2"'))
    out.append(text(20, y + 10, "the same word as the text at that place", "tx"))
    height = y + 20
    times = "once" if n == 1 else f"{n} times"
    desc = (f"Starting from {drawn} alone and appending the most likely next word {times}: with the initial "
            f"weights the model writes \u201c{' '.join(isolate_plain(w) for w in before)}\u201d ({hit_b} of "
            f"{counted(n, 'word')} "
            f"as in training text {ref_b + 1}), {after_label} \u201c"
            f"{' '.join(isolate_plain(w) for w in after)}\u201d ({hit_a} of {n}). Training text {ref_b + 1} is \u201c"
            f"{' '.join(isolate_plain(w) for w in text0)}\u201d.")
    return chart("generation", height, f"Greedy text from {start}, before and after training", desc, "".join(out))


# --------------------------------------------------------------------------- the update of one tensor


def update_heatmap(trace, name: str, max_cells: int = 96) -> Svg:
    """Δθ/η of one parameter tensor as a grid: blue up, red down, white unmoved; a 1-D tensor is one row."""
    initial = np.asarray(trace[name], dtype=float)
    rec = trace.record(name)
    lr = float(trace.config["optimizer"]["lr"])
    delta = (np.asarray(trace["updated." + name], dtype=float) - initial) / lr
    grid = delta if delta.ndim == 2 else delta[None, :]
    rows_axis, cols_axis = (rec.axes if delta.ndim == 2 else ("", rec.axes[0]))
    pooled = ""
    r_step, c_step = math.ceil(grid.shape[0] / max_cells), math.ceil(grid.shape[1] / max_cells)
    if r_step > 1 or c_step > 1:  # a big tensor: each cell is the mean of a block of r_step x c_step elements
        rr, cc = math.ceil(grid.shape[0] / r_step), math.ceil(grid.shape[1] / c_step)
        pad = np.full((rr * r_step, cc * c_step), np.nan)
        pad[: grid.shape[0], : grid.shape[1]] = grid
        grid = np.nanmean(pad.reshape(rr, r_step, cc, c_step), axis=(1, 3))
        pooled = f" (each cell: the mean of a {r_step} \u00d7 {c_step} block)"
    nr, nc = grid.shape
    peak = float(np.abs(delta).max()) or 1.0
    left = 34.0
    cell = max(2.0, min(18.0, (W - left - 8) / nc))
    ch = cell if delta.ndim == 2 else max(cell, 12.0)
    top = 40.0
    out = [text(4, 14, f"\u0394\u03b8/\u03b7 of {name}", "tt")]
    out.append(text(4, 28, esc(f"{' × '.join(map(str, initial.shape))} ({', '.join(rec.axes)}){pooled}"), "tx"))
    out.append(rect(left, top, nc * cell, nr * ch, "bg"))
    cells = [(left + j * cell, top + i * ch, cell, ch, float(grid[i, j]) / peak) for i in range(nr) for j in range(nc)]
    out.append('<g class="cells">' + _shaded_cells(cells) + "</g>")
    if rows_axis:
        out.append(text(left - 4, top + 9, "0", "tx", "end"))
        out.append(text(left - 4, top + nr * ch, str(initial.shape[0] - 1), "tx", "end"))
        mid = top + nr * ch / 2
        out.append(text(10, mid, esc(rows_axis), "tx", "middle", f' transform="rotate(-90 10 {coord(mid)})"'))
    bottom = top + nr * ch
    out.append(text(left, bottom + 12, "0", "tx"))
    out.append(text(left + nc * cell, bottom + 12, str(initial.shape[-1] - 1), "tx", "end"))
    out.append(text(left + nc * cell / 2, bottom + 12, esc(cols_axis), "tx", "middle"))
    out.append(_legend(4, bottom + 20, chart_fixed(-peak, 2), chart_fixed(peak, 2)))
    height = bottom + 42
    near = int((np.abs(np.abs(delta) - 1) <= 0.01).sum())
    still = int((delta == 0).sum())
    desc = (f"The change of every element of {name} in this step, divided by the learning rate {sig(lr)}: "
            f"{delta.size} values from {sig(float(delta.min()))} to {sig(float(delta.max()))}, drawn from red (down) "
            f"through white to blue (up), full colour at {sig(peak)}{pooled}. {near} of them are within 1% of \u00b11, "
            f"{int((delta > 0).sum())} went up, {int((delta < 0).sum())} down and {still} did not move.")
    return chart("update", height, f"Change of {name} in units of the learning rate", desc, "".join(out))
