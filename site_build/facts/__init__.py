"""The facts a page states, as small named Python functions of the run.

Prose reads a fact by topic and name: `{{ ln.sd }}`, `{{ train.half_step }}`, `{{ attn.head_columns(1) }}`.
Each module of this package is a topic (its file name is what a page writes), and each of its public functions
whose first parameter is `trace` is a fact:

    def sd(trace) -> float:                    # {{ ln.sd }}: worked out once per build, on first use
    def head_columns(trace, part) -> str:      # {{ attn.head_columns(1) }}: called with the page's arguments

A fact computes from the trace (statistics, counts, which row a page works through, which words a sentence
needs); a page formats it with the macros (`num`, `value`, `count`, ...). Nothing here writes HTML for a whole
block or keeps state between builds.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import threading
from functools import cache, partial
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np


@cache
def topics() -> dict[str, ModuleType]:
    """Every topic module of this package, by name."""
    return {info.name: importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
            if not info.name.startswith("_")}


@cache
def facts_of(module: ModuleType) -> dict[str, Any]:
    """The facts of one topic: its public functions defined in it whose first parameter is `trace` (read once: each
    page's Topic asks again)."""
    out = {}
    for name, fn in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
            continue
        params = list(inspect.signature(fn).parameters)
        if params and params[0] == "trace":
            out[name] = fn
    return out


@cache
def _takes_arguments(fn: Any) -> bool:
    """Does a fact take parameters beyond `trace` (it is then a function of them on a page)?"""
    return len(inspect.signature(fn).parameters) > 1


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


class FactError(Exception):
    """A page asked for a fact its topic does not have (the page renderer adds the file and line)."""


class Topic:
    """One topic's facts for one run: a fact of `trace` alone is a value, worked out on first use and kept; a fact
    with more parameters is a function of them."""

    def __init__(self, name: str, module: ModuleType, trace: Any) -> None:
        self._name = name
        self._facts = facts_of(module)
        self._trace = trace
        self._values: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fn = self._facts.get(name)
        if fn is None:
            close = difflib.get_close_matches(name, list(self._facts), n=1, cutoff=0.6)
            hint = f" (did you mean '{self._name}.{close[0]}'?)" if close else ""
            raise FactError(f"no fact '{self._name}.{name}'{hint}")
        if _takes_arguments(fn):
            return partial(fn, self._trace)
        if name not in self._values:
            self._values[name] = fn(self._trace)
        return self._values[name]

    def __repr__(self) -> str:
        return f"<facts {self._name}>"


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


def facts_for(trace: Any) -> dict[str, Topic]:
    """Every topic, bound to this run (what a page sees beside the macros)."""
    return {name: Topic(name, module, trace) for name, module in topics().items()}
