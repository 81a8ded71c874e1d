"""Tokens and embeddings: the vocabulary table, the inputs and targets of each text, the worked position, and the
tokens that repeat."""

from __future__ import annotations

from typing import Any, NamedTuple

from markupsafe import Markup

from site_build import format as fmt
from site_build.facts.run import B, C, P, T, V, checkpoint, llama, n0, padded, seed, start, texts, unit, weight_decay
from site_build.macros.text import and_list, number_word

VOCAB_ALL = 64  # a vocabulary up to this size is listed whole, ...
VOCAB_HEAD, VOCAB_TAIL = 24, 8  # ... a bigger one by its first and last entries


def row(trace: Any) -> int:
    """The position worked through: the second, or the first if the first text has a single real one."""
    return min(1, n0(trace) - 1)


def col(trace: Any) -> int:
    """The dimension of the worked position shown in detail: the third, or the last if the rows are shorter."""
    return min(2, C(trace) - 1)


def vocab_cut(trace: Any) -> bool:
    """Whether the vocabulary is too long to list whole (more than 64 entries)."""
    return V(trace) > VOCAB_ALL


def vocab_rows(trace: Any) -> list[tuple[Any, str]]:
    """The rows of the vocabulary table, (id, entry): every entry, or the first 24 and the last 8 with a row of ⋮
    between."""
    vocab, n = trace.labels["vocab"], V(trace)
    if not vocab_cut(trace):
        return [(i, vocab[i]) for i in range(n)]
    return ([(i, vocab[i]) for i in range(VOCAB_HEAD)] + [("⋮", "⋮")]
            + [(i, vocab[i]) for i in range(n - VOCAB_TAIL, n)])


def vocab_shown(trace: Any) -> int:
    """How many entries the vocabulary table lists."""
    return VOCAB_HEAD + VOCAB_TAIL if vocab_cut(trace) else V(trace)


def vocab_written(trace: Any) -> str:
    """The vocabulary size with thousands separators (50,257)."""
    return f"{V(trace):,}"


def has_eos(trace: Any) -> bool:
    """Whether the vocabulary has an `<eos>` entry."""
    return "<eos>" in trace.labels["vocab"]


class Pair(NamedTuple):
    """One position of a text: its input token and id, its target token and id (−100 where padded)."""

    t: int
    input: str
    input_id: int
    target: str
    target_id: int


def pairs(trace: Any, b: int) -> list[Pair]:
    """The rows of text b's table of inputs and targets, one per position."""
    labels, ids, targets = trace.labels, trace["input_ids"], trace["targets"]
    return [Pair(i, labels["inputs"][b][i], int(ids[b, i]), labels["targets"][b][i], int(targets[b, i]))
            for i in range(T(trace))]


def seen(trace: Any) -> list[str]:
    """The tokens the worked position sees: the first text's inputs up to and including it."""
    return trace.labels["inputs"][0][:row(trace) + 1]


def guess(trace: Any) -> str:
    """The token the worked position must guess: its target."""
    return trace.labels["targets"][0][row(trace)]


class Repeat(NamedTuple):
    """A token that occurs more than once in the first text, and where."""

    word: str
    positions: list[int]
    count: int


def repeats(trace: Any) -> list[Repeat]:
    """The tokens that occur more than once among the first text's real inputs, in the order they first appear."""
    words = trace.labels["inputs"][0][:n0(trace)]
    out: list[Repeat] = []
    for w in words:
        if words.count(w) > 1 and w not in [r.word for r in out]:
            where = [t for t, x in enumerate(words) if x == w]
            out.append(Repeat(w, where, len(where)))
    return out


def unused(trace: Any) -> int:
    """The rows of the position table this step does not use (positions past the inputs)."""
    return P(trace) - T(trace)


# -- what the page says about the run, as this run makes it -----------------------------------------------------------
def tokenised(trace: Any) -> Markup:
    """How the texts become rows of ids: the text (or the batch), the token put in front, and the padding."""
    begin = fmt.html_code(start(trace))
    if B(trace) == 1:
        how = (f"The tokenizer cuts it into tokens and puts\n{begin} in front:" if checkpoint(trace) else
               "The tokenizer puts `<bos>` in front and\nlooks every word up in the vocabulary:")
        return Markup(f'The training text is "{fmt.html_words(texts(trace)[0])}". {how}')
    listed = "".join(f'"{fmt.html_words(s)}"{", " if i < B(trace) - 1 else "."}\n' for i, s in enumerate(texts(trace)))
    each = (f"Each one is cut into tokens with {begin} in front" if checkpoint(trace) else
            "Each one gets `<bos>` in front and every word is looked up in the vocabulary")
    if padded(trace):
        pad = begin if checkpoint(trace) else "`<pad>`"
        rows = (f"; shorter texts are\npadded with {pad} on the right so that all rows have the same length, "
                f"{T(trace)}")
    else:
        rows = f". The texts are equally\nlong, so no padding is needed: every row has length {T(trace)}"
    return Markup(f"This step trains on a batch of {B(trace)} texts:\n{listed}{each}{rows}.")


