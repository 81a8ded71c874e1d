"""Pen-and-paper drills: the arithmetic of one op kind on small numbers drawn by a seeded generator.

A drill is not a value of the trace: it is the same computation as the page's step on numbers small enough to do
by hand (a dot product of three small integers, a softmax of exponentials that are given, an Adam step with the
config's own constants). Each function here is the drill of the op kinds whose entry in engine/ops.py names it;
`draw(make, rng, config)` runs one and returns the question and the worked lines (plain text with Unicode symbols:
a drill carries no typeset math, which keeps pages light) and the answer with its tolerance; the numbers change
with the seed, the page and the op.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MINUS = "\u2212"
SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


@dataclass
class Drill:
    op: str
    question: str  # plain text
    lines: list[str]  # the working, plain text, one step a line
    answer: float
    tol: float


def _ints(rng: random.Random, n: int, lo: int = -4, hi: int = 4, nonzero: bool = True) -> list[int]:
    out = []
    while len(out) < n:
        k = rng.randint(lo, hi)
        if k or not nonzero:
            out.append(k)
    return out


def _n(x: Any) -> str:
    """A small number: integers as integers, others with at most 6 decimals, a real minus sign."""
    x = round(float(x), 12)
    s = str(int(x)) if x == int(x) else f"{x:.6f}".rstrip("0").rstrip(".")
    return s.replace("-", MINUS)


def _p(x: Any) -> str:
    """A number in parentheses when negative (inside a sum or a product)."""
    s = _n(x)
    return f"({s})" if s.startswith(MINUS) else s


def _vec(xs: list[Any]) -> str:
    return "(" + ", ".join(_n(x) for x in xs) + ")"


def _sub(k: int) -> str:
    return str(k).translate(SUB)


def _dot_line(lhs: str, a: list[int], b: list[int]) -> str:
    total = sum(x * y for x, y in zip(a, b))
    return f"{lhs} = " + " + ".join(f"{_p(x)}·{_p(y)}" for x, y in zip(a, b)) + f" = {_n(total)}"


def _const(x: float) -> str:
    """A config constant as written in the config: 0.01, 1e-08."""
    return repr(float(x)).replace("-", MINUS)


def draw(make: Callable[[random.Random, dict], Drill], rng: random.Random, config: dict) -> Drill:
    """The drill `make` (an op kind's, engine/ops.py) on numbers drawn by `rng`."""
    d = make(rng, config)
    if abs(round(d.answer, 4) - d.answer) > 1e-12:  # a repeating decimal: three decimals are enough
        d.tol = max(d.tol, 0.001)
    return d


# -- forward --------------------------------------------------------------------------------------------------
def _llama(config: dict) -> bool:
    return config.get("model", {}).get("arch") == "llama"


def embedding(rng: random.Random, config: dict) -> Drill:
    tid, t, c = rng.randint(0, 3), rng.randint(0, 3), rng.randint(0, 2)
    row, pos = _ints(rng, 3), _ints(rng, 3)
    if _llama(config):  # no position table: the input vector is the token's row (positions enter by rotation)
        return Drill("embedding", f"Token id {tid} sits at position {t}. Row {tid} of the token table is {_vec(row)}; "
                     f"a Llama has no position table. What is entry {c} of the input vector?",
                     [f"x{_sub(c)} = W_te[{tid}, {c}] = {_n(row[c])}"], row[c], 0.0)
    return Drill("embedding", f"Token id {tid} sits at position {t}. Row {tid} of the token table is {_vec(row)} and "
                 f"row {t} of the position table is {_vec(pos)}. What is entry {c} of the input vector (token "
                 "embedding plus position embedding)?",
                 [f"x{_sub(c)} = W_te[{tid}, {c}] + W_pe[{t}, {c}] = {_p(row[c])} + {_p(pos[c])} = "
                  f"{_n(row[c] + pos[c])}"], row[c] + pos[c], 0.0)


def add(rng: random.Random, config: dict) -> Drill:
    x, h = _ints(rng, 4), _ints(rng, 4)
    c = rng.randint(0, 3)
    return Drill("add", f"The stream holds x = {_vec(x)} and the branch returns h = {_vec(h)}. What is entry {c} of "
                 "the new stream x + h?",
                 [f"(x + h){_sub(c)} = {_p(x[c])} + {_p(h[c])} = {_n(x[c] + h[c])}"], x[c] + h[c], 0.0)


def mean(rng: random.Random, config: dict) -> Drill:
    row = _ints(rng, 3, -5, 9, nonzero=False)
    row.append(rng.choice([k for k in range(-6, 13) if (sum(row) + k) % 4 == 0]))
    s = sum(row)
    return Drill("mean", f"A row of four entries is {_vec(row)}. What is its mean μ?",
                 [f"Σ x = {' + '.join(_p(v) for v in row)} = {_n(s)}", f"μ = {_n(s)} / 4 = {_n(s / 4)}"], s / 4, 0.0)


def var(rng: random.Random, config: dict) -> Drill:
    mu = rng.randint(-3, 3)
    dev = rng.choice([[-1, -1, 1, 1], [-2, 0, 0, 2], [-3, 1, 1, 1], [-2, -1, 1, 2], [-1, -1, -1, 3]])
    scale = rng.choice([1, 2])
    dev = [d * scale for d in dev]
    rng.shuffle(dev)
    row = [mu + d for d in dev]
    s = sum(d * d for d in dev)
    return Drill("var", f"A row of four entries is {_vec(row)}, with mean μ = {_n(mu)}. What is its variance σ² "
                 "(the mean squared distance from μ: divide by 4)?",
                 [f"Σ (x − μ)² = {' + '.join(f'{_p(d)}²' for d in dev)} = {s}", f"σ² = {s} / 4 = {_n(s / 4)}"],
                 s / 4, 0.0)


def normalize(rng: random.Random, config: dict) -> Drill:
    mu, sd = rng.randint(-4, 4), rng.choice([1, 2, 4, 5])
    x = mu + rng.choice([-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6])
    ans = (x - mu) / sd
    return Drill("normalize", f"A row has mean μ = {_n(mu)} and variance σ² = {sd * sd}. Ignoring ε, what does "
                 f"LayerNorm make of the entry x = {_n(x)}?",
                 [f"x̂ = (x − μ) / √σ² = ({_n(x)} − {_p(mu)}) / √{sd * sd} = {_n(x - mu)} / {sd} = {_n(ans)}"],
                 ans, 1e-9)


def affine(rng: random.Random, config: dict) -> Drill:
    xh = rng.choice([-1.5, -1, -0.5, 0.5, 1, 1.5, 2])
    g, b = rng.choice([-2, -1, 2, 3]), rng.randint(-2, 2)
    ans = g * xh + b
    return Drill("affine", f"After normalising, an entry is x̂ = {_n(xh)}. Its learned weight is γ = {_n(g)} and its "
                 f"bias β = {_n(b)}. What comes out of LayerNorm?",
                 [f"y = γ·x̂ + β = {_p(g)}·{_p(xh)} + {_p(b)} = {_n(ans)}"], ans, 1e-9)


def linear(rng: random.Random, config: dict) -> Drill:
    x, w = _ints(rng, 3, -3, 3), _ints(rng, 3, -3, 3)
    b = rng.randint(-2, 2)
    total = sum(p * q for p, q in zip(x, w)) + b
    return Drill("linear", f"A row x = {_vec(x)} goes through a linear layer. Column j of its weight matrix is "
                 f"{_vec(w)} and the bias bⱼ = {_n(b)}. What is output j?",
                 [_dot_line("x · wⱼ", x, w), f"yⱼ = {_n(total - b)} + {_p(b)} = {_n(total)}"], total, 0.0)


def bias_sum(rng: random.Random, config: dict) -> Drill:
    g = _ints(rng, rng.choice([3, 4]), -4, 4)
    return Drill("sum", "A bias is added at every position, so its gradient is the sum of the gradients reaching its "
                 f"output at all positions. Those are {_vec(g)}: what is the bias's gradient?",
                 [f"Σₜ gₜ = {' + '.join(_p(x) for x in g)} = {_n(sum(g))}"], sum(g), 0.0)


def dot(rng: random.Random, config: dict) -> Drill:
    n = rng.choice([3, 4])
    a, b = _ints(rng, n, -3, 3), _ints(rng, n, -3, 3)
    return Drill("matmul", "Every entry of a matrix product is a dot product of a row and a column. What is a · b "
                 f"for a = {_vec(a)} and b = {_vec(b)}?",
                 [_dot_line("a · b", a, b)], sum(x * y for x, y in zip(a, b)), 0.0)


def mul(rng: random.Random, config: dict) -> Drill:
    g, w = _ints(rng, 1)[0], rng.choice([-1.5, -0.5, 0.5, 2, 3])
    norm = "an RMSNorm" if _llama(config) else "a LayerNorm"
    return Drill("mul", f"The gradient reaching {norm} output is g = {_n(g)} and its weight is γ = {_n(w)}. "
                 "What is the gradient of x̂ there?",
                 [f"∂L/∂x̂ = g·γ = {_p(g)}·{_p(w)} = {_n(g * w)}"], g * w, 1e-9)


def split(rng: random.Random, config: dict) -> Drill:
    H, D = rng.choice([2, 3, 4]), rng.choice([2, 4, 8])
    C = H * D
    part, h, d = rng.randint(0, 2), rng.randint(0, H - 1), rng.randint(0, D - 1)
    col = part * C + h * D + d
    if _llama(config):  # separate projections: Q_cat (or K_cat, V_cat) holds the heads side by side
        return Drill("split_heads", f"The query projection Q_cat has C = {C} columns: H = {H} heads of D = {D}, side "
                     f"by side. Which column (counting from 0) holds head {h}, dimension {d}?",
                     [f"column = h·D + d = {h}·{D} + {d} = {h * D + d}"], h * D + d, 0.0)
    return Drill("split_heads", f"The packed projection has 3C columns, Q then K then V, with C = {C} split into "
                 f"H = {H} heads of D = {D}. Which column (counting from 0) holds {'QKV'[part]} of head {h}, "
                 f"dimension {d}?",
                 [f"column = {part}·C + h·D + d = {part}·{C} + {h}·{D} + {d} = {col}"], col, 0.0)


def merge(rng: random.Random, config: dict) -> Drill:
    H, D = rng.choice([2, 3, 4]), rng.choice([2, 4, 8])
    h, d = rng.randint(0, H - 1), rng.randint(0, D - 1)
    return Drill("merge_heads", f"{H} heads of size D = {D} are put side by side. Which column (from 0) of the "
                 f"merged row holds head {h}, dimension {d}?",
                 [f"column = h·D + d = {h}·{D} + {d} = {h * D + d}"], h * D + d, 0.0)


def scale(rng: random.Random, config: dict) -> Drill:
    D = rng.choice([4, 9, 16, 25])
    r = math.isqrt(D)
    s = rng.randint(-4, 4) * r + rng.choice([0, 1])
    return Drill("scale", f"A score is S = {_n(s)} and the head size is D = {D}. What is the scaled score S / √D?",
                 [f"S / √D = {_n(s)} / √{D} = {_n(s)} / {r} = {_n(s / r)}"], s / r, 1e-9)


def mask(rng: random.Random, config: dict) -> Drill:
    n = rng.randint(3, 9)
    kept = n * (n + 1) // 2
    return Drill("causal_mask", f"A text has {n} tokens, so each head has a {n} × {n} matrix of scores. How many of "
                 "its entries does the causal mask keep (key s ≤ query t)?",
                 [f"1 + 2 + ⋯ + {n} = {n}·{n + 1} / 2 = {kept}"], kept, 0.0)


def softmax(rng: random.Random, config: dict) -> Drill:
    e = [rng.randint(1, 6) for _ in range(rng.choice([3, 4]))]
    k = rng.randint(0, len(e) - 1)
    total = sum(e)
    return Drill("softmax", f"The exponentials e^(xⱼ − m) of a row are {_vec(e)}. What is softmax entry {k} "
                 "(counting from 0)?",
                 [f"Σⱼ e^(xⱼ − m) = {' + '.join(map(str, e))} = {total}",
                  f"y{_sub(k)} = {e[k]} / {total} = {_n(round(e[k] / total, 6))}"], e[k] / total, 0.001)


def gelu(rng: random.Random, config: dict) -> Drill:
    u = rng.choice([-2, -1, -0.5, 0.5, 1, 2, 3])
    t = round(math.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)), 2)
    ans = 0.5 * u * (1 + t)
    return Drill("gelu", f"For u = {_n(u)} the tanh inside GELU, tanh(√(2/π)·(u + 0.044715·u³)), is {_n(t)} (to two "
                 "decimals). What is GELU(u) = ½·u·(1 + tanh)?",
                 [f"½·{_p(u)}·(1 + {_p(t)}) = {_n(ans)}"], ans, 1e-6)


