"""The embedding gradients: the position table's unused rows, the token table's scatter-add (which words are
repeated, absent, or targets), the tied output side's share, and every parameter's gradient at a glance."""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup, escape

from site_build import format as fmt
from site_build.facts import grads, opt
from site_build.figures import abs_stats, per_run
from site_build.macros.optimizer import TORCH_NAMES
from site_build.macros.text import counted

MOST = 12  # a list of words names at most this many, then says how many more


# -- the position table ------------------------------------------------------------------------------------------
def table_rows(trace: Any) -> int:
    """How many rows the position table has: the longest text the model could read."""
    return int(trace.config["model"]["n_positions"])


def unused(trace: Any) -> int:
    """How many rows of the position table no text reaches (0 when the texts fill it)."""
    return table_rows(trace) - grads.positions(trace)


def last_row(trace: Any) -> int:
    """The last row of the position table."""
    return table_rows(trace) - 1


def unused_zero(trace: Any) -> bool:
    """Whether every entry of the unused rows' gradient is exactly zero."""
    return bool(np.abs(np.asarray(trace["grad.wpe"][grads.positions(trace):])).max() == 0)


def branches(trace: Any) -> int:
    """How many branches add a correction to the residual stream: an attention and a feed-forward one per block."""
    return 2 * grads.layers(trace)


# -- the token table, from the input side ---------------------------------------------------------------------------
def input_grad(trace: Any) -> str:
    """The record of the token table's gradient from the input side: a share of `grad.wte` when tied, all of it
    when not."""
    return "grad.wte.from_embed" if grads.tied(trace) else "grad.wte"


def input_symbol(trace: Any) -> str:
    """Its symbol in TeX."""
    return "\\nabla W_{te}^{\\text{in}}" if grads.tied(trace) else "\\nabla W_{te}"


def _counts(trace: Any) -> np.ndarray:
    """How often each vocabulary word is an input, over every text of the batch."""
    return np.bincount(np.asarray(trace["input_ids"]).ravel(), minlength=len(trace.labels["vocab"]))


def _nonzero_rows(trace: Any, name: str) -> np.ndarray:
    """Whether each row of a vocabulary-sized gradient has a nonzero entry: read block by block (GPT-2's table is
    big and may be memory-mapped), once per run and record."""
    def make() -> np.ndarray:
        grad = np.asarray(trace[name])
        rows = np.zeros(grad.shape[0], dtype=bool)
        for start in range(0, grad.shape[0], 4096):
            rows[start:start + 4096] = np.abs(grad[start:start + 4096]).max(axis=1) > 0
        return rows

    return per_run(trace, ("nonzero rows", name), make)


def _input_rows(trace: Any) -> np.ndarray:
    """Whether each row of the input side's gradient has a nonzero entry."""
    return _nonzero_rows(trace, input_grad(trace))


def _repeated(trace: Any) -> list[int]:
    return np.flatnonzero(_counts(trace) > 1).tolist()


def _absent(trace: Any) -> list[int]:
    return np.flatnonzero(_counts(trace) == 0).tolist()


def _quoted(trace: Any, words: list[int]) -> Markup:
    """Words for a sentence, each in quotes: '"a"', '"a" and "b"', '"a", "b" and "c"', or the first twelve and
    'and 3 more words'."""
    quoted = [Markup('"') + fmt.html_words(grads.word(trace, v)) + Markup('"') for v in words[:MOST + 1]]
    if len(words) > MOST:
        more = len(words) - MOST
        return Markup(", ").join(quoted[:MOST]) + Markup(f", and {more} more word{'' if more == 1 else 's'}")
    if len(quoted) < 2:
        return Markup("").join(quoted)
    return Markup(", ").join(quoted[:-1]) + Markup(" and ") + quoted[-1]


def repeated(trace: Any) -> int:
    """How many words are an input more than once."""
    return len(_repeated(trace))


def repeated_words(trace: Any) -> Markup:
    """Those words, quoted, for a sentence."""
    return _quoted(trace, _repeated(trace))


def shared(trace: Any) -> int:
    """The word whose row the page works through: the first repeated word with a nonzero row, else the first
    repeated word, else the first input."""
    rows = _input_rows(trace)
    live = [v for v in _repeated(trace) if rows[v]]
    if live:
        return live[0]
    return _repeated(trace)[0] if _repeated(trace) else int(trace["input_ids"][0][0])


def shared_word(trace: Any) -> str:
    """That word."""
    return grads.word(trace, shared(trace))


def shared_count(trace: Any) -> int:
    """How many times that word is an input."""
    return int(_counts(trace)[shared(trace)])


def silent_words(trace: Any) -> list[str]:
    """The repeated words whose row is zero nonetheless: every position they sit at is padding."""
    rows = _input_rows(trace)
    return [grads.word(trace, v) for v in _repeated(trace) if not rows[v]]


def silent_rows(trace: Any) -> Markup:
    """For each repeated word whose row is zero nonetheless (`silent_words`), a paragraph saying why (its positions
    are all padding); paragraphs apart by a blank line, nothing when there is no such word."""
    return Markup("\n\n").join(
        Markup('Word "') + fmt.html_words(w) + Markup(
            '" also appears more than once, but its row is zero: all its positions are padding, whose\n'
            "gradient is zero (their targets are ignored, and no real position can attend to them, because they\n"
            "come after it).") for w in silent_words(trace))


def absent(trace: Any) -> int:
    """How many words of the vocabulary are never an input."""
    return len(_absent(trace))


def absent_words(trace: Any) -> Markup:
    """Those words, quoted, for a sentence."""
    return _quoted(trace, _absent(trace))


