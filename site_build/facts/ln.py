"""LayerNorm: the row the normalisation page works through, and its figures (block 0's ln_1)."""

from __future__ import annotations

from typing import Any

from site_build.facts.run import C, L, llama
from site_build.macros.numbers import Listing, listed


def row(trace: Any) -> int:
    """The position worked in full: the third, or the last real token of the first text if it has fewer."""
    real = int((trace["targets"][0] >= 0).sum())
    return min(2, real - 1)


def col(trace: Any) -> int:
    """The element of the worked row shown in detail: the fourth, or the last if the rows are shorter."""
    return min(3, C(trace) - 1)


def eps(trace: Any) -> float:
    """ε of ln_1, as the run used it."""
    return float(trace.record("L0.ln_1.xhat").meta["eps"])


def mu(trace: Any) -> float:
    """The mean of the worked row."""
    return float(trace["L0.ln_1.mean"][0, row(trace)])


def var(trace: Any) -> float:
    """The variance of the worked row."""
    return float(trace["L0.ln_1.var"][0, row(trace)])


def sd(trace: Any) -> float:
    """The standard deviation of the worked row, √(var + ε)."""
    return float((trace["L0.ln_1.var"][0, row(trace)] + eps(trace)) ** 0.5)


def listing(trace: Any) -> Listing:
    """The elements of the worked row written out one by one (all, or the ends and the one shown in detail)."""
    return listed(C(trace), keep=[col(trace)])


def listing_extra(trace: Any) -> str:
    """What a cut listing of the worked row keeps besides its ends, as the sentence names it: " and element k,
    worked through above" (nothing when it keeps only its ends)."""
    return "".join(f" and element {k}, worked through above" for k in listing(trace).extra)


def x(trace: Any, j: int) -> float:
    """Element j of the worked row as it comes in."""
    return float(trace["embed.out"][0, row(trace), j])


def xhat(trace: Any, j: int) -> float:
    """Element j of the worked row, normalised."""
    return float(trace["L0.ln_1.xhat"][0, row(trace), j])


def xhat_sum(trace: Any) -> float:
    """The sum of the normalised worked row (zero up to rounding)."""
    return float(trace["L0.ln_1.xhat"][0, row(trace)].sum())


def xhat_mean_square(trace: Any) -> float:
    """The mean square of the normalised worked row (one, but for ε)."""
    xr = trace["L0.ln_1.xhat"][0, row(trace)]
    return float((xr * xr).mean())


def sd_squared(trace: Any) -> float:
    """σ² + ε of the worked row, as the square of its standard deviation."""
    s = sd(trace)
    return s * s


def var_ratio(trace: Any) -> float:
    """The variance of the normalised worked row, σ² / (σ² + ε)."""
    return var(trace) / sd_squared(trace)


def fresh(trace: Any) -> bool:
    """Whether ln_1's gain is all ones and its shift all zeros (the initial values)."""
    return bool((trace["L0.ln_1.weight"] == 1).all() and (trace["L0.ln_1.bias"] == 0).all())


# The sentence before the other blocks' norms, for two blocks and for more, LayerNorm's and a Llama run's RMSNorm's
# (their lines broken where the pages break them), indexed by whether the run is a Llama one
LEADS = (
    ("Block 1 normalises the stream in exactly the same way, with its own $\\gamma$ and $\\delta$; its input "
     "is\nthe output of block 0. All its numbers:",
     "Blocks 1 to {last} normalise the stream in exactly the same way, each with its own $\\gamma$ and "
     "$\\delta$;\nthe input of each is the output of the block before. All their numbers:"),
    ("Block 1 normalises the stream in exactly the same way, with its own $\\gamma$; its input is the output "
     "of block 0.\nAll its numbers:",
     "Blocks 1 to {last} normalise the stream in exactly the same way, each with its own $\\gamma$; the input "
     "of\neach is the output of the block before. All their numbers:"),
)


def other_blocks_lead(trace: Any) -> str:
    """The sentence that leads to the other blocks' norms (a model of two blocks or more): LayerNorm's $\\gamma$ and
    $\\delta$, or a Llama run's RMSNorm's $\\gamma$ alone."""
    two, more = LEADS[llama(trace)]
    return two if L(trace) == 2 else more.format(last=L(trace) - 1)