def gather(rng: random.Random, config: dict) -> Drill:
    probs = rng.choice([[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1]])
    y = rng.randint(0, 3)
    return Drill("gather", f"A row of predicted probabilities over four words is {_vec(probs)} and the next word has "
                 f"id {y}. What probability did the model give the right word?",
                 [f"p_y = p{_sub(y)} = {_n(probs[y])}"], probs[y], 1e-9)


def cross_entropy(rng: random.Random, config: dict) -> Drill:
    lse = rng.choice([1.5, 2, 2.5, 3])
    zy = rng.choice([-1, -0.5, 0, 0.5, 1])
    return Drill("cross_entropy", f"A row of logits has log Σᵥ e^(zᵥ) = {_n(lse)} and the logit of the right next "
                 f"word is z_y = {_n(zy)}. What is the loss at this position?",
                 [f"ℓ = log Σᵥ e^(zᵥ) − z_y = {_n(lse)} − {_p(zy)} = {_n(lse - zy)}"], lse - zy, 1e-9)


def loss_mean(rng: random.Random, config: dict) -> Drill:
    losses = [rng.choice([1, 1.5, 2, 2.5, 3]) for _ in range(4)]
    pad = rng.randint(0, 3)
    valid = [x for i, x in enumerate(losses) if i != pad]
    ans = sum(valid) / len(valid)
    shown = ", ".join(_n(x) if i != pad else "0 (padding)" for i, x in enumerate(losses))
    return Drill("loss_mean", f"Four positions have losses ({shown}); position {pad} is padding and has no target. "
                 "What is the loss, the mean over the positions that have a target?",
                 [f"L = ({' + '.join(_n(x) for x in valid)}) / {len(valid)} = {_n(ans)}"], ans, 1e-6)


