"""The Llama forward pages (a `model.arch: llama` run, block 0): RMSNorm's worked row and what dropping LayerNorm's
mean changes, the rotary embedding's angles and one worked pair, and which query heads share which key/value head.

The worked row and column of RMSNorm are LayerNorm's (`ln.row`, `ln.col`), the worked position of the projections
the queries-keys-values page's (`attn.qkv_row`), so both architectures' pages work through the same entries.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from markupsafe import Markup

from site_build import format as fmt
from site_build.facts import attn, ln
from site_build.facts.run import C, D, H, n0


def _row(trace: Any) -> np.ndarray:
    """The worked row of RMSNorm's input (block 0's ln_1: the embeddings)."""
    return np.asarray(trace[trace.record("L0.ln_1.xhat").inputs[0]][0, ln.row(trace)], dtype=float)


# -- RMSNorm: the worked row -----------------------------------------------------------------------------------------
def ms(trace: Any) -> float:
    """ν: the mean of the squares of the worked row."""
    return float(trace["L0.ln_1.ms"][0, ln.row(trace)])


def rms(trace: Any) -> float:
    """√(ν + ε): what the worked row is divided by."""
    return math.sqrt(ms(trace) + ln.eps(trace))


def mean(trace: Any) -> float:
    """μ: the mean of the worked row (LayerNorm would subtract it; RMSNorm does not)."""
    return float(_row(trace).mean())


def var(trace: Any) -> float:
    """σ²: the variance of the worked row (population, as LayerNorm computes it)."""
    return float(_row(trace).var())


def mean_squared(trace: Any) -> float:
    """μ²: the part of ν that is the row's mean (ν = σ² + μ²)."""
    return mean(trace) ** 2


def mean_share(trace: Any) -> float:
    """μ²/ν of the worked row: the fraction of its mean square that centring would remove."""
    return mean_squared(trace) / ms(trace)


def mean_share_max(trace: Any) -> float:
    """The largest μ²/ν over the real rows of the first text."""
    x = np.asarray(trace[trace.record("L0.ln_1.xhat").inputs[0]][0, :n0(trace)], dtype=float)
    return float((x.mean(axis=1) ** 2 / (x * x).mean(axis=1)).max())


def mean_percent(trace: Any) -> float:
    """μ²/ν of the worked row, in percent."""
    return 100 * mean_share(trace)


def mean_percent_max(trace: Any) -> float:
    """The largest μ²/ν over the real rows of the first text, in percent."""
    return 100 * mean_share_max(trace)


SMALL_MEAN = 0.2  # a mean that holds less than this share of every row's mean square is "a small part of its size"


def mean_small(trace: Any) -> bool:
    """Whether the mean is a small part of every row's size (μ²/ν below a fifth on each real row of text 1), so that
    RMSNorm and LayerNorm give nearly the same rows."""
    return mean_share_max(trace) < SMALL_MEAN


def xhat_mean(trace: Any) -> float:
    """The mean of the normalised worked row: μ/√(ν+ε), not zero (RMSNorm does not centre)."""
    return float(trace["L0.ln_1.xhat"][0, ln.row(trace)].mean())


def ln_xhat(trace: Any) -> np.ndarray:
    """The worked row as LayerNorm would normalise it, (x − μ)/√(σ² + ε), with the same ε."""
    x = _row(trace)
    return (x - x.mean()) / math.sqrt(x.var() + ln.eps(trace))


def ln_gap(trace: Any) -> float:
    """The largest difference between the RMSNorm and the LayerNorm of the worked row."""
    return float(np.abs(np.asarray(trace["L0.ln_1.xhat"][0, ln.row(trace)]) - ln_xhat(trace)).max())


def _rmsnorm(x: np.ndarray, eps: float) -> np.ndarray:
    return x / math.sqrt(float((x * x).mean()) + eps)


def shift_change(trace: Any) -> float:
    """The largest change of the normalised worked row when its own RMS is added to every entry (LayerNorm's would
    not move at all)."""
    x, eps = _row(trace), ln.eps(trace)
    return float(np.abs(_rmsnorm(x + rms(trace), eps) - _rmsnorm(x, eps)).max())


def shift_change_ln(trace: Any) -> float:
    """The same change for LayerNorm (zero up to rounding: subtracting the mean undoes any shift)."""
    x, eps = _row(trace), ln.eps(trace)

    def layernorm(v: np.ndarray) -> np.ndarray:
        return (v - v.mean()) / math.sqrt(float(v.var()) + eps)

    return float(np.abs(layernorm(x + rms(trace)) - layernorm(x)).max())


def jacobian(trace: Any) -> np.ndarray:
    """J = (I − x̂ x̂ᵀ/C) / √(ν + ε): the Jacobian of the worked row's x̂ w.r.t. its input."""
    xhat = np.asarray(trace["L0.ln_1.xhat"][0, ln.row(trace)], dtype=float)
    return (np.eye(C(trace)) - np.outer(xhat, xhat) / C(trace)) / rms(trace)


