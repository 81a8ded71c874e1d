"""The Llama backward pass and update (`model.arch: llama`): the entries the attention backward pages work through
(grouped-query attention's sum over a group, the rotary backward), the three paths into the first RMSNorm (all of
the walked block, grads.walked: the last), and the elements the updates page works in full (a weight matrix, an
RMSNorm gain, a row of the token table that no text reads)."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import grads, opt, upd
from site_build.figures import joined
from site_build.macros.optimizer import parameters


def _a(trace: Any, name: str) -> np.ndarray:
    """Record `name`; `L{block}` in it is the walked block."""
    return np.asarray(trace[grads.walked_name(trace, name)])


# -- grouped-query attention ------------------------------------------------------------------------------------------
def kv_heads(trace: Any) -> int:
    """H_kv, how many key/value heads each block has (as many as query heads without grouping)."""
    return int(trace.config["model"].get("n_kv_heads") or grads.heads(trace))


def group(trace: Any) -> int:
    """r = H / H_kv, how many query heads share one key/value head."""
    return grads.heads(trace) // kv_heads(trace)


def grouped(trace: Any) -> bool:
    """Whether key/value heads are shared (r > 1); with r = 1 the repeat is the identity."""
    return group(trace) > 1


def members(trace: Any, g: int) -> list[int]:
    """The query heads key/value head g serves: gr to gr + r − 1 (Hugging Face's repeat_kv)."""
    r = group(trace)
    return list(range(g * r, (g + 1) * r))


def head_groups(trace: Any) -> list[tuple[int, list[int]]]:
    """Every key/value head with the query heads it serves."""
    return [(g, members(trace, g)) for g in range(kv_heads(trace))]


def kv_groups(trace: Any) -> str:
    """Every key/value head with the query heads it serves, for a sentence: "key/value head 0 to query heads 0 and
    1; key/value head 1 to query heads 2 and 3" (a line break after each "query", where the page's lines break)."""
    return "; ".join(f"key/value head {g} to query\nheads {joined([str(h) for h in hs])}"
                     for g, hs in head_groups(trace))


def kv_dim(trace: Any) -> int:
    """The width of the keys (and of the values) of all key/value heads side by side: H_kv · D."""
    return kv_heads(trace) * grads.head_size(trace)


def opposed(trace: Any, part: str) -> int:
    """How many entries of ∇K (part 'k') or ∇V ('v'), first text, are sums of group members of opposite signs (the
    query heads pull the shared key or value in different directions), over every key/value head, key and
    dimension."""
    rep = _a(trace, f"grad.L{{block}}.attn.{part}_rep")[0]
    h, t, d = rep.shape
    parts = rep.reshape(kv_heads(trace), group(trace), t, d)
    return int(((parts > 0).any(axis=1) & (parts < 0).any(axis=1)).sum())


def kv_entries(trace: Any) -> int:
    """How many entries ∇K has for the first text: H_kv · T · D."""
    return int(_a(trace, "grad.L{block}.attn.k")[0].size)


# -- the rotary backward ----------------------------------------------------------------------------------------------
def half(trace: Any) -> int:
    """D/2: dimension d is paired with d + D/2."""
    return grads.head_size(trace) // 2


def angle(trace: Any, t: int, d: int) -> float:
    """The rotary angle Θ of position t, dimension d, from the trace's tables (atan2 of sin and cos)."""
    return float(np.arctan2(_a(trace, "rope.sin")[t, d], _a(trace, "rope.cos")[t, d]))


def rope_norm_error(trace: Any) -> float:
    """The largest relative change of a pair's length under the rotary backward (∇Q vs ∇Q°, every head, position and
    pair, and the same for keys): rounding, since a rotation keeps lengths."""
    worst = 0.0
    j = half(trace)
    for after, before in (("grad.L{block}.attn.q", "grad.L{block}.attn.q_heads"),
                          ("grad.L{block}.attn.k", "grad.L{block}.attn.k_heads")):
        a, b = _a(trace, after), _a(trace, before)
        la = np.hypot(a[..., :j], a[..., j:])
        lb = np.hypot(b[..., :j], b[..., j:])
        scale = max(float(la.max()), 1e-300)
        worst = max(worst, float(np.abs(la - lb).max()) / scale)
    return worst


def unrotate_error(trace: Any) -> float:
    """The largest |∇Q° − R(−Θ)∇Q| over the first text, worked out here pair by pair (zero up to rounding: the
    backward is the rotation by minus the angle)."""
    g = _a(trace, "grad.L{block}.attn.q")[0]
    cos, sin = _a(trace, "rope.cos"), _a(trace, "rope.sin")
    j = half(trace)
    a, b = g[..., :j], g[..., j:]
    c, s = cos[:, :j], sin[:, :j]
    back = np.concatenate([a * c + b * s, b * c - a * s], axis=-1)
    return float(np.abs(back - _a(trace, "grad.L{block}.attn.q_heads")[0]).max())


def position_zero_same(trace: Any) -> bool:
    """Whether position 0's rotary backward changes nothing (its angle is 0): ∇Q°_0 equals ∇Q_0 in every head."""
    return bool((_a(trace, "grad.L{block}.attn.q_heads")[:, :, 0] == _a(trace, "grad.L{block}.attn.q")[:, :, 0]).all())


# -- the three paths into RMS_1 ---------------------------------------------------------------------------------------
def path_norms(trace: Any) -> dict[str, float]:
    """The size (Frobenius norm, every text) of each path's share of ∇RMS₁: through the queries, keys, values."""
    return {p: float(np.linalg.norm(_a(trace, f"grad.L{{block}}.ln_1.out.from_{p}"))) for p in ("q", "k", "v")}


def largest_path(trace: Any) -> str:
    """The path that brings the largest share: 'queries', 'keys' or 'values'."""
    n = path_norms(trace)
    return {"q": "queries", "k": "keys", "v": "values"}[max(n, key=n.get)]


def paths_add_error(trace: Any) -> float:
    """The largest |∇RMS₁ − (from_q + from_k + from_v)| (zero up to rounding)."""
    total = sum(_a(trace, f"grad.L{{block}}.ln_1.out.from_{p}") for p in ("q", "k", "v"))
    return float(np.abs(total - _a(trace, "grad.L{block}.ln_1.out")).max())


def rms_mean_term(trace: Any) -> float:
    """How far GPT-2's LayerNorm backward would be off on RMSNorm ln_1's rows (the extra −mean(g) term, relative
    Frobenius size, percent): what dropping the mean subtraction changes in the backward."""
    g = _a(trace, "grad.L{block}.ln_1.xhat")
    xhat = _a(trace, "L{block}.ln_1.xhat")
    ms = _a(trace, "L{block}.ln_1.ms")[..., None]
    eps = float(trace.config["model"].get("norm_eps", 1e-6))
    right = (g - xhat * (g * xhat).mean(axis=-1, keepdims=True)) / np.sqrt(ms + eps)
    wrong = right - g.mean(axis=-1, keepdims=True) / np.sqrt(ms + eps)
    size = float(np.linalg.norm(right))
    return float(np.linalg.norm(wrong - right)) / size * 100 if size > 0 else 0.0


# -- the updates page -------------------------------------------------------------------------------------------------
GAIN = "L0.ln_2.weight"  # the 1-D tensor worked in full: the gain of block 0's second RMSNorm


def gain_at(trace: Any) -> tuple[int, ...]:
    """The entry of the second RMSNorm's gain with the largest gradient."""
    return upd.largest_at(trace, "grad." + GAIN)


def gain_decays(trace: Any) -> bool:
    """The gain decays (only under `decay: all`)."""
    return upd.decays(trace, GAIN)


def gain_move(trace: Any) -> float:
    """How far that entry moved, θ' − θ."""
    return upd.moved(trace, GAIN, gain_at(trace))


def gain_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return gain_move(trace) / opt.lr(trace)


def _unread(trace: Any) -> list[int]:
    """The words no text reads at its input, when the output layer is untied (their rows get exactly zero gradient);
    none when tied (the output side reaches every row)."""
    if grads.tied(trace):
        return []
    read = set(np.asarray(trace["input_ids"]).ravel().tolist())
    return [v for v in range(grads.vocab_size(trace)) if v not in read]


def unused_word(trace: Any) -> int | None:
    """The first word of the vocabulary no text reads, whose row of the token table gets exactly zero gradient (an
    untied output layer); None when there is none."""
    unread = _unread(trace)
    return unread[0] if unread else None


def unused_count(trace: Any) -> int:
    """How many words no text reads (untied): rows of the token table with exactly zero gradient."""
    return len(_unread(trace))


def wte_decays(trace: Any) -> bool:
    """The token table decays."""
    return upd.decays(trace, "wte")


def unused_move(trace: Any) -> float:
    """How far the element in column 0 of that row moved, θ' − θ."""
    return upd.moved(trace, "wte", (unused_word(trace), 0))


def unused_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return unused_move(trace) / opt.lr(trace)


def unused_share(trace: Any) -> float:
    """Its size, |Δθ/η|: the share of a full step η that moved it."""
    return abs(unused_move_lr(trace))


def groups(trace: Any) -> list[tuple[str, list[opt.Tensor]]]:
    """The tensors under the picture headings: the token table, each block, the final RMSNorm, the output layer."""
    out: list[tuple[str, list[opt.Tensor]]] = []
    for name in parameters(trace):
        if name == "wte":
            heading = "The token table"
        elif name.startswith("ln_f."):
            heading = "The final RMSNorm"
        elif name == "lm_head.weight":
            heading = "The output layer"
        else:
            heading = "Block " + name[1:].split(".", 1)[0]
        if not out or out[-1][0] != heading:
            out.append((heading, []))
        out[-1][1].append(opt.tensor(trace, name))
    return out


def mean_grad(trace: Any) -> float:
    """The mean |gradient| over every weight of the model (as the GPT-2 page's)."""
    return upd.mean_grad(trace)


# -- words the shared optimizer page needs to follow the architecture ------------------------------------------------
def llama(trace: Any) -> bool:
    """Whether the run is a Llama-style model (`model.arch: llama`)."""
    return trace.config["model"].get("arch", "gpt2") == "llama"


def one_axis(trace: Any) -> str:
    """The 1-D tensors the model has, in words: what `decay: matrices` spares."""
    return "an RMSNorm gain, the only 1-D tensor a Llama block has" if llama(trace) else \
        "a bias or a LayerNorm gain or shift"


def worked(trace: Any) -> str:
    """The elements the updates page works in full, with their count."""
    if llama(trace):
        return "three elements in full (a decaying matrix, an RMSNorm gain and a row of the token table no text reads)"
    return "four elements in full (a decaying matrix, a bias, the key bias and an unused position)"


def zero_in_wte(trace: Any) -> bool:
    """Some row of the token table gets exactly zero gradient (a word no text reads, with an untied output layer)."""
    return unused_word(trace) is not None


# -- the output projection --------------------------------------------------------------------------------------------
def transpose_error(trace: Any) -> float | None:
    """How far ∇Z_cat would be off with W_Oᵀ in place of W_O (O = Z_cat W_Oᵀ, W_O stored (out, in)), in percent of
    its size (relative Frobenius norm, first text); None when the gradient is zero."""
    g = _a(trace, "grad.L{block}.resid_1")[0]
    w = _a(trace, "L{block}.attn.o_proj.weight")
    right, wrong = g.dot(w), g.dot(w.T)
    rr = (right * right).sum()
    if not rr > 0:
        return None
    return float((((wrong - right) * (wrong - right)).sum() / rr) ** (1 / 2) * 100)


def round_robin(trace: Any, g: int) -> list[int]:
    """The query heads key/value head g would serve if the heads were grouped round-robin (h mod H_kv), the slip
    the attention backward page warns about."""
    return list(range(g, grads.heads(trace), kv_heads(trace)))
