"""Drawing primitives every chart shares: text, rectangles, arrows, nice axis ticks and the <svg> wrapper.

Every function is pure and returns a string; text passed to `text` must already be escaped (`esc`).
"""

from __future__ import annotations

import hashlib
import math
from html import escape

from site_build.format import coord

W = 360  # viewBox width of every chart
CHAR = 0.6  # average glyph width as a fraction of the font size, for layout estimates


def esc(value: object) -> str:
    """Escape any text for SVG/HTML content and attribute values."""
    return escape(str(value), quote=True)


def shorten(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def text_width(label: str, size: float) -> float:
    return len(label) * size * CHAR


def dims(*sizes: int) -> str:
    return "\u00d7".join(str(d) for d in sizes)


def text(x: float, y: float, content: str, cls: str = "", anchor: str = "", extra: str = "") -> str:
    """A text element; `content` must already be escaped."""
    attrs = f' class="{cls}"' if cls else ""
    if anchor:
        attrs += f' text-anchor="{anchor}"'
    return f'<text x="{coord(x)}" y="{coord(y)}"{attrs}{extra}>{content}</text>'


def rect(x: float, y: float, w: float, h: float, cls: str, extra: str = "") -> str:
    return f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(w)}" height="{coord(h)}" class="{cls}"{extra}/>'


class Svg(str):
    """A chart's SVG, which knows its title (the notebook names the chart by it)."""

    title: str

    def __new__(cls, text: str, title: str) -> Svg:
        svg = super().__new__(cls, text)
        svg.title = title
        return svg


def chart(kind: str, height: float, title: str, desc: str, body: str, role: str = "img") -> Svg:
    """Wrap a chart body: viewBox, role, and an escaped title and description referenced by id."""
    digest = hashlib.sha1(f"{title}\n{desc}\n{body}".encode()).hexdigest()[:8]
    uid = f"chart-{kind}-{digest}"
    return Svg(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" viewBox="0 0 {W} {coord(height)}" '
        f'width="100%" role="{role}" aria-labelledby="{uid}-t {uid}-d">'
        f'<title id="{uid}-t">{esc(title)}</title><desc id="{uid}-d">{esc(desc)}</desc>{body}</svg>',
        title,
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


def ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float], int]:
    """A nice axis covering [lo, hi]: (new lo, new hi, tick values, decimals for their labels)."""
    if not (hi > lo):
        lo, hi = (lo - 0.5, hi + 0.5) if lo != 0 else (0.0, 1.0)
    step = _nice_step(hi - lo, count)
    start = math.floor(lo / step + 1e-9)
    stop = math.ceil(hi / step - 1e-9)
    values = [round(i * step, 12) for i in range(start, stop + 1)]
    return values[0], values[-1], values, _decimals(step)


def arrow(x1: float, y1: float, x2: float, y2: float, size: float = 5) -> tuple[str, str]:
    """Path data for a line and its arrow head at (x2, y2)."""
    dx, dy = x2 - x1, y2 - y1
    n = math.hypot(dx, dy) or 1.0
    ux, uy = dx / n, dy / n
    bx, by = x2 - ux * size, y2 - uy * size
    px, py = -uy * size * 0.6, ux * size * 0.6
    line = f"M{coord(x1)} {coord(y1)}L{coord(bx)} {coord(by)}"
    head = f"M{coord(x2)} {coord(y2)}L{coord(bx + px)} {coord(by + py)}L{coord(bx - px)} {coord(by - py)}Z"
    return line, head