# -- Llama's forward kinds -------------------------------------------------------------------------------------
def rope_angle(rng: random.Random, config: dict) -> Drill:
    D, j, t, base = 4, 1, rng.randint(1, 7), rng.choice([100, 10000])
    rate = 1 / math.isqrt(base)  # base^(-2j/D) with 2j/D = 1/2
    ans = t * rate
    return Drill("rope_table", f"A head has D = {D} dimensions, so {D // 2} pairs, and the rotary base is θ_rope = "
                 f"{base}. Pair j turns by t·θ_rope^(−2j/D) radians at position t. What is the angle of pair {j} at "
                 f"position {t}?",
                 [f"θ_rope^(−2·{j}/{D}) = {base}^({MINUS}1/2) = 1/√{base} = {_n(rate)}",
                  f"angle = {t}·{_n(rate)} = {_n(ans)}"], ans, 1e-9)


def mean_square(rng: random.Random, config: dict) -> Drill:
    row = _ints(rng, 4, -3, 3)
    s = sum(v * v for v in row)
    return Drill("mean_square", f"A row of four entries is {_vec(row)}. What is its mean of squares ν, the number "
                 "RMSNorm takes the square root of (no mean is subtracted first)?",
                 [f"Σ x² = {' + '.join(f'{_p(v)}²' for v in row)} = {s}", f"ν = {s} / 4 = {_n(s / 4)}"], s / 4, 1e-9)


