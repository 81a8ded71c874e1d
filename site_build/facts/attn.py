"""Attention (block 0): the entries the queries-keys-values, attention and multi-head pages work through, and the
figures they state about the scores and weights."""

from __future__ import annotations

from typing import Any, NamedTuple

from site_build.facts.run import C, D, H, T, n0
from site_build.format import fixed
from site_build.macros.numbers import Listing, listed
from site_build.macros.text import span_words


# -- queries, keys and values ------------------------------------------------------------------------------------
def qkv_row(trace: Any) -> int:
    """The position the queries-keys-values page works through: the third, or the last real one of the first
    text."""
    return min(2, n0(trace) - 1)


def qkv_col(trace: Any) -> int:
    """The column of [Q|K|V] worked in full: the fourth, or the last of the queries if C is smaller."""
    return min(3, C(trace) - 1)


def split_head(trace: Any) -> int:
    """The head the split into heads is shown for: the last."""
    return H(trace) - 1


def split_dim(trace: Any) -> int:
    """The dimension of a head the split is shown for: the fourth, or the last if the heads are narrower."""
    return min(3, D(trace) - 1)


def head_columns(trace: Any, part: int) -> str:
    """The columns of [Q|K|V] that make the shown head's queries (part 0), keys (1) or values (2): `columns 12 to
    15`."""
    first = part * C(trace) + split_head(trace) * D(trace)
    return ("column " if D(trace) == 1 else "columns ") + span_words(first, first + D(trace) - 1)


def head_column_indices(trace: Any) -> list[int]:
    """Every column of [Q|K|V] that `head_columns` names for the shown head: its queries, keys and values."""
    return [part * C(trace) + split_head(trace) * D(trace) + d for part in range(3) for d in range(D(trace))]


def bias_zero(trace: Any) -> bool:
    """Whether the bias of the queries, keys and values is all zeros (as initialised)."""
    return bool((trace["L0.attn.c_attn.bias"] == 0).all())


# -- attention -----------------------------------------------------------------------------------------------------
def row(trace: Any) -> int:
    """The query the attention page works through: the last real position of the first text, which sees them all."""
    return n0(trace) - 1


def key(trace: Any) -> int:
    """The key the attention page's worked entries look at: the second position, or the first if it is the only
    one."""
    return min(1, row(trace))


def dim(trace: Any) -> int:
    """The dimension of a head's output worked in full: the second, or the first if the heads are one wide."""
    return min(1, D(trace) - 1)


def scores_count(trace: Any) -> int:
    """How many scores the first text has, over all heads, masked ones included."""
    return int(trace["L0.attn.scores"][0].size)


def scores_sd(trace: Any) -> float:
    """The standard deviation of the first text's scores (all heads, masked ones included), before scaling."""
    return float(trace["L0.attn.scores"][0].std())


def scaled_sd(trace: Any) -> float:
    """The same standard deviation after the division by √D."""
    return float(trace["L0.attn.scaled"][0].std())


def spread_sentence(trace: Any) -> str:
    """The spread of the scores before and after the scaling, as a sentence (a single score has none)."""
    which = "the text" if int(trace["input_ids"].shape[0]) == 1 else "text 1"
    n = scores_count(trace)
    if n == 1:
        return (f"In this step {which} has a single score, and one number has no spread; with more positions the "
                "scores would spread, and the division would shrink that spread by $\\sqrt D$.")
    return (f"In this step the {n} scores of {which} (all heads, masked ones included) have a standard deviation "
            f"of {fixed(scores_sd(trace), 3)}; after the division it is {fixed(scaled_sd(trace), 3)}.")


def row_max(trace: Any) -> float:
    """m: the largest visible score of the worked row of head 0 (what the softmax subtracts)."""
    return float(trace["L0.attn.masked"][0, 0, row(trace)][:row(trace) + 1].max())


def softmax_sum(trace: Any) -> float:
    """The sum of the exponentials of the worked row (after subtracting m): one over its largest weight."""
    return float(1 / trace["L0.attn.weights"][0, 0, row(trace)].max())


