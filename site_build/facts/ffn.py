"""The feed-forward network (block 0): the entries the page works through, what it says about GELU on this step's
inputs, and the parameter counts it compares with attention's."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from site_build.charts.teaching import gelu_stats
from site_build.facts.run import C, F, n0


def row(trace: Any) -> int:
    """The position worked through: the third, or the last real one of the first text."""
    return min(2, n0(trace) - 1)


def col(trace: Any) -> int:
    """The dimension of the stream worked in full: the fourth, or the last if C is smaller."""
    return min(3, C(trace) - 1)


def unit(trace: Any) -> int:
    """The hidden unit (column of U) worked in full: the third, or the last if d_ff is smaller."""
    return min(2, F(trace) - 1)


def _inputs(trace: Any) -> Any:
    return trace["L0.mlp.fc"][0, row(trace)]


def gelu_unit(trace: Any) -> int:
    """The hidden unit of the first GELU example: the unit worked in full if its input is not negative, else the
    first unit of the row whose input is not (GELU's two regimes then come in order: passed, then squashed)."""
    u = _inputs(trace)
    if u[unit(trace)] >= 0:
        return unit(trace)
    return next((j for j in range(F(trace)) if u[j] >= 0), unit(trace))


def squashed(trace: Any) -> int | None:
    """The first hidden unit of the worked row whose input is negative, for a second GELU example; None when there
    is none, or when the first example's input is negative already (every input of the row is)."""
    u = _inputs(trace)
    if u[gelu_unit(trace)] < 0:
        return None
    return next((j for j in range(F(trace)) if u[j] < 0), None)


def gelu_example(trace: Any) -> str:
    """What the first GELU example is, for "Here it is with the numbers of ...": 'one entry with a positive input'
    (a negative one follows), 'one entry, whose input is negative, ...', or 'one entry'."""
    if _inputs(trace)[gelu_unit(trace)] < 0:
        return "one entry, whose input is negative, so GELU squashes it towards zero"
    return "one entry with a positive input" if squashed(trace) is not None else "one entry"


def gelu(trace: Any) -> dict[str, float]:
    """What the page says about GELU on the first text's inputs U: GELU's minimum (`min_value`, at `min_u`), the
    two tanh constants (`series_c`, `fitted_c`) and their errors, the smallest output (`g_min`), and the ratio
    GELU(u)/u over the positive inputs (`ratio_min`, `ratio_median`, `ratio_max`)."""
    return gelu_stats(trace, "L0.mlp.fc", 0)


def entries(trace: Any) -> int:
    """How many entries U has for the first text's real positions."""
    return int(gelu(trace)["n"])


def negatives(trace: Any) -> int:
    """How many of those entries are negative."""
    return int(gelu(trace)["n_neg"])


def positives(trace: Any) -> int:
    """How many of those entries are positive."""
    return int(gelu(trace)["n_pos"])


def params(trace: Any) -> int:
    """The feed-forward network's parameters in one block: W₁, b₁, W₂, b₂."""
    c, f = C(trace), F(trace)
    return 2 * c * f + f + c


def attn_params(trace: Any) -> int:
    """Attention's parameters in one block: W_attn, b_attn, W_O, b_O."""
    c = C(trace)
    return 4 * c * c + 4 * c


def than_attention(trace: Any) -> str:
    """How the feed-forward network's parameters compare with attention's: more than, as many as, fewer than."""
    mlp, attn = params(trace), attn_params(trace)
    return "more than" if mlp > attn else "as many as" if mlp == attn else "fewer than"


def share(trace: Any) -> Markup:
    """The feed-forward network's share of the block's parameters against attention's, as the clause that ends "The
    feed-forward network is where each position transforms what it has gathered, and" says it."""
    if params(trace) > attn_params(trace):
        return Markup(f"it holds more of the block's parameters than attention does ({params(trace)} here, against "
                      f"{attn_params(trace)} for attention).")
    return Markup("in GPT-2 it holds about two thirds of the block's parameters (with $d_{ff} = 4C$: $8C^2 + 5C$ "
                  f"against $4C^2 + 4C$\nfor attention); with $d_{{ff}} = {F(trace)}$ here it has {params(trace)}, "
                  f"{than_attention(trace)}\nattention's {attn_params(trace)}.")
