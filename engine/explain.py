"""The arithmetic behind one element of one record, regenerated from the record and its inputs.

`explain(trace, name, index)` recomputes the element from its operands (so the result can be
checked against the stored value) and returns display lines in LaTeX with the real numbers:
a dot product term by term, a softmax row, a LayerNorm row, a GELU, an AdamW update, ...
This is what the site's calc() macro and click-any-number panel show; nothing there is typed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .layers import GELU_C, GELU_K
from .trace import Record, Trace

MAX_TERMS = 24  # past this many terms a sum shows its first and last few around \cdots
PER_LINE = 4  # terms per line of a long sum, so it fits a phone
TARGET_NOTE = r"\text{, the target}"


@dataclass
class Explanation:
    name: str
    index: tuple[int, ...]
    op: str
    result: float
    operands: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    latex: list[str] = field(default_factory=list)
    text: str = ""


def num(x: float) -> str:
    """A number for display: 4 decimals, or 3 significant digits in scientific form when tiny or huge."""
    x = float(x)
    if x == -math.inf:
        return r"-\infty"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.4f}"
    m, e = f"{x:.3e}".split("e")
    return rf"{m}\times10^{{{int(e)}}}"


def par(x: float) -> str:
    s = num(x)
    return f"({s})" if s.startswith("-") else s


def text(s: str) -> str:
    """A word from the config inside LaTeX \\text{}: escape every LaTeX special character."""
    out = []
    for ch in s:
        out.append({"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                    "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(ch, ch))
    return r"\text{" + "".join(out) + "}"


def sub(rec: Record, index: tuple[int, ...]) -> str:
    """`Q_{h=0,t=2,d=5}`: the record's symbol with the element's index (batch dropped when there is one text)."""
    parts = [f"{_short(ax)}={i}" for ax, i in zip(rec.axes, index) if not (ax == "batch" and rec.value.shape[0] == 1)]
    sym = rec.symbol
    return f"{{{sym}}}_{{{','.join(parts)}}}" if parts else sym


def _short(axis: str) -> str:
    return {"batch": "b", "heads": "h", "tokens": "t", "keys": "s", "d_model": "c", "head_dim": "d", "d_ff": "f",
            "qkv": "n", "vocab": "v", "positions": "p", "step": "k"}.get(axis, axis)


def join_sum(terms: list[str], result: float, lhs: str, prefix: str = "") -> str:
    """`lhs = t1 + t2 + ... = result`, in lines of PER_LINE terms, eliding the middle of very long sums."""
    n = len(terms)
    if n > MAX_TERMS:
        terms = terms[:8] + [rf"\cdots\ (\text{{{n - 12} more terms}})"] + terms[-4:]
    if not terms:
        terms = ["0"]
    rows = [" + ".join(terms[i : i + PER_LINE]) for i in range(0, len(terms), PER_LINE)]
    if len(rows) == 1:
        return f"{lhs} = {prefix}{rows[0]} = {num(result)}"
    body = r" \\ &\quad + ".join(rows)
    return rf"\begin{{aligned}} {lhs} &= {prefix}{body} \\ &= {num(result)} \end{{aligned}}"


def explain(trace: Trace, name: str, index) -> Explanation:
    """Regenerate element `index` of record `name` from its inputs."""
    rec = trace.record(name)
    index = tuple(int(i) for i in (index if isinstance(index, (tuple, list)) else (index,)))
    if len(index) != rec.value.ndim or any(not 0 <= i < n for i, n in zip(index, rec.value.shape)):
        raise IndexError(f"index {list(index)} is outside {name} of shape {list(rec.value.shape)}")
    handler = HANDLERS.get(rec.op)
    if handler is None:
        raise KeyError(f"no explanation for op {rec.op!r}")
    ins = [trace.record(n) for n in rec.inputs]
    ex = Explanation(name=name, index=index, op=rec.op, result=float(rec.value[index]))
    handler(ex, rec, ins, index, trace)
    return ex


def _einsum_terms(spec: str, ins: list[Record], index: tuple[int, ...]):
    """Terms of one output element of an einsum: [(value, [(record, idx), ...]), ...]."""
    lhs, out = spec.split("->")
    specs = lhs.split(",")
    fixed = dict(zip(out, index))
    free = sorted({ch for s in specs for ch in s} - set(out), key=lambda ch: "".join(specs).index(ch))
    sizes = {}
    for s, r in zip(specs, ins):
        for ch, n in zip(s, r.value.shape):
            sizes[ch] = n
    terms = []
    for combo in itertools.product(*(range(sizes[ch]) for ch in free)):
        letters = {**fixed, **dict(zip(free, combo))}
        factors = []
        for s, r in zip(specs, ins):
            idx = tuple(letters[ch] for ch in s)
            factors.append((r, idx))
        terms.append((math.prod(float(r.value[i]) for r, i in factors), factors))
    return terms


def _contraction(ex, rec, ins, index, trace, bias=None):
    terms = _einsum_terms(rec.meta["einsum"], ins, index)
    # Skip structurally zero terms (masked attention, padded rows) so the sum shows what counts.
    shown = [t for t in terms if t[0] != 0.0 or all(float(r.value[i]) != 0.0 for r, i in t[1])]
    total = sum(t[0] for t in terms)
    tex = [r" \cdot ".join(par(float(r.value[i])) for r, i in f) for _, f in shown]
    for _, f in terms:
        ex.operands.extend((r.name, i) for r, i in f)
    if bias is not None:
        b = float(bias.value[index[-1]])
        total += b
        tex.append(par(b))
        ex.operands.append((bias.name, (index[-1],)))
    ex.result = total
    first = shown[0][1] if shown else (terms[0][1] if terms else [])
    pattern = " + ".join([r" \cdot ".join(sub(r, i) for r, i in first)] + ([r"\cdots"] if len(terms) > 1 else []))
    if bias is not None:
        pattern += " + " + sub(bias, (index[-1],))
    ex.latex.append(rf"{sub(rec, index)} = {pattern}")
    ex.latex.append(join_sum(tex, total, sub(rec, index)))
    ex.text = f"sum of {len(terms)} product{'s' if len(terms) != 1 else ''}" + (" plus a bias" if bias else "")


def _matmul(ex, rec, ins, index, trace):
    _contraction(ex, rec, ins, index, trace)


def _linear(ex, rec, ins, index, trace):
    _contraction(ex, rec, ins[:2], index, trace, bias=ins[2])


def _broadcast_index(r: Record, index):
    return tuple(index[len(index) - r.value.ndim :])


def _add(ex, rec, ins, index, trace):
    vals = [(r, _broadcast_index(r, index)) for r in ins]
    ex.operands = [(r.name, i) for r, i in vals]
    ex.result = sum(float(r.value[i]) for r, i in vals)
    ex.latex.append(f"{sub(rec, index)} = " + " + ".join(sub(r, i) for r, i in vals) + " = "
                    + " + ".join(par(float(r.value[i])) for r, i in vals) + f" = {num(ex.result)}")
    ex.text = "a sum of " + " and ".join(r.name for r, _ in vals)


def _row(r: Record, index):
    return r.value[index[:-1]] if r.value.ndim == len(index) else r.value[index]


def _mean(ex, rec, ins, index, trace):
    x = ins[0]
    row = x.value[index]
    ex.operands = [(x.name, index + (c,)) for c in range(row.size)]
    ex.result = float(row.mean())
    ex.latex.append(join_sum([par(v) for v in row], row.sum(), r"\textstyle\sum_c x_c"))
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{{num(row.sum())}}}{{{row.size}}} = {num(ex.result)}")
    ex.text = f"the mean of the {row.size} entries of row {index}"


def _var(ex, rec, ins, index, trace):
    x, mean = ins
    row, mu = x.value[index], float(mean.value[index])
    ex.operands = [(x.name, index + (c,)) for c in range(row.size)] + [(mean.name, index)]
    sq = (row - mu) ** 2
    ex.result = float(sq.mean())
    ex.latex.append(rf"\mu = {num(mu)}")
    ex.latex.append(join_sum([f"({num(v)} - {par(mu)})^2" for v in row], sq.sum(), r"\textstyle\sum_c (x_c-\mu)^2"))
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{{num(sq.sum())}}}{{{row.size}}} = {num(ex.result)}")
    ex.text = "the mean squared distance from the row mean"


def _normalize(ex, rec, ins, index, trace):
    x, mean, var = ins
    bt = index[:-1]
    v, mu, s2, eps = float(x.value[index]), float(mean.value[bt]), float(var.value[bt]), rec.meta["eps"]
    ex.operands = [(x.name, index), (mean.name, bt), (var.name, bt)]
    ex.result = (v - mu) / math.sqrt(s2 + eps)
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{x - \mu}}{{\sqrt{{\sigma^2 + \epsilon}}}} = "
                    rf"\dfrac{{{num(v)} - {par(mu)}}}{{\sqrt{{{num(s2)} + 10^{{-5}}}}}} = "
                    rf"\dfrac{{{num(v - mu)}}}{{{num(math.sqrt(s2 + eps))}}} = {num(ex.result)}")
    ex.text = "subtract the row mean, divide by the row standard deviation"


def _affine(ex, rec, ins, index, trace):
    xh, w, b = ins
    c = index[-1]
    v, g, be = float(xh.value[index]), float(w.value[c]), float(b.value[c])
    ex.operands = [(xh.name, index), (w.name, (c,)), (b.name, (c,))]
    ex.result = g * v + be
    ex.latex.append(rf"{sub(rec, index)} = \gamma_{{{c}}}\,\hat x + \beta_{{{c}}} = {num(g)} \cdot {par(v)} + {par(be)} = {num(ex.result)}")
    ex.text = "scale by the learned weight, shift by the learned bias"


def _split_heads(ex, rec, ins, index, trace):
    src = ins[0]
    b, h, t, d = index
    D = rec.value.shape[-1]
    C = rec.value.shape[1] * D
    part = rec.meta.get("part")
    col = (part or 0) * C + h * D + d
    ex.operands = [(src.name, (b, t, col))]
    ex.result = float(src.value[b, t, col])
    ex.latex.append(rf"{sub(rec, index)} = {sub(src, (b, t, col))} = {num(ex.result)}")
    ex.text = f"column {col} of {src.name}: head {h} takes columns {(part or 0) * C + h * D}..{(part or 0) * C + h * D + D - 1}"


def _merge_heads(ex, rec, ins, index, trace):
    src = ins[0]
    b, t, c = index
    D = src.value.shape[-1]
    idx = (b, c // D, t, c % D)
    ex.operands = [(src.name, idx)]
    ex.result = float(src.value[idx])
    ex.latex.append(rf"{sub(rec, index)} = {sub(src, idx)} = {num(ex.result)}")
    ex.text = f"head {c // D}, dimension {c % D}"


def _merge_qkv(ex, rec, ins, index, trace):
    b, t, n = index
    C = rec.value.shape[-1] // 3
    part, c = divmod(n, C)
    src = ins[part]
    D = src.value.shape[-1]
    idx = (b, c // D, t, c % D)
    ex.operands = [(src.name, idx)]
    ex.result = float(src.value[idx])
    ex.latex.append(rf"{sub(rec, index)} = {sub(src, idx)} = {num(ex.result)}")
    ex.text = f"the {'QKV'[part]} block, head {c // D}"


def _scale(ex, rec, ins, index, trace):
    src = ins[0]
    v = float(src.value[index])
    ex.operands = [(src.name, index)]
    ex.result = v * rec.meta["factor"]
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{{sub(src, index)}}}{{{rec.meta['factor_tex']}}} = "
                    rf"\dfrac{{{num(v)}}}{{{num(1 / rec.meta['factor'])}}} = {num(ex.result)}")
    ex.text = "divided by the square root of the head size"


def _causal_mask(ex, rec, ins, index, trace):
    src = ins[0]
    t, s = index[-2], index[-1]
    ex.operands = [(src.name, index)]
    if s <= t:
        ex.result = float(src.value[index])
        ex.latex.append(rf"{sub(rec, index)} = {sub(src, index)} = {num(ex.result)} \quad (s = {s} \le t = {t}\text{{: visible}})")
    else:
        ex.result = -math.inf
        ex.latex.append(rf"{sub(rec, index)} = -\infty \quad (s = {s} > t = {t}\text{{: a future token, hidden}})")
    ex.text = "kept" if s <= t else "masked: the key comes after the query"


def _softmax(ex, rec, ins, index, trace):
    src = ins[0]
    row = src.value[index[:-1]]
    k = index[-1]
    m = float(row.max())
    e = np.exp(row - m)
    total = float(e.sum())
    ex.operands = [(src.name, index[:-1] + (j,)) for j in range(row.size)]
    ex.result = float(e[k] / total)
    ex.latex.append(rf"\text{{row max }} m = {num(m)}")
    exps = [rf"e^{{{num(v)} - {par(m)}}}" if v != -math.inf else r"e^{-\infty}" for v in row]
    ex.latex.append(join_sum([num(v) for v in e], total, r"\textstyle\sum_j e^{x_j - m}"))
    if row.size <= MAX_TERMS:
        ex.latex.insert(1, r"e^{x_j - m}:\ " + r",\ ".join(f"{x} = {num(v)}" for x, v in zip(exps, e)))
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{e^{{x_{{{k}}} - m}}}}{{\sum_j e^{{x_j - m}}}} = "
                    rf"\dfrac{{{num(e[k])}}}{{{num(total)}}} = {num(ex.result)}")
    ex.text = "exponentiate the row, divide by the sum"


def _gelu(ex, rec, ins, index, trace):
    src = ins[0]
    u = float(src.value[index])
    inner = GELU_K * (u + GELU_C * u**3)
    t = math.tanh(inner)
    ex.operands = [(src.name, index)]
    ex.result = 0.5 * u * (1 + t)
    ex.latex.append(rf"u = {num(u)},\quad \sqrt{{2/\pi}}\,(u + 0.044715\,u^3) = {num(inner)},\quad \tanh({num(inner)}) = {num(t)}")
    ex.latex.append(rf"{sub(rec, index)} = \tfrac12 \cdot {par(u)} \cdot (1 + {par(t)}) = {num(ex.result)}")
    ex.text = "GELU, tanh approximation"


def _target(trace, rec_targets: Record, bt) -> tuple[int, str]:
    y = int(rec_targets.value[bt])
    return y, (trace.labels["vocab"][y] if y >= 0 else "<ignored>")


def _gather(ex, rec, ins, index, trace):
    probs, targets = ins
    y, word = _target(trace, targets, index)
    ex.operands = [(targets.name, index)]
    if y < 0:
        ex.result = 0.0
        ex.latex.append(rf"{sub(rec, index)} = 0 \quad (\text{{padding: no target}})")
        return
    ex.operands.append((probs.name, index + (y,)))
    ex.result = float(probs.value[index + (y,)])
    ex.latex.append(rf"y = {y}\ ({text(word)}),\quad {sub(rec, index)} = {sub(probs, index + (y,))} = {num(ex.result)}")
    ex.text = f"the probability given to the right next word, {word!r}"


def _cross_entropy(ex, rec, ins, index, trace):
    logits, targets = ins
    y, word = _target(trace, targets, index)
    ex.operands = [(targets.name, index)]
    if y < 0:
        ex.result = 0.0
        ex.latex.append(rf"{sub(rec, index)} = 0 \quad (\text{{padding: ignored}})")
        return
    row = logits.value[index]
    m = float(row.max())
    s = float(np.exp(row - m).sum())
    lse = m + math.log(s)
    ex.operands += [(logits.name, index + (v,)) for v in range(row.size)]
    ex.result = lse - float(row[y])
    ex.latex.append(join_sum([rf"e^{{{num(v)}}}" for v in row], math.exp(lse), r"\textstyle\sum_v e^{\mathrm{logit}_v}"))
    ex.latex.append(rf"{sub(rec, index)} = \log {num(math.exp(lse))} - \mathrm{{logit}}_{{{text(word)}}} = "
                    rf"{num(lse)} - {par(float(row[y]))} = {num(ex.result)}")
    ex.text = f"minus the log-probability of {word!r}"


def _loss_mean(ex, rec, ins, index, trace):
    per, targets = ins
    valid = targets.value >= 0
    vals = per.value[valid]
    ex.operands = [(per.name, tuple(int(i) for i in idx)) for idx in np.argwhere(valid)]
    ex.result = float(vals.sum() / vals.size)
    ex.latex.append(join_sum([num(v) for v in vals], vals.sum(), r"\textstyle\sum_t \ell_t"))
    ex.latex.append(rf"{rec.symbol} = \dfrac{{{num(vals.sum())}}}{{{vals.size}}} = {num(ex.result)}")
    ex.text = f"the mean over {vals.size} target positions"


def _ce_backward(ex, rec, ins, index, trace):
    probs, targets = ins
    y, _ = _target(trace, targets, index[:-1])
    n = int((targets.value >= 0).sum())
    ex.operands = [(probs.name, index), (targets.name, index[:-1])]
    if y < 0:
        ex.result = 0.0
        ex.latex.append(rf"{sub(rec, index)} = 0 \quad (\text{{padding}})")
        return
    p, hit = float(probs.value[index]), int(index[-1] == y)
    ex.result = (p - hit) / n
    word = trace.labels["vocab"][index[-1]]
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{p - [v = y]}}{{N}} = \dfrac{{{num(p)} - {hit}}}{{{n}}} = {num(ex.result)}"
                    rf"\quad (v = {text(word)}{TARGET_NOTE if hit else ''})")
    ex.text = "predicted probability minus the one-hot target, over the number of targets"


def _ln_backward(ex, rec, ins, index, trace):
    g, xh, var = ins
    bt, c = index[:-1], index[-1]
    grow, xrow = g.value[bt], xh.value[bt]
    eps = rec.meta["eps"]
    rstd = 1 / math.sqrt(float(var.value[bt]) + eps)
    mg, mgx = float(grow.mean()), float((grow * xrow).mean())
    ex.operands = [(g.name, bt + (j,)) for j in range(grow.size)] + [(xh.name, bt + (j,)) for j in range(xrow.size)] + [(var.name, bt)]
    ex.result = rstd * (float(grow[c]) - mg - float(xrow[c]) * mgx)
    ex.latex.append(rf"\overline{{g}} = \tfrac1{{{grow.size}}}\textstyle\sum_j g_j = {num(mg)},\quad "
                    rf"\overline{{g\odot\hat x}} = \tfrac1{{{grow.size}}}\textstyle\sum_j g_j \hat x_j = {num(mgx)},\quad "
                    rf"\tfrac{{1}}{{\sqrt{{\sigma^2+\epsilon}}}} = {num(rstd)}")
    ex.latex.append(rf"{sub(rec, index)} = {num(rstd)} \cdot \big({par(float(grow[c]))} - {par(mg)} - {par(float(xrow[c]))} \cdot {par(mgx)}\big) = {num(ex.result)}")
    ex.text = "LayerNorm backward for one element of the row"


def _gelu_backward(ex, rec, ins, index, trace):
    g, x = ins
    u, gv = float(x.value[index]), float(g.value[index])
    t = math.tanh(GELU_K * (u + GELU_C * u**3))
    d = 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * u * u)
    ex.operands = [(g.name, index), (x.name, index)]
    ex.result = gv * d
    ex.latex.append(rf"u = {num(u)},\ \tanh(\cdot) = {num(t)},\ \mathrm{{GELU}}'(u) = \tfrac12(1+\tanh) + \tfrac12 u\,(1-\tanh^2)\sqrt{{2/\pi}}\,(1 + 3\cdot0.044715\,u^2) = {num(d)}")
    ex.latex.append(rf"{sub(rec, index)} = {par(gv)} \cdot {par(d)} = {num(ex.result)}")
    ex.text = "upstream gradient times the GELU slope at u"


def _softmax_backward(ex, rec, ins, index, trace):
    g, y = ins
    grow, yrow = g.value[index[:-1]], y.value[index[:-1]]
    dot = float((grow * yrow).sum())
    k = index[-1]
    ex.operands = [(g.name, index[:-1] + (j,)) for j in range(grow.size)] + [(y.name, index[:-1] + (j,)) for j in range(yrow.size)]
    ex.result = float(yrow[k]) * (float(grow[k]) - dot)
    terms = [rf"{num(a)} \cdot {par(b)}" for a, b in zip(yrow, grow) if a != 0]
    ex.latex.append(join_sum(terms, dot, r"\textstyle\sum_j y_j g_j"))
    ex.latex.append(rf"{sub(rec, index)} = y_{{{k}}}\,(g_{{{k}}} - \textstyle\sum_j y_j g_j) = {num(float(yrow[k]))} \cdot ({par(float(grow[k]))} - {par(dot)}) = {num(ex.result)}")
    ex.text = "softmax backward: y times (g minus the y-weighted mean of g)"


def _mask_backward(ex, rec, ins, index, trace):
    src = ins[0]
    t, s = index[-2], index[-1]
    ex.operands = [(src.name, index)]
    ex.result = float(src.value[index]) if s <= t else 0.0
    ex.latex.append(rf"{sub(rec, index)} = {sub(src, index)} = {num(ex.result)}" if s <= t else
                    rf"{sub(rec, index)} = 0 \quad (s > t\text{{: the masked score never reached the loss}})")
    ex.text = "passed through where visible, zero where masked"


def _embedding(ex, rec, ins, index, trace):
    table = ins[0]
    if len(ins) == 2:  # token lookup
        b, t, c = index
        i = int(ins[1].value[b, t])
        ex.operands = [(ins[1].name, (b, t)), (table.name, (i, c))]
        ex.result = float(table.value[i, c])
        ex.latex.append(rf"{sub(rec, index)} = W_{{te}}[\mathrm{{id}}, {c}] = W_{{te}}[{i}\ ({text(trace.labels['vocab'][i])}), {c}] = {num(ex.result)}")
    else:
        t, c = index
        ex.operands = [(table.name, (t, c))]
        ex.result = float(table.value[t, c])
        ex.latex.append(rf"{sub(rec, index)} = W_{{pe}}[{t}, {c}] = {num(ex.result)}")
    ex.text = "a row lookup: no arithmetic"


def _embedding_backward(ex, rec, ins, index, trace):
    g = ins[0]
    row, c = index
    if len(ins) == 2:  # token table: every position where this word is the input
        hits = [tuple(int(i) for i in bt) for bt in np.argwhere(ins[1].value == row)]
    else:
        hits = [(b, row) for b in range(g.value.shape[0])] if row < g.value.shape[1] else []
    vals = [float(g.value[bt + (c,)]) for bt in hits]
    ex.operands = [(g.name, bt + (c,)) for bt in hits]
    ex.result = float(sum(vals))
    if not hits:
        ex.latex.append(rf"{sub(rec, index)} = 0 \quad (\text{{no }}\text{{{'input uses this word' if len(ins) == 2 else 'text is this long'}}})")
    else:
        ex.latex.append(join_sum([par(v) for v in vals], ex.result, sub(rec, index)))
    if len(ins) == 2:
        word = trace.labels["vocab"][row]
        ex.text = (f"scatter-add: the sum over the {len(hits)} position{'s' if len(hits) != 1 else ''} whose input is {word!r}"
                   if hits else f"{word!r} is never an input word, so this part of its gradient is zero")
    else:
        ex.text = (f"the sum over the {len(hits)} text{'s' if len(hits) != 1 else ''} at position {row}"
                   if hits else f"no text reaches position {row}, so its gradient is zero")


def _l2_grad(ex, rec, ins, index, trace):
    g, p = ins
    gv, pv, wd = float(g.value[index]), float(p.value[index]), rec.meta["wd"]
    ex.operands = [(g.name, index), (p.name, index)]
    ex.result = gv + wd * pv
    ex.latex.append(rf"{sub(rec, index)} = \nabla\theta + \lambda\theta = {num(gv)} + {num(wd)} \cdot {par(pv)} = {num(ex.result)}")
    ex.text = "gradient plus L2 weight decay"


def _adam_moment(ex, rec, ins, index, trace):
    g = ins[0]
    gv, beta, t = float(g.value[index]), rec.meta["beta"], rec.meta["step"]
    ex.operands = [(g.name, index)]
    second = rec.op == "adam_v"
    ex.result = (1 - beta) * (gv * gv if second else gv)
    prev = f"{rec.symbol}_{{{t - 1}}}"
    gl = rf"{par(gv)}^2" if second else par(gv)
    ex.latex.append(rf"{sub(rec, index)} = \beta \cdot {prev} + (1-\beta)\,g{'^2' if second else ''} = {num(beta)} \cdot 0 + {num(1 - beta)} \cdot {gl} = {num(ex.result)}")
    ex.text = f"{'second' if second else 'first'} moment; it starts at zero"


def _adam_hat(ex, rec, ins, index, trace):
    src = ins[0]
    v, beta, t = float(src.value[index]), rec.meta["beta"], rec.meta["step"]
    ex.operands = [(src.name, index)]
    ex.result = v / (1 - beta**t)
    ex.latex.append(rf"{sub(rec, index)} = \dfrac{{{num(v)}}}{{1 - {num(beta)}^{{{t}}}}} = \dfrac{{{num(v)}}}{{{num(1 - beta**t)}}} = {num(ex.result)}")
    ex.text = "bias correction"


def _adam_update(ex, rec, ins, index, trace):
    p, mh, vh = ins
    pv, m, v = float(p.value[index]), float(mh.value[index]), float(vh.value[index])
    lr, wd, eps = rec.meta["lr"], rec.meta["wd"], rec.meta["eps"]
    ex.operands = [(p.name, index), (mh.name, index), (vh.name, index)]
    step = lr * m / (math.sqrt(v) + eps)
    decayed = pv * (1 - lr * wd)
    ex.result = decayed - step
    ex.latex.append(rf"\hat m = {num(m)},\quad \sqrt{{\hat v}} = {num(math.sqrt(v))},\quad \eta\,\dfrac{{\hat m}}{{\sqrt{{\hat v}}+\epsilon}} = {num(lr)} \cdot \dfrac{{{num(m)}}}{{{num(math.sqrt(v))} + 10^{{-8}}}} = {num(step)}")
    if rec.op == "adamw_update":
        ex.latex.append(rf"\theta\,(1-\eta\lambda) = {num(pv)} \cdot (1 - {num(lr)} \cdot {num(wd)}) = {num(decayed)}")
    ex.latex.append(rf"{sub(rec, index)} = {num(decayed)} - {par(step)} = {num(ex.result)}")
    ex.text = "the Adam step" + (" after decoupled weight decay" if wd else "")


def _sgd_buf(ex, rec, ins, index, trace):
    g = ins[0]
    ex.operands = [(g.name, index)]
    ex.result = float(g.value[index])
    ex.latex.append(rf"{sub(rec, index)} = g = {num(ex.result)} \quad (\text{{first step: the buffer starts at the gradient}})")


def _sgd_update(ex, rec, ins, index, trace):
    p, g = ins
    pv, gv, lr = float(p.value[index]), float(g.value[index]), rec.meta["lr"]
    ex.operands = [(p.name, index), (g.name, index)]
    ex.result = pv - lr * gv
    ex.latex.append(rf"{sub(rec, index)} = \theta - \eta\,g = {num(pv)} - {num(lr)} \cdot {par(gv)} = {num(ex.result)}")
    ex.text = "a step against the gradient"


def _stored(ex, rec, ins, index, trace):
    """Values that are given, not computed from other records: parameters at init, inputs, run summaries."""
    v = rec.value[index]
    if rec.op == "input":
        word = trace.labels["vocab"][int(v)] if int(v) >= 0 else "<ignored>"
        ex.latex.append(rf"{sub(rec, index)} = {int(v)}\quad ({text(word)})")
    else:
        ex.latex.append(rf"{sub(rec, index)} = {num(float(v))} \quad \big({rec.formula}\big)")
    ex.operands = [(n, index) for n in rec.inputs if n in trace and trace[n].shape == rec.value.shape]
    ex.text = {"param": "drawn at initialisation", "input": "from the tokenizer"}.get(rec.op, "")


HANDLERS = {
    "param": _stored, "input": _stored, "forward": _stored, "train_loss": _stored, "train_prob": _stored,
    "embedding": _embedding, "add": _add, "mean": _mean, "var": _var, "normalize": _normalize, "affine": _affine,
    "linear": _linear, "split_heads": _split_heads, "matmul": _matmul, "mul": _matmul, "sum": _matmul,
    "scale": _scale, "causal_mask": _causal_mask, "softmax": _softmax, "merge_heads": _merge_heads, "gelu": _gelu,
    "gather": _gather, "cross_entropy": _cross_entropy, "loss_mean": _loss_mean,
    "cross_entropy_backward": _ce_backward, "layernorm_backward": _ln_backward, "gelu_backward": _gelu_backward,
    "softmax_backward": _softmax_backward, "mask_backward": _mask_backward, "merge_qkv": _merge_qkv,
    "embedding_backward": _embedding_backward, "l2_grad": _l2_grad, "adam_m": _adam_moment, "adam_v": _adam_moment,
    "adam_m_hat": _adam_hat, "adam_v_hat": _adam_hat, "adamw_update": _adam_update, "adam_update": _adam_update,
    "sgd_buf": _sgd_buf, "sgd_update": _sgd_update,
}


def jacobian(trace: Trace, name: str, row) -> tuple[np.ndarray, str]:
    """The full Jacobian of one row of a softmax or LayerNorm-normalize record w.r.t. that row's input.

    Returns (J, description) with J[i, j] = d out_i / d in_j. The backward pass never builds this matrix:
    it applies it to the upstream gradient in O(n) (softmax: y * (g - <g, y>); LayerNorm: the rstd formula).
    """
    rec = trace.record(name)
    row = tuple(int(i) for i in row)
    if len(row) != rec.value.ndim - 1:
        raise IndexError(f"jacobian of {name} needs the index of one row: {rec.value.ndim - 1} numbers")
    if rec.op == "softmax":
        y = rec.value[row]
        return np.diag(y) - np.outer(y, y), "diag(y) - y yᵀ"
    if rec.op == "normalize":
        xhat = rec.value[row]
        var = float(trace[rec.inputs[2]][row])
        n = xhat.size
        rstd = 1.0 / math.sqrt(var + rec.meta["eps"])
        return rstd * (np.eye(n) - 1.0 / n - np.outer(xhat, xhat) / n), "(I - 1/C - x̂ x̂ᵀ / C) / √(σ²+ε)"
    raise KeyError(f"no Jacobian for {name} (op {rec.op}): give a softmax or LayerNorm xhat record")
