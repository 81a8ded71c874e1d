"""The Llama pages of the second half of the block and of the output: SwiGLU's feed-forward network (the units the
pages work through, what SiLU does to this step's gate inputs, the parameter counts), the final RMSNorm's backward
(one over the root mean square, and what its gradient keeps and drops), and where SiLU's slope flips the gradient.

Every fact reads the first text's real positions, as the tables show them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from site_build.facts import grads
from site_build.facts.run import C, F, H, n0


def _model(trace: Any) -> dict[str, Any]:
    return trace.config["model"]


def _first(trace: Any, name: str) -> np.ndarray:
    """A (batch, tokens, ·) record's first text, its real positions only."""
    return np.asarray(trace[name][0][:n0(trace)], dtype=float)


# -- SiLU itself ------------------------------------------------------------------------------------------------
def _silu_minimum() -> tuple[float, float]:
    """Where SiLU(u) = u σ(u) is smallest: its slope σ(u)(1 + u(1 − σ(u))) is zero there, so 1 + u(1 − σ(u)) = 0,
    solved by Newton's method from u = −1; at that point σ(u) = 1 + 1/u, so SiLU(u) = u + 1."""
    u = -1.0
    for _ in range(50):
        s = 1 / (1 + math.exp(-u))
        f = 1 + u * (1 - s)
        df = (1 - s) - u * s * (1 - s)
        u -= f / df
    return u, u / (1 + math.exp(-u))


def silu_min_u(trace: Any) -> float:
    """The input at which SiLU is smallest, about −1.28: left of it, SiLU's slope is negative."""
    return _silu_minimum()[0]


def silu_min(trace: Any) -> float:
    """SiLU's smallest value, about −0.28 (one more than the input where it is reached)."""
    return _silu_minimum()[1]


# -- the forward page: the worked row and units ---------------------------------------------------------------------
def row(trace: Any) -> int:
    """The position worked through: the third, or the last real one of the first text."""
    return min(2, n0(trace) - 1)


def col(trace: Any) -> int:
    """The dimension of the stream worked in full: the fourth, or the last if C is smaller."""
    return min(3, C(trace) - 1)


def unit(trace: Any) -> int:
    """The hidden unit the forward page follows: of the worked row, the one whose product G ⊙ U_up is largest in
    size (the first, on a tie)."""
    return int(np.abs(np.asarray(trace["L0.mlp.hidden"][0][row(trace)])).argmax())


def closed(trace: Any) -> int | None:
    """A unit of the worked row whose gate is shut: the most negative gate input; None when no gate input of the
    row is negative."""
    gate = np.asarray(trace["L0.mlp.gate"][0][row(trace)])
    j = int(gate.argmin())
    return j if gate[j] < 0 else None


def entries(trace: Any) -> int:
    """How many gate inputs the first text's real positions have (positions × d_ff)."""
    return _first(trace, "L0.mlp.gate").size


def negatives(trace: Any) -> int:
    """How many of those gate inputs are negative (SiLU gives between its minimum and 0 there)."""
    return int((_first(trace, "L0.mlp.gate") < 0).sum())


def positives(trace: Any) -> int:
    """How many of those gate inputs are positive."""
    return int((_first(trace, "L0.mlp.gate") > 0).sum())


def gate_min(trace: Any) -> float:
    """The smallest gate input of the first text."""
    return float(_first(trace, "L0.mlp.gate").min())


def act_min(trace: Any) -> float:
    """The smallest SiLU output of the first text: never below SiLU's minimum."""
    return float(_first(trace, "L0.mlp.act").min())


def _ratios(trace: Any) -> np.ndarray:
    """SiLU(u)/u = σ(u) over the first text's positive gate inputs."""
    u = _first(trace, "L0.mlp.gate")
    a = _first(trace, "L0.mlp.act")
    return a[u > 0] / u[u > 0]


def ratio_min(trace: Any) -> float:
    """The smallest SiLU(u)/u over the positive gate inputs (0 if there is none)."""
    r = _ratios(trace)
    return float(r.min()) if r.size else 0.0


def ratio_max(trace: Any) -> float:
    """The largest SiLU(u)/u over the positive gate inputs (0 if there is none)."""
    r = _ratios(trace)
    return float(r.max()) if r.size else 0.0


def shut(trace: Any) -> int:
    """How many SiLU outputs of the first text are under a quarter in size: there the product G ⊙ U_up passes less
    than a quarter of the value."""
    return int((np.abs(_first(trace, "L0.mlp.act")) < 1 / 4).sum())


# -- parameter counts ---------------------------------------------------------------------------------------------
def kv_heads(trace: Any) -> int:
    """How many key/value heads a block has (as many as query heads without grouped-query attention)."""
    return int(_model(trace).get("n_kv_heads") or H(trace))