def jac_radial(trace: Any) -> float:
    """|J x| for the worked row x: zero but for ε (growing the row along itself does not change x̂)."""
    return float(np.linalg.norm(jacobian(trace) @ _row(trace)))


def jac_ones(trace: Any) -> float:
    """|J 1|: how much x̂ moves per unit shift of every entry (LayerNorm's would be exactly 0)."""
    return float(np.linalg.norm(jacobian(trace) @ np.ones(C(trace))))


def jac_diag(trace: Any) -> float:
    """J[c, c] of the worked element: (1 − x̂_c²/C) / √(ν + ε)."""
    return float(jacobian(trace)[ln.col(trace), ln.col(trace)])


def inv_rms(trace: Any) -> float:
    """1/√(ν + ε) of the worked row: the diagonal of J but for the x̂² / C correction."""
    return 1 / rms(trace)


def fresh(trace: Any) -> bool:
    """Whether ln_1's gain is all ones (its initial value)."""
    return bool((np.asarray(trace["L0.ln_1.weight"]) == 1).all())


class Extreme(NamedTuple):
    """An element of the worked RMSNorm row: its dimension, its value coming in and its normalised value."""

    c: int
    x: float
    xhat: float


def extremes(trace: Any) -> tuple[Extreme, Extreme]:
    """The largest and the smallest element of the worked row as it comes in (the lower dimension on a tie)."""
    x, xhat = _row(trace), np.asarray(trace["L0.ln_1.xhat"][0, ln.row(trace)], dtype=float)
    hi, lo = int(x.argmax()), int(x.argmin())
    return Extreme(hi, float(x[hi]), float(xhat[hi])), Extreme(lo, float(x[lo]), float(xhat[lo]))


def aloud(trace: Any) -> Markup:
    """The worked RMSNorm row in words: its size, and where its largest and smallest numbers land (two significant
    digits, the token named)."""
    r = ln.row(trace)
    hi, lo = extremes(trace)

    def n(v: float) -> str:
        return fmt.sig(float(v), 2)

    word = Markup("“{}”").format(fmt.html_words(trace.labels["inputs"][0][r]))
    return Markup("Row {} ({}) comes in with root mean square {} and mean {}. Its largest number, {} (dimension {}), "
                  "is {} times the root mean square, so it becomes {}; its smallest, {} (dimension {}), becomes {}. "
                  "Every number keeps its sign, because nothing was subtracted.").format(
        r, word, n(rms(trace)), n(mean(trace)), n(hi.x), hi.c, n(hi.xhat), n(hi.xhat), n(lo.x), lo.c, n(lo.xhat))


# -- the projections and the heads ---------------------------------------------------------------------------------
def kv_heads(trace: Any) -> int:
    """H_kv: the key/value heads per block."""
    return int(trace.config["model"]["n_kv_heads"])


def group(trace: Any) -> int:
    """r = H / H_kv: the query heads each key/value head serves."""
    return H(trace) // kv_heads(trace)


def kv_dim(trace: Any) -> int:
    """H_kv · D: the width of the keys (and of the values) before the split into heads."""
    return kv_heads(trace) * D(trace)


def kv_head(trace: Any) -> int:
    """The key/value head the worked split is shown for: the one the last query head reads."""
    return (H(trace) - 1) // group(trace)


def kv_col(trace: Any) -> int:
    """The column of the keys and values worked in full: the fourth, or the last if they are narrower."""
    return min(3, kv_dim(trace) - 1)


class Group(NamedTuple):
    """A key/value head and the query heads that read it."""

    g: int
    heads: list[int]


def groups(trace: Any) -> list[Group]:
    """Every key/value head with its query heads (Hugging Face's repeat_kv: consecutive, g·r to g·r + r − 1)."""
    r = group(trace)
    return [Group(g, list(range(g * r, (g + 1) * r))) for g in range(kv_heads(trace))]


def kv_weights(trace: Any) -> int:
    """The weights of W_K and W_V together."""
    return int(np.asarray(trace["L0.attn.k_proj.weight"]).size + np.asarray(trace["L0.attn.v_proj.weight"]).size)


def kv_weights_full(trace: Any) -> int:
    """What W_K and W_V would hold with a key/value head per query head (2 C²)."""
    return 2 * C(trace) * C(trace)


def cache_numbers(trace: Any) -> int:
    """Numbers a generating model keeps per position and block for its keys and values: 2 · H_kv · D."""
    return 2 * kv_dim(trace)


def cache_numbers_full(trace: Any) -> int:
    """The same with a key/value head per query head: 2 · H · D = 2C."""
    return 2 * C(trace)


# -- rotary position embeddings ----------------------------------------------------------------------------------------
def theta(trace: Any) -> float:
    """rope_theta: the base of the rotary frequencies."""
    return float(trace.record("rope.cos").meta["theta"])


