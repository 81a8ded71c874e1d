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
from functools import cache, partial
from types import ModuleType
from typing import Any


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


def facts_for(trace: Any) -> dict[str, Topic]:
    """Every topic, bound to this run (what a page sees beside the macros)."""
    return {name: Topic(name, module, trace) for name, module in topics().items()}