def _targeted(trace: Any) -> list[int]:
    """The absent words that are a target somewhere."""
    targets = np.asarray(trace["targets"]).ravel()
    return sorted(set(_absent(trace)) & set(targets[targets >= 0].tolist()))


def targeted(trace: Any) -> int:
    """How many of the absent words are a target somewhere."""
    return len(_targeted(trace))


def targeted_words(trace: Any) -> Markup:
    """Those words, quoted, for a sentence."""
    return _quoted(trace, _targeted(trace))


def plain(trace: Any) -> int:
    """How many of the absent words are never a target either."""
    return absent(trace) - targeted(trace)


def absent_moved(trace: Any) -> int:
    """How many of the absent words have a nonzero row of ∇W_te (from the output side, when tied)."""
    return int(_nonzero_rows(trace, "grad.wte")[_absent(trace)].sum())


def every_absent_moved(trace: Any) -> bool:
    """Whether every absent word has a nonzero row of ∇W_te."""
    return absent_moved(trace) == absent(trace)


def example(trace: Any) -> int:
    """The absent word the page works through: the first never a target either, else the first absent word."""
    targeted_ = set(_targeted(trace))
    plain_ = [v for v in _absent(trace) if v not in targeted_]
    return plain_[0] if plain_ else _absent(trace)[0]


def example_word(trace: Any) -> str:
    """That word."""
    return grads.word(trace, example(trace))


def example_intro(trace: Any) -> Markup:
    """What introduces the worked row of the absent word (`example_word`): why it is pushed away, when it is never a
    target either (`plain`), else only its name."""
    word = Markup('"') + fmt.html_words(example_word(trace)) + Markup('"')
    if plain(trace):
        return (Markup("So the row of ") + word + Markup(
            ", never an input and never a target, is pushed away from the final\n"
            "vectors, a little at every position, in proportion to the probability it got there:"))
    return Markup("For example, the row of ") + word + Markup(":")


def once(trace: Any) -> int:
    """The first word that is an input exactly once (-1 if there is none)."""
    found = np.flatnonzero(_counts(trace) == 1)
    return int(found[0]) if found.size else -1


def once_word(trace: Any) -> str:
    """That word."""
    return grads.word(trace, once(trace))


def input_rows_check(trace: Any) -> Markup:
    """The check of the input side's rows the reader can do: a word that is an input exactly once (`once_word`) has
    one row of ∇X as its row; with none, every used row is a sum of rows of ∇X. It ends its line: the page goes on
    after it on the same one."""
    symbol = escape(input_symbol(trace))
    if once(trace) >= 0:
        return (Markup('Pick a word that is an input exactly once, such as "') + fmt.html_words(once_word(trace))
                + Markup(f'": its row of ${symbol}$ is one\nrow of $\\nabla X$, the row of its position.\n'))
    return Markup(f"Every input word here appears more than once, so every used row of ${symbol}$ is a sum of rows "
                  "of\n$\\nabla X$: add up the rows of the positions where the word is the input.\n")


# -- every parameter's gradient --------------------------------------------------------------------------------------
def _parameters(trace: Any) -> list[str]:
    return [names["grad"] for names in trace.index.values() if isinstance(names, dict)]


def parameters(trace: Any) -> list[dict[str, Any]]:
    """Every parameter's gradient record, in the trace's order, with its largest entry in size."""
    return [{"name": name, "largest": abs_stats(trace, name).largest} for name in _parameters(trace)]


def steepest(trace: Any) -> str:
    """The gradient record of largest norm (the first such, on a tie)."""
    best, largest = "", -1.0
    for name in _parameters(trace):
        n = abs_stats(trace, name).squares
        if n > largest:
            best, largest = name, n
    return best


# -- sentences whose words follow the config ----------------------------------------------------------------------
def batch_note(trace: Any) -> str:
    """With several texts, which one the activation tables show and that the table gradients add up all of them
    (nothing with one text); a paragraph of its own."""
    n = grads.texts(trace)
    if n == 1:
        return ""
    return (f"\nThe batch has {counted(n, 'text')}; activation tables show text 1. The table gradients sum over\n"
            "all texts, and everything said below about how often a word appears counts every text.")


def wpe_row_sum(trace: Any) -> str:
    """What the worked entry of the position table's gradient adds up: one term per text at that position."""
    r, n = grads.row(trace), grads.texts(trace)
    if n > 1:
        return f"Row {r}, column 0: the sum over the {n} texts at position {r}."
    return f"With one text the sum has one term: row {r} of $\\nabla W_{{pe}}$ is row {r} of $\\nabla X$."


def unused_rows_fate(trace: Any) -> str:
    """Where the unused rows of the position table have a gradient of exactly zero: what the step does to them
    (weight decay, or nothing)."""
    if not (unused(trace) and unused_zero(trace)):
        return ""
    n = unused(trace)
    them, rows, those = ("it", "this row", "that row") if n == 1 else ("them", "these rows", f"those {n} rows")
    fate = (f"whatever the optimizer does to {them} comes from weight\ndecay alone" if grads.weight_decay(trace) else
            f"with weight decay off, the optimizer leaves {them} exactly as {'it is' if n == 1 else 'they are'}")
    return (f"(Every entry of {those} is zero in the table above, not just this one.) The\nloss asks nothing of "
            f"{rows}; {fate}.")


def steepest_step(trace: Any) -> str:
    """What the largest gradient means for the step: little with an adaptive optimizer, the largest move with SGD."""
    if grads.adaptive(trace):
        return (f"With {TORCH_NAMES.get(opt.name(trace), opt.name(trace))} the size matters less than one would "
                "think: the update\ndivides each entry by its own running size, which is the subject of the next "
                "section.")
    return ("With plain SGD the step is the learning rate times the gradient, so this is also the tensor that the\n"
            "step will move the most.")
