"""The model drawn from the config: the architecture diagram and the compact map of the steps.

Boxes carry the keys of site_build.steps and link to the pages that explain them; the map's labels and
columns (forward, backward, the optimizer) come from the same list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from site_build.charts.svg import Svg, W, arrow, chart, dims, esc, rect, shorten, text
from site_build.format import coord, counted, fixed, isolate_plain, sig
from site_build.steps import BACKWARD, FORWARD, OPTIMIZER, in_phase

# Where each backward step sits in the map: beside the forward rows it runs back through (first row, rows).
BACKWARD_ROWS = {"loss-gradient": (7, 1), "output-backward": (6, 1), "feedforward-backward": (5, 1),
                 "attention-backward": (2, 3), "embedding-gradients": (0, 1)}


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
        inner = [f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(w)}" height="{coord(h)}" rx="4" class="{cls}"/>']
        lead = size * 1.2
        top = y + h / 2 - lead * (len(lines) - 1) / 2 + size * 0.35
        for i, line in enumerate(lines):
            cls_t = "" if i == 0 else "tx"
            inner.append(text(x + w / 2, top + i * lead, esc(line), cls_t, "middle"))
        body = "".join(inner)
        is_current = key is not None and key == self.current
        attrs = ' class="cu" aria-current="step"' if is_current else ""
        href = self.links.get(key) if key else None
        if href is not None:
            self.parts.append(f'<a href="{esc(href)}"{attrs}>{body}</a>')
        elif is_current:
            self.parts.append(f"<g{attrs}>{body}</g>")
        else:
            self.parts.append(body)

    def arrow(self, x1: float, y1: float, x2: float, y2: float, label: str = "", side: str = "right") -> None:
        line, head = arrow(x1, y1, x2, y2)
        self.lines.append(line)
        self.heads.append(head)
        if label:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2 + 3.5
            if side == "right":
                self.parts.append(text(mx + 6, my, esc(label), "tx"))
            else:
                self.parts.append(text(mx - 6, my, esc(label), "tx", "end"))

    def path(self, d: str, head: str | None = None) -> None:
        self.lines.append(d)
        if head:
            self.heads.append(head)

    def plus(self, x: float, y: float) -> None:
        self.parts.append(f'<circle cx="{coord(x)}" cy="{coord(y)}" r="8" class="bx"/>')
        self.parts.append(text(x, y + 4, "+", "", "middle"))

    def render(self) -> str:
        edges = ""
        if self.lines:
            edges += f'<path class="ed" d="{"".join(self.lines)}"/>'
        if self.heads:
            edges += f'<path class="ah" d="{"".join(self.heads)}"/>'
        return edges + "".join(self.parts)


def architecture(trace, current: str | None = None, links: Mapping[str, str] | None = None,
                 small: bool = False) -> Svg:
    """The model drawn from the config, sizes on the edges; boxes link to step pages via `links`.

    `small=True` draws the compact two-column map of the steps (forward down, backward up, then the
    optimizer) for step pages, with `current` highlighted. With links the SVG is a `group` (its links
    stay reachable for screen readers); without, an `img`.
    """
    cfg = trace.config
    m = cfg["model"]
    d, heads, d_ff, layers = m["d_model"], m["n_heads"], m["d_ff"], m["n_layers"]
    vocab_n = len(m["vocab"])
    tied = m.get("tie_embeddings", True)  # the output layer is wte (GPT-2), else its own lm_head.weight
    llama = m.get("arch") == "llama"  # RMSNorm, rotary q/k, grouped K/V heads, SwiGLU, no position table
    kv = int(m.get("n_kv_heads") or heads)
    norm = "RMSNorm" if llama else "LayerNorm"
    inputs = trace.labels["inputs"]
    batch, tokens = len(inputs), len(inputs[0])
    opt = cfg["optimizer"]
    opt_key = "optimizer"  # the step of the optimizer page, whatever the optimizer
    lead = (batch,) if batch > 1 else ()
    loss = float(trace["loss"])
    diagram = _Diagram(current, links)
    role = "group" if links else "img"
    sizes = (f"{counted(layers, 'block')}, {counted(heads, 'attention head')}, "
             + (f"{counted(kv, 'key/value head')}, " if llama else "")
             + f"d_model {d}, d_ff {d_ff}, vocabulary {vocab_n}")

    if small:
        return _architecture_small(diagram, cfg, opt_key, layers, heads, d_ff, sizes, role)

    cx, bw = 180.0, 220.0
    bl = cx - bw / 2
    y = 8.0
    words = " ".join(isolate_plain(w) for w in inputs[0])
    first = ("input token" if tokens == 1 else "input tokens") + (f" (text 1 of {batch})" if batch > 1 else "")
    diagram.box(bl, y, bw, 34, [first, shorten(words, 36)], key=None)
    y += 34
    ids = f"{dims(*lead, tokens)} {'id' if batch * tokens == 1 else 'ids'}"
    act = dims(*lead, tokens, d)
    if llama:  # no position table: the token rows are the stream; positions turn q and k inside attention
        wte_x, ew, eh, ey = cx - 75, 150.0, 34.0, y + 26
        diagram.arrow(cx, y, cx, ey, ids)
        diagram.box(wte_x, ey, ew, eh, ["token embedding", f"wte {dims(vocab_n, d)}"], "embeddings")
        y = ey + eh + 10
    else:
        wte_x, wpe_x, ew, eh, ey = 20.0, 190.0, 150.0, 34.0, y + 26
        diagram.arrow(cx - 40, y, wte_x + ew / 2, ey, ids, "left")
        diagram.arrow(cx + 40, y, wpe_x + ew / 2, ey, f"positions 0\u2013{tokens - 1}" if tokens > 1 else "position 0")
        diagram.box(wte_x, ey, ew, eh, ["token embedding", f"wte {dims(vocab_n, d)}"], "embeddings")
        diagram.box(wpe_x, ey, ew, eh, ["position embedding", f"wpe {dims(m['n_positions'], d)}"], "embeddings")
        y = ey + eh
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
            diagram.parts.append(text(cx, y + 26, esc(f"blocks 1\u2013{layers - 2}: the same as block 0"), "tx",
                                   "middle"))
            y += 36
            continue
        top = y
        parts_start = len(diagram.parts)
        y += 18
        for sub in ("attn", "mlp"):
            split = y
            diagram.parts.append(f'<circle cx="{coord(cx)}" cy="{coord(split)}" r="2.5" class="ah"/>')
            diagram.arrow(cx, split, cx, split + 20, act)
            y = split + 20
            diagram.box(bl, y, bw, 26, [f"{norm} ln_1" if sub == "attn" else f"{norm} ln_2"], "layernorm")
            y += 26
            diagram.arrow(cx, y, cx, y + 20, act)
            y += 20
            if sub == "attn":
                split_into = f"split into {heads} heads" if heads > 1 else "one head"
                head_dim = d // heads
                if llama:
                    diagram.box(bl, y, bw, 34, ["Q, K, V = x \u00b7 q/k/v_proj\u1d40",
                                                f"{d} \u2192 {d}, {kv * head_dim}, {kv * head_dim}"], "qkv")
                    y += 34
                    diagram.arrow(cx, y, cx, y + 20, f"Q: {heads} {'head' if heads == 1 else 'heads'}, K and V: "
                                  f"{kv} {'head' if kv == 1 else 'heads'}")
                    y += 20
                    diagram.box(bl, y, bw, 34, ["rotary: turn Q, K by position", f"{head_dim // 2} pairs per head, "
                                                f"\u03b8 = {sig(float(m.get('rope_theta', 10000.0)))}"], "qkv")
                    y += 34
                    diagram.arrow(cx, y, cx, y + 20, dims(*lead, heads, tokens, head_dim) + " queries")
                else:
                    diagram.box(bl, y, bw, 34, ["Q, K, V = x \u00b7 c_attn", f"{d} \u2192 3\u00d7{d}, {split_into}"],
                                "qkv")
                    y += 34
                    diagram.arrow(cx, y, cx, y + 20, f"3 \u00d7 {dims(*lead, heads, tokens, head_dim)}")
                y += 20
                h_box = 54
                diagram.box(bl, y, bw, h_box, ["", "", f"softmax(QK\u1d40/\u221a{head_dim}) V, causal mask"],
                            "attention")
                hs = min(40.0, (bw - 16) / heads - 4)
                row_w = heads * (hs + 4) - 4
                hx = cx - row_w / 2
                group = heads // kv
                if llama and group > 1:  # a frame around the query heads that share one key/value head
                    for g in range(kv):
                        gx = hx + g * group * (hs + 4) - 1
                        diagram.parts.append(rect(gx, y + 3, group * (hs + 4) - 2, 28, "fr", ' rx="3"'))
                for h in range(heads):
                    diagram.parts.append(rect(hx + h * (hs + 4), y + 6, hs, 22, "ms"))
                    if hs >= 18:
                        diagram.parts.append(text(hx + h * (hs + 4) + hs / 2, y + 21, f"h{h}", "tx", "middle"))
                y += h_box
                diagram.arrow(cx, y, cx, y + 20, dims(*lead, heads, tokens, head_dim))
                y += 20
                proj = "o_proj" if llama else "c_proj"
                merge = f"merge {heads} heads, {proj}" if heads > 1 else f"{proj} (one head: no merge)"
                diagram.box(bl, y, bw, 34, [merge, f"{d} \u2192 {d}"], "multihead")
                y += 34
            elif llama:
                swiglu = ["SwiGLU: SiLU(gate) \u2299 up", f"{d} \u2192 2 \u00d7 {d_ff} \u2192 {d_ff}"]
                diagram.box(bl, y, bw, 34, swiglu, "feedforward")
                y += 34
                diagram.arrow(cx, y, cx, y + 20, dims(*lead, tokens, d_ff))
                y += 20
                diagram.box(bl, y, bw, 34, ["feed-forward down: down_proj", f"{d_ff} \u2192 {d}"], "feedforward")
                y += 34
            else:
                diagram.box(bl, y, bw, 34, ["feed-forward up: c_fc, GELU", f"{d} \u2192 {d_ff}"], "feedforward")
                y += 34
                diagram.arrow(cx, y, cx, y + 20, dims(*lead, tokens, d_ff))
                y += 20
                diagram.box(bl, y, bw, 34, ["feed-forward down: c_proj", f"{d_ff} \u2192 {d}"], "feedforward")
                y += 34
            diagram.arrow(cx, y, cx, y + 16, act)
            plus_y = y + 24
            diagram.plus(cx, plus_y)
            line, head = arrow(44, plus_y, cx - 8, plus_y)
            diagram.path(f"M{coord(cx)} {coord(split)}L44 {coord(split)}L44 {coord(plus_y)}" + line[line.index("L"):],
                         head)
            diagram.parts.append(text(48, (split + plus_y) / 2, "residual", "tx",
                                       extra=f' transform="rotate(90 48 {coord((split + plus_y) / 2)})"'))
            y = plus_y + 8
            if sub == "attn":
                diagram.arrow(cx, y, cx, y + 14)
                y += 14
        y += 8
        frame = rect(14, top, W - 28, y - top, "fr", ' rx="6"')
        label = text(22, top + 13, esc(f"block {layer}" + (f" of {layers}" if layers > 1 else "")), "tx")
        diagram.parts.insert(parts_start, frame + label)
        y += 6
    diagram.arrow(cx, y - 6, cx, y + 14, act)
    y += 14
    diagram.box(bl, y, bw, 26, [f"{norm} ln_f"], "layernorm")
    y += 26
    diagram.arrow(cx, y, cx, y + 20, act)
    y += 20
    logits_y = y
    if tied:
        diagram.box(bl, y, bw, 34, ["logits = x \u00b7 wte\u1d40", f"tied to wte: {d} \u2192 {vocab_n} words"],
                    "output")
    else:
        diagram.box(bl, y, bw, 34, ["logits = x \u00b7 lm_head\u1d40", f"untied: {d} \u2192 {vocab_n} words"],
                    "output")
    y += 34
    diagram.arrow(cx, y, cx, y + 20, dims(*lead, tokens, vocab_n))
    y += 20
    diagram.box(bl, y, bw, 34, ["loss: softmax, cross-entropy", f"mean over predictions = {fixed(loss, 4)}"], "loss")
    y += 34
    if tied:  # the token table is read again by the output layer
        tie = f"M{coord(wte_x)} {coord(tie_top)}L6 {coord(tie_top)}L6 {coord(logits_y + 17)}"
        line, head = arrow(6, logits_y + 17, bl, logits_y + 17)
        diagram.parts.insert(0, f'<path class="fr" d="{tie}{line[line.index("L"):]}"/>')
        diagram.heads.append(head)
    diagram.arrow(cx, y, cx, y + 20, "1 number")
    y += 20
    half = (bw - 8) / 2
    diagram.box(bl, y, half, 34, ["backward", "gradients flow up"], "loss-gradient", size=10)
    diagram.box(bl + half + 8, y, half, 34, [f"{opt['name']} update", f"lr {sig(opt['lr'])}"], opt_key, size=10)
    y += 34 + 8
    tokens_in = f"{dims(*lead, tokens)} input {'token is' if batch * tokens == 1 else 'tokens are'}"
    if llama:
        shared = (f"{counted(kv, 'key/value head')} shared by {counted(heads, 'query head')}" if kv < heads
                  else "a key/value head per query head")
        block = (f"RMSNorm, queries, keys and values with the queries and keys turned by their position (rotary), "
                 f"attention with {shared}, residual add, RMSNorm, SwiGLU feed-forward {d} to {d_ff} to {d}, "
                 f"residual add")
    else:
        block = f"LayerNorm, attention, residual add, LayerNorm, feed-forward {d} to {d_ff} to {d}, residual add"
    desc = (f"The model as configured: {sizes}. {tokens_in} embedded to {act}"
            + (" (no position table)" if llama else "")
            + f", pass through the block{'s' if layers != 1 else ''} ({block}), a final {norm} and the output layer "
            + ("tied to the token embedding" if tied else f"lm_head, a {dims(vocab_n, d)} matrix of its own (untied)")
            + f" ({dims(*lead, tokens, vocab_n)} logits), then the loss, {fixed(loss, 4)}.")
    return chart("architecture", y, "Architecture of the model", desc, diagram.render(), role)


def _architecture_small(diagram: _Diagram, cfg, opt_key: str, layers: int, heads: int, d_ff: int, sizes: str,
                        role: str) -> Svg:
    pitch, bh, top = 26.0, 18.0, 22.0
    lx, rx, bw = 20.0, 192.0, 148.0
    diagram.parts.append(text(lx + bw / 2, 13, "forward \u2193", "tt", "middle"))
    diagram.parts.append(text(rx + bw / 2, 13, "backward \u2191", "tt", "middle"))

    def row(i: float) -> float:
        return top + i * pitch

    suffix = {"attention": f", {heads} head{'s' if heads != 1 else ''}", "feedforward": f" ({d_ff})"}
    llama = {"layernorm": "RMSNorm"} if cfg["model"].get("arch") == "llama" else {}  # the words of its pages
    forward = [(step.key, llama.get(step.key, step.label) + suffix.get(step.key, "")) for step in in_phase(FORWARD)]
    for i, (key, label) in enumerate(forward):
        diagram.box(lx, row(i), bw, bh, [label], key, size=10.5)
        if i:
            diagram.arrow(lx + bw / 2, row(i) - pitch + bh, lx + bw / 2, row(i))
    # the repeated block: a bracket left of rows 1..5
    y1, y2 = row(1), row(5) + bh
    diagram.path(f"M14 {coord(y1)}L10 {coord(y1)}L10 {coord(y2)}L14 {coord(y2)}")
    mid = (y1 + y2) / 2
    diagram.parts.append(text(7, mid, esc(f"block \u00d7{layers}"), "tx", "middle",
                               f' transform="rotate(-90 7 {coord(mid)})"'))
    backward = [(*BACKWARD_ROWS[step.key], step.key, step.label) for step in in_phase(BACKWARD)]
    prev_top = None
    for start, span, key, label in backward:
        h = bh + (span - 1) * pitch
        diagram.box(rx, row(start), bw, h, [label], key, size=10.5)
        if prev_top is not None:
            diagram.arrow(rx + bw / 2, prev_top, rx + bw / 2, row(start) + h)
        prev_top = row(start)
    diagram.arrow(lx + bw, row(7) + bh / 2, rx, row(7) + bh / 2)
    opt = cfg["optimizer"]
    update = in_phase(OPTIMIZER)[0].label
    oy = row(8) + 4
    diagram.box(lx, oy, rx + bw - lx, bh, [f"{opt['name']} {update} of every weight (lr {sig(opt['lr'])})"],
                opt_key, size=10.5)
    diagram.path(f"M{coord(rx + bw)} {coord(row(0) + bh / 2)}L354 {coord(row(0) + bh / 2)}L354 {coord(oy + bh / 2)}"
                 f"L{coord(rx + bw + 5)} {coord(oy + bh / 2)}")
    _, head = arrow(354, oy + bh / 2, rx + bw, oy + bh / 2)
    diagram.heads.append(head)
    height = oy + bh + 6
    where = ""
    if diagram.current:
        names = {k: v for k, v in forward} | {k: v for _, _, k, v in backward} | {opt_key: f"{opt['name']} {update}"}
        if diagram.current in names:
            where = f" This page: {names[diagram.current]}."
    norm = "RMSNorm" if llama else "LayerNorm"
    desc = (f"The steps of one training step ({sizes}): forward through embeddings, {norm}, Q K V, attention, "
            f"merging heads, feed-forward, output logits and loss; backward from the loss gradient through the "
            f"output, feed-forward and attention to the embedding gradients; then the {opt['name']} update."
            + where)
    return chart("steps", height, "Map of the training step", desc, diagram.render(), role)

