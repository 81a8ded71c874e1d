"""Figures several facts and macros share, worked out once per run, and the sentence parts they are told in.

    per_run(trace, key, make)   make(), once per run, kept with the trace (thread-safe: a background lane and a
                                page wait for one another)
    abs_stats(trace, name)      |x| over a whole record in one pass: largest (and where), mean, sum of squares
    Split, nonzero, joined      a sentence that splits a total into parts, and the words that join its parts

Below both the facts (site_build/facts/) and the macros (site_build/macros/), which use them.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np


class Split(NamedTuple):
    """A sentence that splits a total into parts ("Of the 6864 weights, 6830 moved by about η and 34 did not"), in
    Markdown, with the numbers it states: the total first, then each part, in the order the sentence names them. A
    page shows it with `{{ split(opt.moved) }}`, which marks it on the page so that a check can add the parts up."""

    text: str
    total: int
    parts: tuple[int, ...]


def nonzero(*parts: tuple[int, str]) -> list[tuple[int, str]]:
    """The (count, words) parts of a split that are not 0, in order: a sentence names only those."""
    return [(n, words) for n, words in parts if n]


def joined(items: list[str], conj: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`: items joined for a sentence."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conj} {items[-1]}"


def per_run(trace: Any, key: Any, make: Any) -> Any:
    """`make()`, worked out once per run: for figures several facts share (they read every weight). Kept with the
    run's trace, so it goes with it; nothing is kept at module level. A big run works some of them out in a
    background lane while the pages render (macros.registry.ahead): a page that asks for one being worked out waits
    for it instead of working it out a second time."""
    memo = trace.__dict__.setdefault("_facts_once", {})
    once = memo.get(key)
    if once is None:
        once = memo.setdefault(key, _Once())  # atomic: two threads get the same one
    return once.get(make)


class _Once:
    """One figure of per_run: the first caller works it out (holding the lock), the others wait and read it; a
    failure is raised to its caller and the next one tries again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None

    def __getstate__(self) -> dict[str, Any]:  # a trace that is kept goes with its figures, not with a lock
        return {"done": self.done, "value": self.value}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        self.done, self.value = state["done"], state["value"]

    def get(self, make: Any) -> Any:
        with self.lock:
            if not self.done:
                self.value, self.done = make(), True
            return self.value


class AbsStats(NamedTuple):
    """|x| over a whole record, in one pass: its largest value and where (flat index, the first), its mean, and the
    sum of x²."""

    largest: float
    at: int
    mean: float
    squares: float


CHUNK = 1 << 20


def abs_stats(trace: Any, name: str) -> AbsStats:
    """AbsStats of a record, a slice at a time (a GPT-2 table is 38 million numbers, memory-mapped: a whole |x| of
    it would be another 300 MB), worked out once per run."""

    def make() -> AbsStats:
        flat = np.asarray(trace[name]).reshape(-1)
        largest, at, total, squares = -1.0, 0, 0.0, 0.0
        for k in range(0, flat.size, CHUNK):
            part = np.abs(flat[k:k + CHUNK])
            i = int(part.argmax())
            if part[i] > largest:
                largest, at = float(part[i]), k + i
            total += float(part.sum())
            squares += float((part * part).sum())
        trace.release([name])  # a big run's pages, read once
        return AbsStats(max(largest, 0.0), at, total / flat.size if flat.size else float("nan"), squares)

    return per_run(trace, ("abs stats", name), make)
