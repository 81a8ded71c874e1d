"""The backward pass in general: the sizes and the words its pages share (texts, positions, targets, blocks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.macros.text import counted
from site_build.pages import BLOCK


def texts(trace: Any) -> int:
    """How many texts the batch holds."""
    return int(trace["input_ids"].shape[0])


def positions(trace: Any) -> int:
    """How many positions each text has (padding included)."""
    return int(trace["input_ids"].shape[1])


def targets(trace: Any) -> int:
    """N, the number of positions over the whole batch that have a target (the mean of the loss divides by it)."""
    return int((np.asarray(trace["targets"]) >= 0).sum())


def ignored(trace: Any) -> int:
    """How many positions of the batch are padding, whose target is ignored."""
    return texts(trace) * positions(trace) - targets(trace)


def real(trace: Any) -> int:
    """How many positions of the first text have a target."""
    return int((np.asarray(trace["targets"][0]) >= 0).sum())


def row(trace: Any) -> int:
    """The position most backward pages work through: the third, or the last real one of the first text."""
    return min(2, real(trace) - 1)


def query(trace: Any) -> int:
    """The query position the attention pages work through: the fourth, or the last real one of the first text."""
    return min(3, real(trace) - 1)


def layers(trace: Any) -> int:
    """How many transformer blocks the model has."""
    return int(trace.config["model"]["n_layers"])


def last(trace: Any) -> int:
    """The number of the last block (the first the backward pass goes through)."""
    return layers(trace) - 1


def backward_order(trace: Any) -> str:
    """The order the backward pass takes the blocks in: 'block 1 first, then block 0', 'block 2, then block 1,
    then block 0', 'block 5 first, then each block below it down to block 0'."""
    n = layers(trace)
    if n == 2:
        return "block 1 first, then block 0"
    if n == 3:
        return "block 2, then block 1, then block 0"
    return f"block {n - 1} first, then each block below it down to block 0"


# -- the walked block: the one block the backward pages work through ------------------------------------------------
def walked(trace: Any) -> int:
    """The block the backward pages work through: the last, the first the backward pass meets (its output gradient
    comes straight from the final norm). The backward pages say so in their front matter, `block: last`, which puts
    this number in their record names' `L{block}`; the facts of those pages read it here."""
    return last(trace)


def walked_name(trace: Any, name: str) -> str:
    """A record of the walked block: `L{block}` of `name` (as a page writes it) replaced by its number."""
    return name.replace(BLOCK, f"L{walked(trace)}")


def lower_layers(trace: Any) -> list[int]:
    """The other blocks, in the order the backward pass takes them after the walked one: [1, 0] for three blocks."""
    return list(range(walked(trace) - 1, -1, -1))


def lower_blocks(trace: Any) -> str:
    """Those blocks in words: 'block 0', 'blocks 1 and 0', 'blocks 4 down to 0'."""
    n = walked(trace)
    if n <= 1:
        return "block 0"
    return "blocks 1 and 0" if n == 2 else f"blocks {n - 1} down to 0"


def lower_blocks_after(trace: Any) -> str:
    """What the other blocks do, as a clause after "this page works through block 2, the last;": 'blocks 1 and 0 go
    through exactly the same steps after it, with their own numbers'."""
    verb, own = ("goes", "its") if walked(trace) == 1 else ("go", "their")
    return f"{lower_blocks(trace)} {verb} through exactly the same steps after it, with {own} own numbers"


def below(trace: Any) -> int:
    """The block under the walked one, whose output is the walked block's input X (−1 when it is block 0 and X is
    the embeddings)."""
    return walked(trace) - 1


def input_via_ln(trace: Any) -> str:
    """The record of the gradient that reaches the walked block's input X through its first norm, ln_1: that of the
    embeddings' output under block 0, else that of the output of the block below."""
    return "grad.embed.out.via_ln" if walked(trace) == 0 else f"grad.L{below(trace)}.resid_2.via_ln"


def input_grad(trace: Any) -> str:
    """The record of the gradient of the walked block's input X, the sum of its two paths: the embeddings' output's
    under block 0, else the output's of the block below."""
    return "grad.embed.out" if walked(trace) == 0 else f"grad.L{below(trace)}.resid_2"


def d_model(trace: Any) -> int:
    """C, the width of the residual stream."""
    return int(trace.config["model"]["d_model"])


def d_ff(trace: Any) -> int:
    """The number of hidden units of the feed-forward network."""
    return int(trace.config["model"]["d_ff"])


def heads(trace: Any) -> int:
    """How many attention heads each block has."""
    return int(trace.config["model"]["n_heads"])


def head_size(trace: Any) -> int:
    """D, the size of one head."""
    return d_model(trace) // heads(trace)


def tied(trace: Any) -> bool:
    """Whether the output layer is the token table (GPT-2's tying) rather than a matrix of its own."""
    return bool(trace.config["model"].get("tie_embeddings", True))


def word(trace: Any, v: int) -> str:
    """Word v of the vocabulary (config text: the page escapes it)."""
    return trace.labels["vocab"][v]


def first_text(trace: Any) -> str:
    """How prose names the text the tables show: 'this text' when it is the only one, else 'text 1'."""
    return "this text" if texts(trace) == 1 else "text 1"


def others_follow(trace: Any) -> str:
    """The texts the tables leave out, with their verb: 'the other text follows', 'the other two texts follow'."""
    others = texts(trace) - 1
    return "the other text follows" if others == 1 else f"the other {counted(others, 'text')} follow"


def slots(trace: Any) -> int:
    """How many positions the whole batch has, texts times positions (padding included)."""
    return texts(trace) * positions(trace)


def last_position(trace: Any) -> int:
    """The last position of a text (padding included)."""
    return positions(trace) - 1


def last_head(trace: Any) -> int:
    """The number of the last attention head."""
    return heads(trace) - 1


def batch(trace: Any) -> str:
    """What prose calls the inputs as a whole: 'text' when there is one, else 'batch'."""
    return "text" if texts(trace) == 1 else "batch"


def adaptive(trace: Any) -> bool:
    """Whether the optimizer is Adam or AdamW, which divide each step by the gradient's own running size."""
    return trace.config["optimizer"]["name"] in ("adam", "adamw")


def weight_decay(trace: Any) -> bool:
    """Whether the optimizer's weight decay is on (greater than zero)."""
    return trace.config["optimizer"]["weight_decay"] > 0


def vocab_size(trace: Any) -> int:
    """How many words the vocabulary has."""
    return len(trace.labels["vocab"])


def batch_tables(trace: Any) -> str:
    """With several texts, which one the tables show and that parameter gradients add up all of them (nothing with
    one text); a paragraph of its own."""
    n = texts(trace)
    if n == 1:
        return ""
    return (f"\nThe batch has {counted(n, 'text')}; the tables show text 1. Parameter gradients are summed over\n"
            "all texts.")


def batch_heads(trace: Any) -> str:
    """The same, as a sentence that goes on the paragraph about the heads (on a line of its own)."""
    n = texts(trace)
    if n == 1:
        return ""
    return (f"\nThe batch has {counted(n, 'text')}; the tables show text 1, and parameter gradients are summed\n"
            "over all of them.")