def rms_normalize(rng: random.Random, config: dict) -> Drill:
    r = rng.choice([1, 2, 4, 5])
    x = rng.choice([-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6])
    ans = x / r
    return Drill("rms_normalize", f"A row's mean of squares is ν = {r * r}. Ignoring ε, what does RMSNorm make of the "
                 f"entry x = {_n(x)}?",
                 [f"x̂ = x / √ν = {_n(x)} / √{r * r} = {_n(x)} / {r} = {_n(ans)}"], ans, 1e-9)


def rope(rng: random.Random, config: dict) -> Drill:
    c, s = rng.choice([(0.6, 0.8), (0.8, 0.6), (0, 1), (-0.6, 0.8)])
    a, b = _ints(rng, 2, -3, 3)
    first = rng.random() < 0.5
    ans = a * c - b * s if first else b * c + a * s
    which = "first (dimension d)" if first else "second (dimension d + D/2)"
    line = (f"a·cos − b·sin = {_p(a)}·{_p(c)} − {_p(b)}·{_p(s)} = {_n(ans)}" if first else
            f"b·cos + a·sin = {_p(b)}·{_p(c)} + {_p(a)}·{_p(s)} = {_n(ans)}")
    return Drill("rope", f"A query's pair of dimensions (d, d + D/2) holds (a, b) = ({_n(a)}, {_n(b)}), and its angle "
                 f"at this position has cos = {_n(c)}, sin = {_n(s)}. Rotary embedding turns the pair by that angle: "
                 f"what is its {which} entry afterwards?", [line], ans, 1e-9)