def listing(trace: Any) -> Listing:
    """The entries of the worked row written out one by one (all, or the ends and the two the page works)."""
    return listed(T(trace), keep=[key(trace), row(trace)])


def listing_extra(trace: Any) -> str:
    """The entries a cut listing of the worked row keeps besides its ends, as the sentence names them: ", entry k"
    with what it is (the key worked above, or the last position the row can see)."""
    notes = {row(trace): f" (the last position {row(trace)} can see)", key(trace): " (worked above)"}
    return "".join(f", entry {k}{notes.get(k, '')}" for k in listing(trace).extra)


def other_heads_tex(trace: Any) -> str:
    """The heads after head 0 in the concatenation [Z_0 | Z_1 | ...], in LaTeX, each with its shape T × D."""
    t, d = T(trace), D(trace)
    return "".join(f"\\,|\\,\\underbrace{{Z_{{ {h} }}}}_{{ {t}\\times{d} }}" for h in range(1, H(trace)))


class Entry(NamedTuple):
    """One entry of the worked softmax row: its key, masked score, exponential after subtracting m, and weight."""

    j: int
    visible: bool
    score: float
    exp: float
    weight: float


def softmax_row(trace: Any) -> list[Entry | None]:
    """The entries of the worked row of head 0 as the page writes them out (None where a run is left out)."""
    t, A, S = row(trace), trace["L0.attn.weights"], trace["L0.attn.masked"]
    return [None if j is None else Entry(j, j <= t, float(S[0, 0, t, j]), float(A[0, 0, t, j] * softmax_sum(trace)),
                                         float(A[0, 0, t, j]))
            for j in listing(trace)]


def weights_total(trace: Any) -> float:
    """The sum of the weights of the worked row (one, up to rounding)."""
    return float(trace["L0.attn.weights"][0, 0, row(trace)].sum())


class Strongest(NamedTuple):
    """A query position and, for each head, (head, the key it weights most)."""

    q: int
    keys: list[tuple[int, int]]


def strongest(trace: Any) -> list[Strongest]:
    """For each real position of the first text, the key each head gives the largest weight."""
    A = trace["L0.attn.weights"]
    return [Strongest(q, [(h, int(A[0, h, q].argmax())) for h in range(H(trace))]) for q in range(n0(trace))]


def uniform_excess(trace: Any) -> float:
    """How far the largest weight of any row (past the first, any head) exceeds its uniform share 1/(t+1)."""
    A = trace["L0.attn.weights"]
    most: Any = 0
    for h in range(H(trace)):
        for q in range(1, n0(trace)):
            dev = A[0, h, q].max() - 1 / (q + 1)
            if dev > most:
                most = dev
    return float(most)


def peaked(trace: Any) -> bool:
    """Whether some head clearly prefers some positions: a weight exceeds its uniform share by more than 0.1."""
    return uniform_excess(trace) > 1 / 10


# -- merging the heads, the output projection, the residual --------------------------------------------------------
def out_row(trace: Any) -> int:
    """The position the multi-head page works through: the third, or the last real one of the first text."""
    return min(2, n0(trace) - 1)


def out_col(trace: Any) -> int:
    """The column of the merged heads and of the projection worked in full: the fourth, or the last if C is smaller."""
    return min(3, C(trace) - 1)


def merged_col(trace: Any) -> int:
    """A column of the merged heads that comes from the last head: its second (or only) dimension."""
    return (H(trace) - 1) * D(trace) + min(1, D(trace) - 1)


def _rms(values: Any) -> float:
    return float(((values * values).mean()) ** (1 / 2))


def rms_out(trace: Any) -> float:
    """The root mean square of the attention output O over the first text's real positions."""
    return _rms(trace["L0.attn.out"][0][:n0(trace)])


def rms_stream(trace: Any) -> float:
    """The root mean square of the stream X that O is added to, over the same positions."""
    return _rms(trace["embed.out"][0][:n0(trace)])


def out_larger(trace: Any) -> bool:
    """Whether the attention output is larger (in root mean square) than the stream it is added to."""
    return rms_out(trace) > rms_stream(trace)
