"""The loss gradient: ∇logits = (p − onehot(y))/N, the entries and rows the loss-gradient page reads."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import grads
from site_build.macros.text import counted


def padding(trace: Any) -> str:
    """What the count of positions leaves out: ', 12 in all, of which 3 are padding whose target is ignored', or
    nothing when every position has a target."""
    n = grads.ignored(trace)
    if not n:
        return ""
    in_all = f", {grads.slots(trace)} in all" if grads.texts(trace) > 1 else ""
    return f"{in_all}, of which {n} {'is' if n == 1 else 'are'} padding whose target is ignored"


def batch_note(trace: Any) -> str:
    """With several texts, which one the tables show and that parameter gradients include all of them (nothing with
    one text); a paragraph of its own."""
    n = grads.texts(trace)
    if n == 1:
        return ""
    return (f"\nThere are {counted(n, 'text')} in this batch; the tables show text 1. Gradients of parameters\n"
            "are sums over all texts and so include every one of them.")


def target(trace: Any) -> int:
    """The target of the first position of the first text (a vocabulary index)."""
    return int(trace["targets"][0][0])


def target_word(trace: Any) -> str:
    """That target, as a word."""
    return grads.word(trace, target(trace))


def rival(trace: Any) -> int:
    """The word of largest gradient in the first row: the wrong word the model believed most there."""
    return int(np.asarray(trace["grad.logits"][0][0]).argmax())


def rival_word(trace: Any) -> str:
    """That word, as a word."""
    return grads.word(trace, rival(trace))


def weakest(trace: Any) -> int:
    """The position of the first text whose target got the smallest probability (the first such, on a tie)."""
    targets, probs = trace["targets"][0], trace["loss.target_prob"][0]
    best, low = 0, 2.0
    for t in range(len(targets)):
        if targets[t] >= 0 and probs[t] < low:
            best, low = t, probs[t]
    return best


def weakest_target(trace: Any) -> int:
    """The target at the weakest position (a vocabulary index)."""
    return int(trace["targets"][0][weakest(trace)])


def weakest_word(trace: Any) -> str:
    """That target, as a word."""
    return grads.word(trace, weakest_target(trace))


def largest_row_sum(trace: Any) -> float:
    """The largest row sum in size of the first text's gradient, which the algebra says is zero."""
    return float(max([abs(row.sum()) for row in np.asarray(trace["grad.logits"][0])], default=0))


# -- the output layer and the final LayerNorm (the output-layer page) ------------------------------------------------
def out_weight(trace: Any) -> str:
    """The record of the output layer's matrix: the token table `wte` when tied, else `lm_head.weight`."""
    return "wte" if grads.tied(trace) else "lm_head.weight"


def out_grad(trace: Any) -> str:
    """The record of that matrix's gradient from the logits: the output side's share of `wte` when tied."""
    return "grad.wte.from_logits" if grads.tied(trace) else "grad.lm_head.weight"


def out_symbol(trace: Any) -> str:
    """That matrix's symbol in TeX: W_{te} when tied, else W_{out}."""
    return "W_{te}" if grads.tied(trace) else "W_{\\text{out}}"


def zero_rows(trace: Any) -> str:
    """How many rows of the output matrix's gradient are zero, as the sentence says it: 'no row of this matrix is
    zero', '1 row of this matrix is zero', '3 rows of this matrix are zero'."""
    zero = len(trace.labels["vocab"]) - int((np.asarray(trace[out_grad(trace)]) != 0).any(axis=1).sum())
    if zero == 0:
        return "no row of this matrix is zero"
    return f"{zero} row of this matrix is zero" if zero == 1 else f"{zero} rows of this matrix are zero"


def gains_are_one(trace: Any) -> bool:
    """Whether every gain γ of the final LayerNorm is still exactly 1, its initial value."""
    return bool((np.asarray(trace["ln_f.weight"]) == 1).all())


def inverse_sd(trace: Any) -> float:
    """1/σ̂ of the worked row of ln_f: one over √(var + ε)."""
    var = trace["ln_f.var"][0][grads.row(trace)]
    return (var + trace.record("ln_f.xhat").meta["eps"]) ** (-1 / 2)


def negative(trace: Any) -> int:
    """How many off-diagonal entries of the worked row's LayerNorm Jacobian are negative (x̂_i x̂_j > −1)."""
    xr = np.asarray(trace["ln_f.xhat"][0][grads.row(trace)])
    return int(((xr.reshape(-1, 1) * xr) > -1).sum()) - grads.d_model(trace)


def off_diagonal(trace: Any) -> int:
    """How many off-diagonal entries a C × C Jacobian has."""
    return grads.d_model(trace) * (grads.d_model(trace) - 1)


def jacobian_entries(trace: Any) -> int:
    """How many entries a C × C Jacobian has."""
    return grads.d_model(trace) ** 2


def block_grad(trace: Any) -> str:
    """The record of the gradient of the last block's output, where the final LayerNorm hands it on."""
    return f"grad.L{grads.last(trace)}.resid_2"


def _ln_rows(trace: Any) -> tuple[float, float, float]:
    gx, xh = np.asarray(trace[block_grad(trace)][0]), np.asarray(trace["ln_f.xhat"][0])
    total = dot = largest = 0
    for r in range(gx.shape[0]):
        total = max(total, abs(gx[r].sum()))
        dot = max(dot, abs((gx[r] * xh[r]).sum()))
        largest = max(largest, abs(gx[r]).max())
    return total, dot, largest


def ln_row_sum(trace: Any) -> float:
    """The largest row sum in size of the gradient through ln_f (first text), zero up to rounding."""
    return _ln_rows(trace)[0]


def ln_row_dot(trace: Any) -> float:
    """The largest Σ_c ∇x_{t,c} x̂_{t,c} in size (first text): the small effect of ε."""
    return _ln_rows(trace)[1]


def ln_largest(trace: Any) -> float:
    """The largest entry in size of the gradient through ln_f (first text)."""
    return _ln_rows(trace)[2]
