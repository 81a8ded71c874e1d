"""Rotary position embeddings (Llama) as a picture: the angle each position turns each 2-D pair of a head by.

Pair i of a head (dimensions i and i + D/2, Hugging Face's `rotate_half` pairing) at position p is turned by
θ_{p,i} = p · rope_theta^(−2i/D). One dial per position (columns) and pair (rows) shows that angle: the dashed ray is
angle 0, the hand the angle, the shaded sector the turn modulo a full circle. The function is pure and follows the
rules of every chart (see charts/__init__.py).
"""

from __future__ import annotations

import math

import numpy as np

from site_build.charts.svg import Svg, W, chart, esc, shorten, text
from site_build.format import coord, isolate_plain, sig

MAX_POSITIONS = 8  # columns drawn: every position up to this many, else the first 5, a gap and the last 2
MAX_PAIRS = 6  # rows drawn: every pair up to this many, else the first 3, a gap and the last 2


def rope_angles(trace, batch: int = 0) -> np.ndarray:
    """θ[p, i]: the angle position p turns pair i by, from the run's rotary table (its size and rope_theta)."""
    rec = trace.record("rope.cos")
    positions, dims = rec.value.shape
    pairs = dims // 2
    inv_freq = float(rec.meta["theta"]) ** (-2.0 * np.arange(pairs) / dims)
    return np.arange(positions)[:, None] * inv_freq[None, :]


def _picked(n: int, most: int, head: int) -> list[int | None]:
    """Every index below n, or the first `head` and the last `most - head - 1` with None for the gap."""
    if n <= most:
        return list(range(n))
    tail = most - head - 1
    return [*range(head), None, *range(n - tail, n)]


def _angle_label(a: float) -> str:
    """An angle under its dial, short enough for the narrowest column: 0, 62, 0.75, 0.011, 1.8e−4."""
    if a == 0:
        return "0"
    if abs(a) >= 0.01:
        return sig(a, 2)
    mantissa, exponent = f"{a:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}".replace("-", "\u2212")


def rope_angle_chart(trace, batch: int = 0) -> Svg:
    """A grid of dials, one per position (column) and rotary pair (row): the angle θ_{p,i} that pair i of every query
    and key at position p is turned by."""
    angles = rope_angles(trace)
    positions, pairs = angles.shape
    dims = 2 * pairs
    theta = float(trace.record("rope.cos").meta["theta"])
    words = trace.labels["inputs"][batch]
    cols = _picked(positions, MAX_POSITIONS, 5)
    rows = _picked(pairs, MAX_PAIRS, 3)
    left, top = 76.0, 44.0
    pitch_x = (W - left - 4) / len(cols)
    r = min(15.0, pitch_x / 2 - 5)
    pitch_y = 2 * r + 26
    out = [text(4, 14, "The angle each position turns each pair by", "tt")]
    for k, p in enumerate(cols):
        cx = left + (k + 0.5) * pitch_x
        if p is None:
            out.append(text(cx, top - 16, "\u2026", "tx", "middle"))
            continue
        out.append(text(cx, top - 18, f"p = {p}", "sm", "middle"))
        out.append(text(cx, top - 7, esc(isolate_plain(shorten(str(words[p]), 8))), "tx", "middle"))
    dials, rays, hands, sectors = [], [], [], []
    for j, i in enumerate(rows):
        cy = top + j * pitch_y + r + 4
        if i is None:
            out.append(text(left / 2, cy + 4, "\u22ee", "tx", "middle"))
            continue
        out.append(text(4, cy - 4, f"pair {i}", "sm"))
        out.append(text(4, cy + 8, f"dims {i}, {i + pairs}", "tx"))
        for k, p in enumerate(cols):
            if p is None:
                continue
            cx = left + (k + 0.5) * pitch_x
            a = float(angles[p, i])
            dials.append(f"M{coord(cx + r)} {coord(cy)}A{coord(r)} {coord(r)} 0 1 0 {coord(cx - r)} {coord(cy)}"
                         f"A{coord(r)} {coord(r)} 0 1 0 {coord(cx + r)} {coord(cy)}")
            rays.append(f"M{coord(cx)} {coord(cy)}H{coord(cx + r)}")
            turn = a % (2 * math.pi)
            ex, ey = cx + r * math.cos(turn), cy - r * math.sin(turn)
            hands.append(f"M{coord(cx)} {coord(cy)}L{coord(ex)} {coord(ey)}")
            if turn > 1e-3:
                large = 1 if turn > math.pi else 0
                sectors.append(f"M{coord(cx)} {coord(cy)}H{coord(cx + r)}"
                               f"A{coord(r)} {coord(r)} 0 {large} 0 {coord(ex)} {coord(ey)}Z")
            label = _angle_label(a)
            out.append(text(cx, cy + r + 11, label, "tx xs" if len(label) > 5 else "tx", "middle"))
    body = [f'<path class="sw" d="{"".join(sectors)}"/>' if sectors else "",
            f'<path class="gr" d="{"".join(dials)}"/>', f'<path class="ref2" d="{"".join(rays)}"/>',
            f'<path class="ln" d="{"".join(hands)}"/>', *out]
    height = top + len(rows) * pitch_y + 18
    body.append(text(4, height - 6, "Angles in radians; the dashed ray is angle 0, turning counterclockwise.", "tx"))
    shown = "" if len(cols) == positions and len(rows) == pairs else (
        f" Shown: {sum(c is not None for c in cols)} of the {positions} positions and "
        f"{sum(i is not None for i in rows)} of the {pairs} pairs.")
    fastest, slowest = float(angles[-1, 0]), float(angles[-1, -1])
    slow_rate = float(angles[1, -1]) if positions > 1 else theta ** (-2 * (pairs - 1) / dims)
    desc = (f"One dial per position (columns, 0 to {positions - 1}) and rotary pair (rows, 0 to {pairs - 1}) of a "
            f"head of {dims} dimensions: the angle theta(p, i) = p * {sig(theta)}^(-2i/{dims}) by which pair i "
            f"(dimensions i and i + {pairs}) of every query and key at position p is turned. Position 0 is never "
            f"turned. Pair 0 turns by 1 radian per position, reaching {sig(fastest, 3)} radians at position "
            f"{positions - 1}; pair {pairs - 1}, the slowest, turns by {sig(slow_rate, 3)} "
            f"radians per position, reaching {sig(slowest, 3)}.{shown}")
    return chart("rope", height, "Rotary angle per position and pair", desc, "".join(body))