def repeat_kv(rng: random.Random, config: dict) -> Drill:
    kv, r = rng.choice([1, 2, 3]), rng.choice([2, 3, 4])
    h = rng.randint(0, kv * r - 1)
    return Drill("repeat_kv", f"A block has H = {kv * r} query heads and H_kv = {kv} key/value head"
                 f"{'s' if kv > 1 else ''}: each K/V head serves r = {r} query heads in a row. Which K/V head (from 0) "
                 f"does query head {h} read?", [f"⌊h / r⌋ = ⌊{h} / {r}⌋ = {h // r}"], h // r, 0.0)


def silu(rng: random.Random, config: dict) -> Drill:
    u, sig = rng.choice([(-2, 0.12), (-1, 0.27), (1, 0.73), (2, 0.88), (3, 0.95)])
    ans = u * sig
    return Drill("silu", f"For u = {_n(u)} the sigmoid σ(u) = 1 / (1 + e^(−u)) is {_n(sig)} (to two decimals). What is "
                 "SiLU(u) = u·σ(u)?", [f"{_p(u)}·{_n(sig)} = {_n(ans)}"], ans, 1e-6)


# -- backward -------------------------------------------------------------------------------------------------
def cross_entropy_backward(rng: random.Random, config: dict) -> Drill:
    probs = rng.choice([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.125, 0.375, 0.5]])
    y, v, n = rng.randint(0, 2), rng.randint(0, 2), rng.choice([1, 2, 4])
    hit = 1 if v == y else 0
    ans = (probs[v] - hit) / n
    return Drill("cross_entropy_backward", f"A position predicts {_vec(probs)} over three words; the right word has "
                 f"id {y}, and the batch has N = {n} target{'s' if n > 1 else ''}. What is the gradient of the loss "
                 f"with respect to logit {v} at this position, (p{_sub(v)} − [{v} = y]) / N?",
                 [f"({_n(probs[v])} − {hit}) / {n} = {_n(ans)}"], ans, 1e-9)


def layernorm_backward(rng: random.Random, config: dict) -> Drill:
    xh = [-1, -1, 1, 1]
    rng.shuffle(xh)
    g = _ints(rng, 4, -4, 4, nonzero=False)
    c = rng.randint(0, 3)
    mg = sum(g) / 4
    mgx = sum(a * b for a, b in zip(g, xh)) / 4
    ans = g[c] - mg - xh[c] * mgx
    return Drill("layernorm_backward", f"A LayerNorm row has x̂ = {_vec(xh)} and 1/√(σ² + ε) = 1. The gradient "
                 f"reaching x̂ is g = {_vec(g)}. What is the gradient of input {c}, g{_sub(c)} − mean(g) − "
                 f"x̂{_sub(c)}·mean(g·x̂)?",
                 [f"mean(g) = {_n(mg)},  mean(g·x̂) = {_n(mgx)}",
                  f"{_p(g[c])} − {_p(mg)} − {_p(xh[c])}·{_p(mgx)} = {_n(ans)}"], ans, 1e-9)


def gelu_backward(rng: random.Random, config: dict) -> Drill:
    u = rng.choice([-1, 0, 1, 2])
    k, c = math.sqrt(2 / math.pi), 0.044715
    t = math.tanh(k * (u + c * u**3))
    d = round(0.5 * (1 + t) + 0.5 * u * (1 - t * t) * k * (1 + 3 * c * u * u), 2)
    g = _ints(rng, 1)[0]
    return Drill("gelu_backward", f"At u = {_n(u)} the slope of GELU is GELU′(u) = {_n(d)} (to two decimals). The "
                 f"gradient reaching the GELU output is {_n(g)}. What gradient reaches u?",
                 [f"g·GELU′(u) = {_p(g)}·{_p(d)} = {_n(g * d)}"], g * d, 1e-6)


