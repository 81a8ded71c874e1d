"""Plots drawn from a trace: attention heatmaps, bars, a histogram, loss curves, before/after probabilities, and
the raster heatmap of any matrix (`heat_png`, the picture beside a big or wide table).

Every function is pure: the same trace gives a byte-identical string (see charts/__init__.py for the rules
every chart follows).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from site_build.charts.svg import Svg, W, chart, esc, rect, shorten, text, text_width, ticks
from site_build.format import chart_fixed, coord, counted, isolate_plain, opacity, sig

IGNORED = "<ignored>"
# The picture of a matrix has at most this many pixels down and across; a bigger matrix is downsampled: each
# pixel shows the value of largest magnitude of its block (so no outlier disappears), and the page says so.
HEAT_ROWS = 256
HEAT_COLS = 384
HEAT_LEVELS = 16  # shades per sign; a pixel's opacity is |value| / largest |value|, in sixteenths
# The raster's colours: --pos and --neg of the palette (style.css) half-way between their light and dark values,
# drawn with the opacity of the shade, so the page's background shows through in either theme.
HEAT_POS = (63, 122, 223)
HEAT_NEG = (228, 82, 65)
HEAT_MASKED = (150, 158, 168, 110)
# An attention heatmap with more tokens than this draws its grid as one raster image (heat_png) instead of a
# rectangle per cell: 64 tokens would be 4,096 rectangles a head.
MAX_RECT_TOKENS = 24
POOL_SLICE = 1 << 18  # values `pooled` reads at a time (2 MB)

_LAYER = re.compile(r"L(\d+)\.")


def blocks(rows: int, cols: int, max_rows: int = HEAT_ROWS, max_cols: int = HEAT_COLS) -> tuple[int, int]:
    """The block (rows, cols) each heatmap pixel stands for, so that rows × cols values fit max_rows × max_cols."""
    return max(1, math.ceil(rows / max_rows)), max(1, math.ceil(cols / max_cols))


def pooled(values: np.ndarray, max_rows: int = HEAT_ROWS, max_cols: int = HEAT_COLS
           ) -> tuple[np.ndarray, tuple[int, int]]:
    """A 2-D array as at most max_rows × max_cols values, and the block size (rows, cols) each one stands for.

    Each value is the one of largest magnitude in its block (the last block of an axis may be smaller); a block
    whose values are all non-finite (the causal mask's −∞) stays −∞.
    """
    rows, cols = values.shape
    bh, bw = blocks(rows, cols, max_rows, max_cols)
    if bh == 1 and bw == 1:
        return np.asarray(values, dtype=float), (1, 1)
    r0, c0 = np.arange(0, rows, bh), np.arange(0, cols, bw)
    pooled_finite = _pool_finite(values, bh, c0)
    if pooled_finite is not None:
        hi, lo = pooled_finite
    else:  # small records only (attention's mask): NaN marks what is left out, fmax/fmin skip it
        clean = np.where(np.isfinite(values), values, np.nan)
        hi = np.fmax.reduceat(np.fmax.reduceat(clean, r0, axis=0), c0, axis=1)
        lo = np.fmin.reduceat(np.fmin.reduceat(clean, r0, axis=0), c0, axis=1)
    out = np.where(np.abs(hi) >= np.abs(lo), hi, lo).astype(float)
    out[np.isnan(out)] = -np.inf
    return out, (bh, bw)


def _pool_finite(values: np.ndarray, bh: int, c0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest and smallest value of each block, a few block rows at a time (so a memory-mapped 50,257 × 768
    table is read from memory once, and each slice's passes hit the cache); None if a value is not finite."""
    rows, cols = values.shape
    step = bh * max(1, POOL_SLICE // max(1, bh * cols))
    his, los = [], []
    for start in range(0, rows, step):
        part = np.asarray(values[start:start + step])
        if part.dtype.kind == "f" and not np.isfinite(part.sum()):
            return None
        starts = np.arange(0, len(part), bh)
        his.append(np.maximum.reduceat(np.maximum.reduceat(part, starts, axis=0), c0, axis=1))
        los.append(np.minimum.reduceat(np.minimum.reduceat(part, starts, axis=0), c0, axis=1))
    return np.concatenate(his), np.concatenate(los)


def heat_png(values: np.ndarray) -> bytes:
    """A 2-D array as a PNG heatmap, one pixel per value (downsampled by `pooled` past HEAT_ROWS × HEAT_COLS).

    Colour: blue for positive, red for negative, opacity |value| / largest |value| in HEAT_LEVELS steps; zero is
    transparent, a masked (non-finite) value grey. A palette image (one byte a pixel before compression), so a
    full-size one is tens of KB.
    """
    grid, _ = pooled(np.asarray(values) if np.ndim(values) == 2 else np.asarray(values).reshape(1, -1))
    finite = np.isfinite(grid)
    peak = float(np.abs(grid[finite]).max()) if finite.any() else 0.0
    level = np.zeros(grid.shape, dtype=np.uint8)
    if peak > 0:
        mag = np.ceil(HEAT_LEVELS * np.abs(np.where(finite, grid, 0.0)) / peak).clip(0, HEAT_LEVELS).astype(np.uint8)
        level = np.where(grid > 0, mag, np.where(grid < 0, mag + HEAT_LEVELS, 0)).astype(np.uint8)
        level[(grid < 0) & (mag == 0)] = 0
    level[~finite] = 2 * HEAT_LEVELS + 1
    palette, alpha = [(0, 0, 0)], [0]
    for colour in (HEAT_POS, HEAT_NEG):
        for k in range(1, HEAT_LEVELS + 1):
            palette.append(colour)
            alpha.append(round(255 * k / HEAT_LEVELS))
    palette.append(HEAT_MASKED[:3])
    alpha.append(HEAT_MASKED[3])
    h, w = level.shape
    raw = np.zeros((h, w + 1), dtype=np.uint8)  # each row: filter type 0, then the palette indices
    raw[:, 1:] = level
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + _png_chunk(b"PLTE", bytes(c for rgb in palette for c in rgb)) + _png_chunk(b"tRNS", bytes(alpha))
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def heatmap(trace, name: str, head: int, batch: int = 0, raster: str = "") -> Svg:
    """One head of a (batch, heads, tokens, keys) record as a grid: queries down, keys across.

    Cells where the key comes after the query (the causal mask) are hatched and carry class `ms`;
    signed records (gradients) use a diverging scale, others a single colour from 0 to the maximum.
    Past MAX_RECT_TOKENS tokens the grid is one raster image under the hatched mask, and every k-th token is
    labelled: `raster` is where the site keeps that image (`heat_png` of the head, at the path the caller names:
    charts draw, they do not name the site's files).
    """
    record = trace.record(name)
    values = np.asarray(record.value, dtype=float)
    if values.ndim != 4:
        raise ValueError(f"heatmap: {name} has axes {record.axes}, expected (batch, heads, tokens, keys)")
    grid = values[batch, head]
    n = grid.shape[0]
    words = [isolate_plain(w) for w in trace.labels["inputs"][batch]]
    labels = [shorten(f"{i} {w}", 12) for i, w in enumerate(words[:n])]
    masked = np.triu(np.ones((n, n), dtype=bool), k=1)
    visible = grid[~masked]
    signed = name.startswith("grad.") or bool((visible < 0).any())
    peak = float(np.abs(visible).max()) if visible.size else 0.0
    scale = peak or 1.0
    decimals = max(2, (2 if signed else 1) - math.floor(math.log10(scale)))

    is_raster = n > MAX_RECT_TOKENS
    if is_raster and not raster:
        raise ValueError(f"heatmap: {n} tokens are drawn as an image; give its site path (raster=)")
    left = 16 + max(text_width(lab, 10) for lab in labels) + 6
    cell = (W - left - 8) / n if is_raster else int(max(14, min(44, (W - left - 8) // n)))
    every = math.ceil(11 / cell) if is_raster else 1  # label every k-th token where the cells are small
    top = 26
    gw = cell * n
    show_values = cell >= 30
    value_size = 9 if cell >= 40 else 8

    out = [text(4, 14, esc(_heatmap_title(name, head)), "tt")]
    out.append(rect(left, top, gw, gw, "bg"))
    hatch = []
    if is_raster:
        href = esc(raster)
        out.append(f'<image class="px" href="{href}" x="{coord(left)}" y="{coord(top)}" width="{coord(gw)}" '
                   f'height="{coord(gw)}" preserveAspectRatio="none"/>')
        stairs = "".join(f"L{coord(left + (q + 1) * cell)} {coord(top + q * cell)}"
                         f"L{coord(left + (q + 1) * cell)} {coord(top + (q + 1) * cell)}" for q in range(n - 1))
        out.append(f'<path class="ms" d="M{coord(left + cell)} {coord(top)}L{coord(left + gw)} {coord(top)}'
                   f'L{coord(left + gw)} {coord(top + gw - cell)}{stairs}Z"/>')
    else:
        out.append('<g class="cells">')
        for q in range(n):
            for k in range(n):
                x, y = left + k * cell, top + q * cell
                if masked[q, k]:
                    out.append(rect(x, y, cell, cell, "ms"))
                    hatch.append(f"M{coord(x)} {coord(y + cell / 2)}L{coord(x + cell / 2)} {coord(y)}"
                                 f"M{coord(x)} {coord(y + cell)}L{coord(x + cell)} {coord(y)}"
                                 f"M{coord(x + cell / 2)} {coord(y + cell)}L{coord(x + cell)} {coord(y + cell / 2)}")
                    continue
                v = float(grid[q, k])
                strength = min(1.0, abs(v) / scale)
                cls = "ne" if v < 0 else "po"
                out.append(rect(x, y, cell, cell, cls, f' fill-opacity="{opacity(strength)}"'))
                if show_values:
                    vcls = ("va" if value_size == 9 else "va xs") + (" hi" if strength > 0.6 else "")
                    out.append(text(x + cell / 2, y + cell / 2 + value_size * 0.35, chart_fixed(v, decimals), vcls))
        out.append("</g>")
    if hatch:
        out.append(f'<path class="ht" d="{"".join(hatch)}"/>')
    labels = [lab if i % every == 0 else "" for i, lab in enumerate(labels)]
    # axes: query labels on the left, key labels rotated under the grid
    for i, lab in enumerate(labels):
        if lab:
            out.append(text(left - 4, top + i * cell + cell / 2 + 3.5, esc(lab), "tx", "end"))
    bottom = top + gw
    for i, lab in enumerate(labels):
        if not lab:
            continue
        x = left + i * cell + cell / 2 + 3
        turn = f' transform="rotate(-50 {coord(x)} {coord(bottom + 8)})"'
        out.append(text(x, bottom + 8, esc(lab), "tx", "end", turn))
    drop = max(text_width(lab, 10) for lab in labels if lab) * 0.77 + 10
    axis_y = bottom + drop + 14
    out.append(text(left + gw / 2, axis_y, "key position (token)", "", "middle"))
    mid = top + gw / 2
    out.append(text(11, mid, "query position (token)", "", "middle", f' transform="rotate(-90 11 {coord(mid)})"'))
    # legend
    ly = axis_y + 14
    sw = 16
    if signed:
        steps = [(-1.0, "ne"), (-0.5, "ne"), (0.0, "bg"), (0.5, "po"), (1.0, "po")]
        lo_text, hi_text = chart_fixed(-scale, decimals), chart_fixed(scale, decimals)
    else:
        steps = [(0.0, "bg"), (0.25, "po"), (0.5, "po"), (0.75, "po"), (1.0, "po")]
        lo_text, hi_text = chart_fixed(0, decimals), chart_fixed(scale, decimals)
    out.append(text(4, ly + 11, "scale", "tx"))
    out.append(text(40, ly + 11, lo_text, "tx"))
    x0 = 44 + text_width(lo_text, 10)
    for i, (s, cls) in enumerate(steps):
        extra = f' fill-opacity="{opacity(abs(s))}"' if cls != "bg" else ""
        out.append(rect(x0 + i * sw, ly, sw, 14, cls, extra))
    out.append(text(x0 + len(steps) * sw + 4, ly + 11, hi_text, "tx"))
    mx, ly = 4.0, ly + 20
    out.append(rect(mx, ly, 14, 14, "ms"))
    out.append(f'<path class="ht" d="M{coord(mx)} {coord(ly + 7)}L{coord(mx + 7)} {coord(ly)}'
               f'M{coord(mx)} {coord(ly + 14)}L{coord(mx + 14)} {coord(ly)}'
               f'M{coord(mx + 7)} {coord(ly + 14)}L{coord(mx + 14)} {coord(ly + 7)}"/>')
    out.append(text(mx + 18, ly + 11, "masked (key after query)", "tx"))
    lo_v = float(visible.min()) if visible.size else 0.0
    hi_v = float(visible.max()) if visible.size else 0.0
    ry = ly + 30
    out.append(text(4, ry, f"values from {chart_fixed(lo_v, decimals)} to {chart_fixed(hi_v, decimals)}", "tx"))
    height = ry + 8
    desc = _heatmap_desc(name, head, batch, words[:n], grid, masked, signed, decimals, lo_v, hi_v)
    return chart("heatmap", height, _heatmap_title(name, head), desc, "".join(out))


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
    sentence = " ".join(words)
    kind = "largest magnitude" if signed else "largest value"
    lo, hi = chart_fixed(lo_v, decimals), chart_fixed(hi_v, decimals)
    spread = f"Values range from {lo} to {hi}; the" if lo != hi else f"Every value is {lo}; the"
    desc = (f"{_heatmap_title(name, head)} for the {counted(n, 'token')} of text {batch + 1} ({sentence}): one row "
            f"per query position, one column per key position. {spread} {kind} is "
            f"{chart_fixed(float(grid[q, k]), decimals)}, where query {q} ({words[q]}) meets key {k} ({words[k]}).")
    if name.endswith("attn.weights") and not name.startswith("grad."):
        last = grid[n - 1]
        desc += (f" The last query ({words[n - 1]}) gives most weight to key {int(np.argmax(last))} "
                 f"({words[int(np.argmax(last))]}), {chart_fixed(float(last.max()), decimals)}.")
    hidden = int(masked.sum())
    desc += (f" The {counted(hidden, 'cell')} above the diagonal, where the key comes after the query, "
             f"{'is' if hidden == 1 else 'are'} masked: the causal mask fixes their weight at 0." if hidden else
             " No cell lies above the diagonal: the causal mask hides nothing.")
    return desc


# --------------------------------------------------------------------------- bars


def grad_norms(trace) -> list[tuple[str, float, float]]:
    """Per parameter tensor (HF order): (record name, L2 norm of its gradient, largest |gradient|)."""
    items = []
    for entry in trace.index.values():
        if isinstance(entry, Mapping):
            g = np.asarray(trace[entry["grad"]], dtype=float)
            items.append((entry["initial"], float(np.linalg.norm(g)), float(np.abs(g).max())))
            trace.release([entry["grad"]])
    return items


def update_sizes(trace) -> list[tuple[str, float, float]]:
    """Per parameter tensor (HF order): (record name, L2 norm of updated - initial, largest |update|)."""
    items = []
    for entry in trace.index.values():
        if isinstance(entry, Mapping):
            u = np.asarray(trace[entry["updated"]], dtype=float) - np.asarray(trace[entry["initial"]], dtype=float)
            trace.release([entry["updated"], entry["initial"]])
            items.append((entry["initial"], float(np.linalg.norm(u)), float(np.abs(u).max())))
    return items


def all_updates(trace, per_lr: bool = False) -> np.ndarray:
    """Every parameter's update (updated - initial) in HF order, flattened; |update| / lr with per_lr."""
    parts = list(update_parts(trace, per_lr)())
    return np.concatenate(parts) if parts else np.zeros(0)


def update_parts(trace, per_lr: bool = False) -> Callable[[], Iterator[np.ndarray]]:
    """all_updates a tensor at a time, each time it is called (for `histogram`)."""
    lr = float(trace.config["optimizer"]["lr"])

    def parts() -> Iterator[np.ndarray]:
        for entry in trace.index.values():
            if isinstance(entry, Mapping):
                u = np.asarray(trace[entry["updated"]], dtype=float) - np.asarray(trace[entry["initial"]], dtype=float)
                trace.release([entry["updated"], entry["initial"]])  # a big run's pages, read once
                if per_lr:  # |u| / lr, in place (the same numbers as np.abs(u) / lr, without two more copies)
                    np.abs(u, out=u)
                    np.divide(u, lr, out=u)
                yield u.ravel()

    return parts


def bars(items: Sequence[tuple], title: str, unit: str,
         series: Sequence[str] = ("L2 norm", "largest |value|")) -> Svg:
    """Horizontal bars, one row per item: (label, value) or (label, value1, value2) for two series."""
    rows = [(str(item[0]), [float(v) for v in item[1:]]) for item in items]
    if not rows:
        raise ValueError("bars: no items")
    count = len(rows[0][1])
    names = list(series)[:count] if count > 1 else [unit]
    labels = [shorten(label, 26) for label, _ in rows]
    left = min(170.0, max(text_width(lab, 10) for lab in labels) + 10)
    values = [v for _, vs in rows for v in vs]
    lo, hi, marks, dec = ticks(min(0.0, min(values)), max(0.0, max(values)), 4)
    right = W - 52
    span = hi - lo

    def sx(v: float) -> float:
        return left + (v - lo) / span * (right - left)

    bar_h = 8.0 if count > 1 else 12.0
    pitch = count * (bar_h + 1) + 7
    top = 30.0 if count == 1 else 44.0
    out = [text(4, 14, esc(title), "tt")]
    if count > 1:
        x = 4.0
        for i, nm in enumerate(names):
            out.append(rect(x, 22, 12, 10, f"b{i + 1}"))
            out.append(text(x + 16, 31, esc(nm), "tx"))
            x += 28 + text_width(nm, 10)
    plot_h = pitch * len(rows)
    grid = []
    for t in marks:
        x = sx(t)
        grid.append(f"M{coord(x)} {coord(top - 4)}V{coord(top + plot_h)}")
        out.append(text(x, top + plot_h + 12, chart_fixed(t, dec), "tx", "middle"))
    out.insert(1, f'<path class="gr" d="{"".join(grid)}"/>')
    for r, (_, vs) in enumerate(rows):
        y = top + r * pitch
        out.append(text(left - 5, y + count * (bar_h + 1) / 2 + 3, esc(labels[r]), "", "end"))
        for i, v in enumerate(vs):
            x0, x1 = sorted((sx(0), sx(v)))
            by = y + i * (bar_h + 1)
            out.append(rect(x0, by, max(x1 - x0, 0.5), bar_h, f"b{i + 1}"))
            out.append(text(max(x1, sx(0)) + 3, by + bar_h - 1, sig(v), "tx sm"))
    axis_y = top + plot_h
    out.append(f'<path class="ax" d="M{coord(sx(0))} {coord(top - 4)}V{coord(axis_y)}"/>')
    out.append(text((left + right) / 2, axis_y + 28, esc(unit), "", "middle"))
    height = axis_y + 36
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][1][0], i))
    big, small = rows[order[0]], rows[order[-1]]
    first = names[0]
    listing = "; ".join(f"{label}: " + ", ".join(f"{nm} {sig(v)}" for nm, v in zip(names, vs)) for label, vs in rows)
    desc = (f"{title}, in {unit}. Largest {first}: {big[0]} ({sig(big[1][0])}); smallest: {small[0]} "
            f"({sig(small[1][0])}). All values: {listing}.")
    return chart("bars", height, title, desc, "".join(out))


# --------------------------------------------------------------------------- histogram


@dataclass(frozen=True)
class Counted:
    """What a histogram shows of its values (`count`): the bins, the axis and the summary figures."""

    counts: np.ndarray
    edges: np.ndarray
    lo: float  # the axis
    hi: float
    xticks: list[float]
    xdec: int
    n: int
    lo_v: float  # the values
    hi_v: float
    mean: float
    median: float


def count(values, bins: int) -> Counted:
    """`values` in `bins` equal bins over a rounded range, with their mean and exact median.

    `values` is an array, or a function giving the values as several arrays (every parameter's update, a tensor
    at a time). Up to WHOLE_MAX values, the arrays are gathered; past it, the function is called twice: once for
    the count, the range and the sum, then to fill one array of them all, which is counted and partitioned in place
    for the median (GPT-2's 124M updates are held once, a tensor at a time beside them)."""
    parts = values if callable(values) else (lambda: iter([np.asarray(values, dtype=float).ravel()]))
    lo_v, hi_v, n, sums = math.inf, -math.inf, 0, []
    kept: list[np.ndarray] = []
    for part in parts():
        if part.size:
            lo_v, hi_v, n = min(lo_v, float(part.min())), max(hi_v, float(part.max())), n + part.size
            sums.append(float(part.sum()))
            if n <= WHOLE_MAX:
                kept.append(part)
            else:
                kept.clear()
    if n == 0:
        raise ValueError("histogram: no values")
    lo_r, hi_r = (lo_v, hi_v) if hi_v > lo_v else (lo_v - 0.5, hi_v + 0.5)
    lo, hi, xticks, xdec = ticks(lo_r, hi_r, 4)
    mean = math.fsum(sums) / n
    if n <= WHOLE_MAX:
        data = np.concatenate(kept)
        mean = float(data.mean())
    else:
        data, at = np.empty(n), 0
        for part in parts():
            data[at:at + part.size] = part
            at += part.size
    counts, edges = np.histogram(data, bins=bins, range=(lo, hi))
    if n <= WHOLE_MAX:
        median = float(np.median(data))
    else:
        ranks = sorted({(n - 1) // 2, n // 2})
        data.partition(ranks)
        median = sum(float(data[r]) for r in ranks) / len(ranks)
    return Counted(counts, edges, lo, hi, xticks, xdec, n, lo_v, hi_v, mean, median)


def histogram(values, bins: int, title: str, unit: str, counted: Counted | None = None) -> Svg:
    """The distribution of `values` in `bins` equal bins: counts up, values across (`counted`: `count(values,
    bins)` worked out already)."""
    h = counted or count(values, bins)
    counts, edges, lo, hi, xticks, xdec, n = h.counts, h.edges, h.lo, h.hi, h.xticks, h.xdec, h.n
    _, ctop, yticks, _ = ticks(0, float(counts.max()), 4)
    yticks = [t for t in yticks if float(t).is_integer()]
    left, right, top, bottom = 50.0, W - 12.0, 28.0, 178.0

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    def sy(c: float) -> float:
        return bottom - c / ctop * (bottom - top)

    out = [text(4, 14, esc(title), "tt")]
    grid = "".join(f"M{coord(left)} {coord(sy(t))}H{coord(right)}" for t in yticks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t in yticks:
        out.append(text(left - 4, sy(t) + 3.5, str(int(t)), "tx", "end"))
    for t in xticks:
        out.append(text(sx(t), bottom + 13, chart_fixed(t, xdec), "tx", "middle"))
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c:
            out.append(rect(sx(a), sy(c), max(sx(b) - sx(a) - 0.5, 0.5), bottom - sy(c), "b1"))
    out.append(f'<path class="ax" d="M{coord(left)} {coord(top - 4)}V{coord(bottom)}H{coord(right)}"/>')
    out.append(text((left + right) / 2, bottom + 30, esc(unit), "", "middle"))
    mid = (top + bottom) / 2
    out.append(text(12, mid, "count", "", "middle", f' transform="rotate(-90 12 {coord(mid)})"'))
    height = bottom + 38
    peak = int(np.argmax(counts))
    mean, median = h.mean, h.median
    desc = (f"{title}: {n} values in {unit}, from {sig(h.lo_v)} to {sig(h.hi_v)}, "
            f"mean {sig(mean)}, "
            f"median {sig(median)}, in {bins} bins of width {sig(float(edges[1] - edges[0]))}. "
            f"The fullest bin, {sig(float(edges[peak]))} to {sig(float(edges[peak + 1]))}, holds {int(counts[peak])} "
            f"values.")
    return chart("histogram", height, title, desc, "".join(out))


WHOLE_MAX = 1 << 22  # values whose mean and median are taken over all at once; past it, see `count`


# --------------------------------------------------------------------------- line


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    a, b = math.floor(math.log10(lo) + 1e-12), math.ceil(math.log10(hi) - 1e-12)
    if b == a:
        b += 1
    marks = []
    for k in range(a, b + 1):
        mults = (1,) if b - a > 2 else (1, 2, 5)
        marks += [m * 10.0**k for m in mults if m * 10.0**k <= 10.0**b * (1 + 1e-9)]
    return 10.0**a, 10.0**b, marks


def _tick_label(t: float) -> str:
    exp = math.floor(math.log10(t) + 1e-9)
    return chart_fixed(t, max(0, -exp)) if exp > -6 else f"{t:.0e}"


def line(xs, ys, title: str, xlabel: str, ylabel: str, log: bool = False) -> Svg:
    """A curve with numbered ticks on both axes; `log=True` uses a logarithmic y axis."""
    x = np.asarray(xs, dtype=float).ravel()
    y = np.asarray(ys, dtype=float).ravel()
    if x.size != y.size or x.size == 0:
        raise ValueError("line: xs and ys must be non-empty and of the same length")
    if log and (y <= 0).any():
        raise ValueError("line: a log scale needs positive values")
    xlo, xhi, xticks, xdec = ticks(float(x.min()), float(x.max()), 5)
    if log:
        ylo, yhi, yticks = _log_ticks(float(y.min()), float(y.max()))
        ylabels = [_tick_label(t) for t in yticks]
        f = math.log10
    else:
        ylo, yhi, yticks, ydec = ticks(min(0.0, float(y.min())), float(y.max()), 5)
        ylabels = [chart_fixed(t, ydec) for t in yticks]

        def f(v: float) -> float:
            return v

    left, right, top, bottom = 54.0, W - 14.0, 30.0, 186.0
    flo, fhi = f(ylo), f(yhi)

    def sx(v: float) -> float:
        return left + (v - xlo) / (xhi - xlo) * (right - left)

    def sy(v: float) -> float:
        return bottom - (f(v) - flo) / (fhi - flo) * (bottom - top)

    out = [text(4, 14, esc(title + (" (log scale)" if log else "")), "tt")]
    grid = "".join(f"M{coord(left)} {coord(sy(t))}H{coord(right)}" for t in yticks)
    grid += "".join(f"M{coord(sx(t))} {coord(top)}V{coord(bottom)}" for t in xticks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t, lab in zip(yticks, ylabels):
        out.append(text(left - 4, sy(t) + 3.5, lab, "tx", "end"))
    for t in xticks:
        out.append(text(sx(t), bottom + 13, chart_fixed(t, xdec), "tx", "middle"))
    points = " ".join(f"{coord(sx(a))},{coord(sy(b))}" for a, b in zip(x, y))
    out.append(f'<polyline class="ln" points="{points}"/>')
    for i, anchor in ((0, "start"), (x.size - 1, "end")):
        px, py = sx(float(x[i])), sy(float(y[i]))
        out.append(f'<circle class="pt" cx="{coord(px)}" cy="{coord(py)}" r="3"/>')
        ty = py - 7 if py > top + 14 else py + 14
        out.append(text(px + (5 if anchor == "start" else -5), ty, sig(float(y[i])), "", anchor))
    out.append(f'<path class="ax" d="M{coord(left)} {coord(top)}V{coord(bottom)}H{coord(right)}"/>')
    out.append(text((left + right) / 2, bottom + 30, esc(xlabel), "", "middle"))
    mid = (top + bottom) / 2
    out.append(text(12, mid, esc(ylabel), "", "middle", f' transform="rotate(-90 12 {coord(mid)})"'))
    height = bottom + 38
    low = int(np.argmin(y))
    desc = (f"{title}{' on a log scale' if log else ''}: {ylabel} against {xlabel} for {x.size} points, "
            f"{sig(float(y[0]))} at {sig(float(x[0]))} and {sig(float(y[-1]))} at {sig(float(x[-1]))}; "
            f"lowest {sig(float(y[low]))} at {sig(float(x[low]))}, highest {sig(float(y.max()))}.")
    return chart("line", height, title + (" (log scale)" if log else ""), desc, "".join(out))


def loss_curves(trace) -> Svg:
    """The training-run loss, linear, with the log-scale version in a <details> (works without JavaScript); the
    linear one alone when the loss reaches exactly 0 (a large learning rate on a short text can), which no log
    scale shows."""
    losses = np.asarray(trace["train.loss"], dtype=float)
    steps = np.arange(losses.size)
    title = f"Loss over {counted(losses.size - 1, 'training step')}"
    args = (steps, losses, title, "training step", "loss (nats)")
    linear = line(*args)
    if not (losses > 0).all():
        return linear
    return Svg(linear + '<details class="chart-log"><summary>Log scale</summary>' + line(*args, log=True)
               + "</details>", linear.title)


# --------------------------------------------------------------------------- before / after


def before_after(trace) -> Svg:
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
    labels = [shorten(r[0], 24) for r in rows]
    left = min(160.0, max(text_width(lab, 10) for lab in labels) + 10)
    right = W - 44
    bar_h, pitch, top = 8.0, 25.0, 44.0

    def sx(v: float) -> float:
        return left + v * (right - left)

    title = f"Probability of the correct next word, before and after {counted(steps, 'step')}"
    out = [text(4, 14, "Probability of the correct next word", "tt")]
    x = 4.0
    for cls, nm in (("b1", "before training"), ("b2", f"after {counted(steps, 'step')}")):
        out.append(rect(x, 22, 12, 10, cls))
        out.append(text(x + 16, 31, esc(nm), "tx"))
        x += 28 + text_width(nm, 10)
    plot_h = pitch * len(rows)
    marks = [0.0, 0.25, 0.5, 0.75, 1.0]
    grid = "".join(f"M{coord(sx(t))} {coord(top - 4)}V{coord(top + plot_h)}" for t in marks)
    out.append(f'<path class="gr" d="{grid}"/>')
    for t in marks:
        out.append(text(sx(t), top + plot_h + 12, chart_fixed(t, 2), "tx", "middle"))
    for r, (_, p0, p1) in enumerate(rows):
        y = top + r * pitch
        out.append(text(left - 5, y + bar_h + 3, esc(labels[r]), "", "end"))
        for i, p in enumerate((p0, p1)):
            by = y + i * (bar_h + 1)
            out.append(rect(left, by, max(sx(p) - left, 0.5), bar_h, f"b{i + 1}"))
            out.append(text(sx(p) + 3, by + bar_h - 1, chart_fixed(p, 3), "tx sm"))
    axis_y = top + plot_h
    out.append(f'<path class="ax" d="M{coord(left)} {coord(top - 4)}V{coord(axis_y)}"/>')
    out.append(text((left + right) / 2, axis_y + 28, "probability of the correct next word (0 to 1)", "", "middle"))
    height = axis_y + 36
    if not rows:
        raise ValueError("before_after: every target is ignored")
    mean0 = sum(r[1] for r in rows) / len(rows)
    mean1 = sum(r[2] for r in rows) / len(rows)
    listing = "; ".join(f"{label}: {chart_fixed(p0, 3)} before, {chart_fixed(p1, 3)} after" for label, p0, p1 in rows)
    desc = (f"{title}, for {counted(len(rows), 'prediction')} (input word \u2192 correct next word). Mean probability "
            f"{chart_fixed(mean0, 3)} before and {chart_fixed(mean1, 3)} after. {listing}.")
    return chart("before-after", height, title, desc, "".join(out))
