"""The attention backward pass of the walked block (grads.walked, the last): the entries the two attention pages work
through, the transpose a common mistake forgets, the rows that add up to zero, and the key bias's gradient."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import grads
from site_build.macros.text import agree, counted, plural_noun, span_words


def _w(trace: Any, name: str) -> np.ndarray:
    """Record `name` of the walked block (`L{block}` in the name)."""
    return np.asarray(trace[grads.walked_name(trace, name)])


def key(trace: Any) -> int:
    """The key position the worked score gradients use: the second, or the first if the query is position 0."""
    return min(1, grads.query(trace))


def transpose_error(trace: Any) -> float | None:
    """How far off ∇Z_cat would be with W_O in place of W_Oᵀ, in percent of its size (relative Frobenius norm, first
    text); None when the gradient is zero, so that there is nothing to be off."""
    g = _w(trace, "grad.L{block}.resid_1")[0]
    w = _w(trace, "L{block}.attn.c_proj.weight")
    right, wrong = g.dot(w.T), g.dot(w)
    rr = (right * right).sum()
    if not rr > 0:
        return None
    return (((wrong - right) * (wrong - right)).sum() / rr) ** (1 / 2) * 100


def above(trace: Any) -> int:
    """How many entries of ∇A (first text, every head) are not zero where the mask made the weight zero."""
    return int(((_w(trace, "grad.L{block}.attn.weights")[0] != 0) * (_w(trace, "L{block}.attn.weights")[0] == 0)).sum())


def masked(trace: Any) -> int:
    """How many keys the worked query cannot see (those after it)."""
    return grads.last_position(trace) - grads.query(trace)


def first_masked(trace: Any) -> int:
    """The first key the worked query cannot see."""
    return grads.query(trace) + 1


def masked_keys(trace: Any) -> str:
    """What the Jacobian of the worked query's softmax row has at the keys it cannot see (`masked`): zero rows and
    columns, since their weights are zero; nothing when it sees every key. It ends its line: the paragraph goes on
    after it on the same one."""
    n = masked(trace)
    if not n:
        return ""
    keys = span_words(first_masked(trace), grads.last_position(trace))
    return (f"Rows and columns of masked {plural_noun(n, 'key')} {keys} are all\nzero,\n"
            f"because {agree(n, 'its', 'their')} weight is zero.\n")


def block_note(trace: Any) -> str:
    """With several blocks, which one the attention pages work through (the last) and what the others do; a sentence
    of the paragraph about the heads (nothing with one block)."""
    if grads.layers(trace) == 1:
        return ""
    return (f"With {counted(grads.layers(trace), 'block')}, this is block {grads.walked(trace)}, the last; "
            f"{grads.lower_blocks_after(trace)}.")


def masked_row_sum(trace: Any) -> float:
    """The largest row sum in size of ∇M over every text and head: zero up to rounding."""
    gm = _w(trace, "grad.L{block}.attn.masked")
    largest = 0
    for b in range(gm.shape[0]):
        for h in range(gm.shape[1]):
            for r in range(gm.shape[2]):
                largest = max(largest, abs(gm[b][h][r].sum()))
    return largest


def mask_changes_nothing(trace: Any) -> bool:
    """Whether the gradient through the mask equals the one before it: the softmax had already zeroed those places."""
    return bool((_w(trace, "grad.L{block}.attn.scaled") == _w(trace, "grad.L{block}.attn.masked")).all())


# -- the packed projection's bias (the queries-and-keys page) --------------------------------------------------------
def _bias_block(trace: Any, block: int) -> np.ndarray:
    c = grads.d_model(trace)
    return _w(trace, "grad.L{block}.attn.c_attn.bias")[block * c:(block + 1) * c]


def _entries(trace: Any, block: int) -> str:
    c = grads.d_model(trace)
    return f"{block * c} to {(block + 1) * c - 1}"


def query_entries(trace: Any) -> str:
    """The entries of the packed bias that belong to the queries: '0 to 15'."""
    return _entries(trace, 0)


def key_entries(trace: Any) -> str:
    """The entries that belong to the keys: '16 to 31'."""
    return _entries(trace, 1)


def value_entries(trace: Any) -> str:
    """The entries that belong to the values: '32 to 47'."""
    return _entries(trace, 2)


def key_bias_max(trace: Any) -> float:
    """The largest entry in size of the key block of ∇b_attn: zero up to rounding."""
    return np.abs(_bias_block(trace, 1)).max()


def key_bias_zero(trace: Any) -> bool:
    """Whether every entry of the key block shows as zero to the four decimals of the table."""
    return bool(key_bias_max(trace) < 1 / 20000)


def _largest(trace: Any, block: int) -> int:
    return block * grads.d_model(trace) + int(np.abs(_bias_block(trace, block)).argmax())


def query_bias_index(trace: Any) -> int:
    """The entry of the query block of ∇b_attn largest in size."""
    return _largest(trace, 0)


def key_bias_index(trace: Any) -> int:
    """The entry of the key block largest in size."""
    return _largest(trace, 1)


def value_bias_index(trace: Any) -> int:
    """The entry of the value block largest in size."""
    return _largest(trace, 2)


def hidden_key(trace: Any) -> int:
    """The key of query 0 that the mask's worked entry uses: key 1, which query 0 cannot see (0 for one position)."""
    return min(1, grads.last_position(trace))