def softmax_backward(rng: random.Random, config: dict) -> Drill:
    y = rng.choice([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [0.5, 0.5, 0.0]])
    g = _ints(rng, 3, -4, 4, nonzero=False)
    k = rng.randint(0, 2)
    dot = sum(a * b for a, b in zip(y, g))
    ans = y[k] * (g[k] - dot)
    return Drill("softmax_backward", f"A softmax row is y = {_vec(y)} and the gradient reaching it is g = {_vec(g)}. "
                 f"What is the gradient of input {k}, y{_sub(k)}·(g{_sub(k)} − Σⱼ yⱼ·gⱼ)?",
                 ["Σⱼ yⱼ·gⱼ = " + " + ".join(f"{_n(a)}·{_p(b)}" for a, b in zip(y, g)) + f" = {_n(dot)}",
                  f"{_n(y[k])}·({_p(g[k])} − {_p(dot)}) = {_n(ans)}"], ans, 1e-9)


def embedding_backward(rng: random.Random, config: dict) -> Drill:
    ids = [rng.randint(0, 2) for _ in range(4)]
    word = rng.choice(ids)
    rows = [_ints(rng, 1)[0] for _ in ids]
    hits = [r for i, r in zip(ids, rows) if i == word]
    return Drill("embedding_backward", f"The input ids are {_vec(ids)} and, in one dimension, the gradients reaching "
                 f"the four input vectors are {_vec(rows)}. What is the gradient of the token table's row {word} in "
                 "that dimension?",
                 [f"the positions whose id is {word}: {' + '.join(_p(r) for r in hits)} = {_n(sum(hits))}"],
                 sum(hits), 0.0)


def rmsnorm_backward(rng: random.Random, config: dict) -> Drill:
    xh = [-1, -1, 1, 1]
    rng.shuffle(xh)
    g = _ints(rng, 4, -4, 4, nonzero=False)
    c = rng.randint(0, 3)
    mgx = sum(a * b for a, b in zip(g, xh)) / 4
    ans = g[c] - xh[c] * mgx
    return Drill("rmsnorm_backward", f"An RMSNorm row has x̂ = {_vec(xh)} and 1/√(ν + ε) = 1. The gradient reaching x̂ "
                 f"is g = {_vec(g)}. What is the gradient of input {c}, g{_sub(c)} − x̂{_sub(c)}·mean(g·x̂)? (No "
                 "mean was subtracted in the forward pass, so no mean of g is subtracted here.)",
                 [f"mean(g·x̂) = {_n(mgx)}", f"{_p(g[c])} − {_p(xh[c])}·{_p(mgx)} = {_n(ans)}"], ans, 1e-9)


def rope_backward(rng: random.Random, config: dict) -> Drill:
    c, s = rng.choice([(0.6, 0.8), (0.8, 0.6), (0, 1)])
    ga, gb = _ints(rng, 2, -3, 3)
    ans = ga * c + gb * s
    return Drill("rope_backward", f"A pair was turned by an angle with cos = {_n(c)}, sin = {_n(s)}. The gradient "
                 f"reaching the turned pair is ({_n(ga)}, {_n(gb)}). The backward pass turns it back by the same "
                 "angle (the transposed rotation): what is the gradient of the pair's first entry?",
                 [f"g_a·cos + g_b·sin = {_p(ga)}·{_p(c)} + {_p(gb)}·{_p(s)} = {_n(ans)}"], ans, 1e-9)


def repeat_kv_backward(rng: random.Random, config: dict) -> Drill:
    r = rng.choice([2, 3])
    g = _ints(rng, r, -4, 4)
    return Drill("repeat_kv_backward", f"A key/value head serves {r} query heads, whose gradients reaching its copies "
                 f"are, in one entry, {_vec(g)}. What is the gradient of the shared key/value head there?",
                 [f"Σ = {' + '.join(_p(x) for x in g)} = {_n(sum(g))}"], sum(g), 0.0)


def silu_backward(rng: random.Random, config: dict) -> Drill:
    u, sig = rng.choice([(-1, 0.25), (0, 0.5), (1, 0.75), (2, 0.875)])
    d = sig * (1 + u * (1 - sig))
    g = _ints(rng, 1)[0]
    return Drill("silu_backward", f"At u = {_n(u)} take σ(u) ≈ {_n(sig)}. The slope of SiLU is "
                 f"σ(u)·(1 + u·(1 − σ(u))), and the gradient reaching the SiLU output is {_n(g)}. What gradient "
                 "reaches u?",
                 [f"slope = {_n(sig)}·(1 + {_p(u)}·(1 − {_n(sig)})) = {_n(d)}", f"{_p(g)}·{_p(d)} = {_n(g * d)}"],
                 g * d, 1e-9)