def padding_note(trace: Any) -> Markup:
    """What a target id of −100 means, when some text is padded ("" otherwise)."""
    if not padded(trace):
        return Markup("")
    return Markup("A target id of −100 marks a padded position: the loss skips it (PyTorch's `ignore_index`), so "
                  "padding\n"
            "never teaches the model anything.")


def every_position(trace: Any) -> Markup:
    """Why every position is a training example: the worked position's context and guess, and how many guesses one
    pass computes (one, for a single word)."""
    if n0(trace) > 1:
        of = " of text 1" if B(trace) > 1 else ""
        return Markup(
            f"Position {row(trace)} sees “{fmt.html_word_list(seen(trace))}” and must guess\n"
            f"“{fmt.html_words(guess(trace))}”; the next position has one more {unit(trace)} of context and its\n"
            "own guess to make. Because attention (three pages on) hides the future from each position, all\n"
            f"{n0(trace)} guesses{of} are computed in one pass over the text, and each\none is a separate training "
            "signal. That is why a language model learns so much more from a text than\n\"one example per text\" would "
            "suggest.")
    return Markup(
        f"{'This text' if B(trace) == 1 else 'Text 1'} has a single word, so there is one guess to make: position 0 "
        f"sees\n“{fmt.html_words(start(trace))}” and must guess “{fmt.html_words(guess(trace))}”. A longer\ntext of "
        "$n$ words would give $n$ guesses, one per position, all computed in one pass over the text (attention, three\n"
        "pages on, hides the future from each position), and each a separate training signal. That is why a language"
        "\nmodel learns so much more from a text than \"one example per text\" would suggest.")


def wte_origin(trace: Any) -> Markup:
    """Where the token table's numbers come from: the checkpoint's file, or the seeded random generator."""
    if checkpoint(trace):
        return Markup("Nothing on this site computed these numbers: they were read from the checkpoint's "
                      "`model.safetensors` (and\nwidened to float64), so every run of this site starts from the same "
                      "table. The first entry, as the trace records it:")
    return Markup("Nothing computed these numbers: each was drawn once from the normal distribution above, with the\n"
                  f"generator seeded by `seed` = {seed(trace)}, which is what makes every run of this site give the "
                  "same\ntable. The first entry, as the trace records it:")


def copies(trace: Any) -> Markup:
    """The tokens that repeat in text 1, where, and that their rows of the lookup ($E^{\\text{tok}}$, or $X$ in a
    Llama model) are copies of one row of the token table."""
    rows = "X" if llama(trace) else "E^{\\text{tok}}"
    of = " of text 1" if B(trace) > 1 else ""
    return Markup("\n".join(
        f"The token “{fmt.html_words(r.word)}” appears at positions {and_list(r.positions)}{of}, so\nthose "
        f"{number_word(r.count)} rows of ${rows}$ are copies of the same row of $W_{{te}}$." for r in repeats(trace)))


def rows_used(trace: Any) -> str:
    """Which rows of the position table this step uses: 0 to T − 1, or only row 0."""
    if T(trace) > 1:
        return f"The inputs are {T(trace)} tokens long, so this step uses rows $0$ to ${T(trace) - 1}$:"
    return "The inputs are one token long, so this step uses only row $0$:"


def unused_rows(trace: Any) -> str:
    """The rows of the position table past the inputs: that no gradient reaches them, and that only weight decay
    moves them ("" when every row is used)."""
    n = unused(trace)
    if not n:
        return ""
    rows = f"Row ${T(trace)}$" if n == 1 else f"Rows ${T(trace)}$ to ${P(trace) - 1}$"
    them = "it" if n == 1 else "them"
    decay = f";\nonly weight decay will move {them} in the update" if weight_decay(trace) > 0 else ""
    return (f"{rows} of $W_{{pe}}$\ntake{'s' if n == 1 else ''} no part\nin this step, so no gradient from the loss "
            f"will reach\n{them}{decay}.")