def kv_dim(trace: Any) -> int:
    """The width of the keys (and values) of one block: the K/V heads times the head size."""
    return kv_heads(trace) * (C(trace) // H(trace))


def params(trace: Any) -> int:
    """The feed-forward network's parameters in one block: the gate, up and down matrices, no biases."""
    return 3 * C(trace) * F(trace)


def attn_params(trace: Any) -> int:
    """Attention's parameters in one block: W_Q and W_O (C × C each), W_K and W_V (kv_dim × C each)."""
    return 2 * C(trace) * C(trace) + 2 * kv_dim(trace) * C(trace)


def than_attention(trace: Any) -> str:
    """How the feed-forward network's parameters compare with attention's: more than, as many as, fewer than."""
    mlp, attn = params(trace), attn_params(trace)
    return "more than" if mlp > attn else "as many as" if mlp == attn else "fewer than"


def gelu_width(trace: Any) -> int | float:
    """The width a GELU network of two matrices would need for as many parameters: 3 d_ff / 2 (a whole number when
    d_ff is even)."""
    width = 3 * F(trace) / 2
    return int(width) if width == int(width) else width


# -- the backward pages: the final RMSNorm ------------------------------------------------------------------------
def inverse_rms(trace: Any) -> float:
    """1/√(ν + ε) of the backward pages' worked row of ln_f: what the normalisation divided that row by, inverted."""
    ms = float(trace["ln_f.ms"][0][grads.row(trace)])
    return (ms + trace.record("ln_f.xhat").meta["eps"]) ** (-1 / 2)


def _block_grad(trace: Any) -> np.ndarray:
    return np.asarray(trace[f"grad.L{grads.last(trace)}.resid_2"][0][:grads.real(trace)], dtype=float)


def row_sum(trace: Any) -> float:
    """The largest row sum in size of the gradient through ln_f (first text): not zero, since RMSNorm subtracts no
    mean."""
    return float(np.abs(_block_grad(trace).sum(axis=1)).max())


def row_dot(trace: Any) -> float:
    """The largest Σ_c ∇x_{t,c} x̂_{t,c} in size (first text): zero but for ε."""
    xh = np.asarray(trace["ln_f.xhat"][0][:grads.real(trace)], dtype=float)
    return float(np.abs((_block_grad(trace) * xh).sum(axis=1)).max())


def grad_largest(trace: Any) -> float:
    """The largest entry in size of the gradient through ln_f (first text)."""
    return float(np.abs(_block_grad(trace)).max())


def negative_off_diagonal(trace: Any) -> int:
    """How many off-diagonal entries of the worked row's RMSNorm Jacobian, −x̂_i x̂_j / (C r), are negative: the
    pairs i ≠ j whose x̂ have the same sign."""
    xr = np.asarray(trace["ln_f.xhat"][0][grads.row(trace)], dtype=float)
    outer = np.outer(xr, xr)
    return int((outer > 0).sum() - (np.diag(outer) > 0).sum())


def off_diagonal(trace: Any) -> int:
    """How many off-diagonal entries a C × C Jacobian has."""
    return C(trace) * (C(trace) - 1)


# -- the backward pages: SwiGLU, in the walked block (grads.walked: the last) ------------------------------------
def _walked(trace: Any, name: str) -> np.ndarray:
    """The first text of record `name` of the walked block (`L{block}` in the name)."""
    return np.asarray(trace[grads.walked_name(trace, name)][0])


def back_unit(trace: Any) -> int:
    """The hidden unit the backward pages follow: of the worked row, the one of largest |∇(G ⊙ U_up)|."""
    return int(np.abs(_walked(trace, "grad.L{block}.mlp.hidden")[grads.row(trace)]).argmax())


def _flips(trace: Any) -> np.ndarray:
    """Where, in the first text, ∇U_gate and ∇G have opposite signs: SiLU's slope was negative there."""
    n = grads.real(trace)
    return (_walked(trace, "grad.L{block}.mlp.gate")[:n] * _walked(trace, "grad.L{block}.mlp.act")[:n]) < 0


def flips(trace: Any) -> int:
    """How many entries of the first text changed the gradient's sign on the way through SiLU."""
    return int(_flips(trace).sum())


def back_entries(trace: Any) -> int:
    """How many hidden entries the first text's real positions have."""
    return grads.real(trace) * F(trace)


def flip_position(trace: Any) -> int:
    """The position of the first such entry, reading row by row (0 if there is none)."""
    found = np.argwhere(_flips(trace))
    return int(found[0][0]) if len(found) else 0


def flip_unit(trace: Any) -> int:
    """The hidden unit of the first such entry (0 if there is none)."""
    found = np.argwhere(_flips(trace))
    return int(found[0][1]) if len(found) else 0


def _path_norms(trace: Any) -> tuple[float, float]:
    gate = float(np.linalg.norm(np.asarray(trace[grads.walked_name(trace, "grad.L{block}.ln_2.out.from_gate")])))
    up = float(np.linalg.norm(np.asarray(trace[grads.walked_name(trace, "grad.L{block}.ln_2.out.from_up")])))
    return gate, up


def larger_path(trace: Any) -> str:
    """Which path into the ln_2 output carries the larger gradient (Frobenius norm, whole batch): gate or up."""
    gate, up = _path_norms(trace)
    return "gate" if gate >= up else "up"


# -- the output page --------------------------------------------------------------------------------------------
def final_gains_one(trace: Any) -> bool:
    """Whether every gain γ of the final RMSNorm is exactly 1, its initial value (false for most checkpoints)."""
    return bool((np.asarray(trace["ln_f.weight"]) == 1).all())