# -- the optimizer --------------------------------------------------------------------------------------------
def _opt(config: dict) -> dict:
    return config.get("optimizer", {})


def l2_grad(rng: random.Random, config: dict) -> Drill:
    wd = float(_opt(config).get("weight_decay", 0.01))
    p, g = _ints(rng, 1)[0], _ints(rng, 1)[0]
    ans = g + wd * p
    return Drill("l2_grad", f"With L2 weight decay λ = {_const(wd)}, what does the optimizer use as the gradient of "
                 f"a weight θ = {_n(p)} whose gradient is g = {_n(g)}?",
                 [f"g + λ·θ = {_p(g)} + {_const(wd)}·{_p(p)} = {_n(ans)}"], ans, 1e-9)


def adam_m(rng: random.Random, config: dict) -> Drill:
    b1 = float((_opt(config).get("betas") or [0.9, 0.999])[0])
    g = _ints(rng, 1, -5, 5)[0]
    m = (1 - b1) * g
    return Drill("adam_m", f"On the first step (m₀ = 0, β₁ = {_const(b1)}) a weight's gradient is g = {_n(g)}. What is "
                 "the bias-corrected first moment m̂₁ = m₁ / (1 − β₁)?",
                 [f"m₁ = (1 − β₁)·g = {_n(1 - b1)}·{_p(g)} = {_n(m)}",
                  f"m̂₁ = {_n(m)} / {_n(1 - b1)} = {_n(m / (1 - b1))}"],
                 m / (1 - b1), 1e-9)


def adam_v(rng: random.Random, config: dict) -> Drill:
    b2 = float((_opt(config).get("betas") or [0.9, 0.999])[1])
    g = _ints(rng, 1, -5, 5)[0]
    v = (1 - b2) * g * g
    return Drill("adam_v", f"On the first step (v₀ = 0, β₂ = {_const(b2)}) a weight's gradient is g = {_n(g)}. What is "
                 "the second moment v₁ = (1 − β₂)·g²?",
                 [f"v₁ = {_n(1 - b2)}·{_p(g)}² = {_n(v)}"], v, 1e-9)


def update(rng: random.Random, config: dict) -> Drill:
    opt = _opt(config)
    name = opt.get("name", "adamw")
    lr, wd = float(opt.get("lr", 0.01)), float(opt.get("weight_decay", 0.01))
    p, g = _ints(rng, 1)[0], _ints(rng, 1)[0]
    if name == "sgd":
        grad = g + wd * p
        ans = p - lr * grad
        return Drill("sgd_update", f"SGD with η = {_const(lr)} and weight decay λ = {_const(wd)} (added to the "
                     f"gradient; on the first step momentum changes nothing): what does a weight θ = {_n(p)} with "
                     f"gradient g = {_n(g)} become?",
                     [f"g + λ·θ = {_p(g)} + {_const(wd)}·{_p(p)} = {_n(grad)}",
                      f"θ − η·(g + λ·θ) = {_p(p)} − {_const(lr)}·{_p(grad)} = {_n(ans)}"], ans, 1e-6)
    sign = 1 if g > 0 else -1
    if name == "adam":
        ans = p - lr * sign
        return Drill("adam_update", f"Adam, first step, η = {_const(lr)}: then m̂ / √v̂ is the sign of the gradient "
                     f"(ignore ε and the small L2 term). What does a weight θ = {_n(p)} with gradient g = {_n(g)} "
                     "become?",
                     [f"m̂ / √v̂ = {_n(g)} / {abs(g)} = {_n(sign)}",
                      f"θ − η·{_p(sign)} = {_p(p)} − {_const(lr)}·{_p(sign)} = {_n(ans)}"], ans, 1e-5)
    ans = p * (1 - lr * wd) - lr * sign
    return Drill("adamw_update", f"AdamW, first step, η = {_const(lr)}, λ = {_const(wd)}: then m̂ / √v̂ is the sign of "
                 f"the gradient (ignore ε). What does a weight θ = {_n(p)} with gradient g = {_n(g)} become, "
                 "θ·(1 − η·λ) − η·m̂ / √v̂?",
                 [f"m̂ / √v̂ = {_n(g)} / {abs(g)} = {_n(sign)}",
                  f"{_p(p)}·(1 − {_const(lr)}·{_const(wd)}) − {_const(lr)}·{_p(sign)} = {_n(ans)}"], ans, 1e-6)