def pairs(trace: Any) -> int:
    """D/2: the rotary pairs of a head."""
    return D(trace) // 2


def inv_freq(trace: Any, i: int) -> float:
    """rope_theta^(−2i/D): the angle pair i turns by per position."""
    return theta(trace) ** (-2 * i / D(trace))


def angle(trace: Any, p: int, i: int) -> float:
    """θ_{p,i} = p · rope_theta^(−2i/D)."""
    return p * inv_freq(trace, i)


def slowest_turns(trace: Any) -> float:
    """How far the slowest pair has turned at the last position of the table, in radians."""
    return angle(trace, int(trace["rope.cos"].shape[0]) - 1, pairs(trace) - 1)


def pos(trace: Any) -> int:
    """The position whose rotation is worked: the queries-keys-values page's worked position."""
    return attn.qkv_row(trace)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Hugging Face's rotary embedding of vectors x (last axis D) with tables cos, sin: x cos + rotate_half(x) sin."""
    half = x.shape[-1] // 2
    turned = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + turned * sin


def _tables(trace: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of θ for any positions (also beyond the text), laid out as the rotary table (pair i twice)."""
    a = positions[:, None] * np.array([inv_freq(trace, i) for i in range(pairs(trace))])[None, :]
    a = np.concatenate([a, a], axis=-1)
    return np.cos(a), np.sin(a)


class Pair(NamedTuple):
    """One rotary pair of one query: (a, b) = dimensions i and i + D/2 before, (a2, b2) after the turn by angle."""

    head: int
    p: int
    i: int
    j: int
    angle: float
    cos: float
    sin: float
    a: float
    b: float
    a2: float
    b2: float
    length: float
    length2: float


def pair(trace: Any) -> Pair:
    """Pair 0 of query head 0 at the worked position, before and after its rotation (read from the trace)."""
    p, i, half = pos(trace), 0, pairs(trace)
    before = np.asarray(trace["L0.attn.q_heads"][0, 0, p], dtype=float)
    after = np.asarray(trace["L0.attn.q"][0, 0, p], dtype=float)
    a, b, a2, b2 = before[i], before[i + half], after[i], after[i + half]
    return Pair(0, p, i, i + half, angle(trace, p, i), float(trace["rope.cos"][p, i]), float(trace["rope.sin"][p, i]),
                float(a), float(b), float(a2), float(b2), math.hypot(a, b), math.hypot(a2, b2))


def key_pos(trace: Any) -> int:
    """The key position of the worked relative-position check: the attention page's worked key."""
    return attn.key(trace)


SHIFT = 3  # positions the relative-position check moves both the query and the key by


def shift(trace: Any) -> int:
    """How many positions the relative-position check moves both the query and the key by."""
    return SHIFT


def _score_at(trace: Any, t: int, s: int) -> float:
    """Head 0's score of the worked query and key (unrotated vectors of positions qkv_row and key) if they stood at
    positions t and s."""
    q = np.asarray(trace["L0.attn.q_heads"][0, 0, pos(trace)], dtype=float)
    k = np.asarray(trace["L0.attn.k_heads"][0, 0, key_pos(trace)], dtype=float)
    cos, sin = _tables(trace, np.array([t, s], dtype=float))
    return float(rotate(q, cos[0], sin[0]) @ rotate(k, cos[1], sin[1]))


def score_here(trace: Any) -> float:
    """Head 0's score of the worked query with the worked key where they stand (the trace's score)."""
    return _score_at(trace, pos(trace), key_pos(trace))


def score_shifted(trace: Any) -> float:
    """The same query and key moved SHIFT positions further on: the same score, since only t − s counts."""
    return _score_at(trace, pos(trace) + SHIFT, key_pos(trace) + SHIFT)


def score_unrotated(trace: Any) -> float:
    """The same query and key without any rotation (what the score would be with no position information)."""
    q = np.asarray(trace["L0.attn.q_heads"][0, 0, pos(trace)], dtype=float)
    k = np.asarray(trace["L0.attn.k_heads"][0, 0, key_pos(trace)], dtype=float)
    return float(q @ k)


def score_swapped(trace: Any) -> float:
    """The same query and key with their positions swapped (t − s negated): another score, so order is seen."""
    return _score_at(trace, key_pos(trace), pos(trace))


# -- embeddings ----------------------------------------------------------------------------------------------------
def repeat_gap(trace: Any) -> float | None:
    """The largest difference between two rows of X of the same word in the first text (exactly 0: no position
    table), or None when no word repeats there."""
    words = trace.labels["inputs"][0][:n0(trace)]
    X = np.asarray(trace["embed.out"][0], dtype=float)
    gaps = [float(np.abs(X[t] - X[words.index(w)]).max()) for t, w in enumerate(words) if w in words[:t]]
    return max(gaps) if gaps else None
