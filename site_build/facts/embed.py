"""Tokens and embeddings: the vocabulary table, the inputs and targets of each text, the worked position, and the
tokens that repeat."""

from __future__ import annotations

from typing import Any, NamedTuple

from site_build.facts.run import C, P, T, V, n0

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
