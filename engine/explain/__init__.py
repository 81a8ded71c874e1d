"""The arithmetic behind one element of one record, regenerated from the record and its inputs.

`explain(trace, name, index)` recomputes the element from its operands (so the result can be checked against
the stored value) and returns display lines in LaTeX with the real numbers: a dot product term by term, a
softmax row, a LayerNorm row, a GELU, an AdamW update, ... The pages' calc() blocks show it; the click panel
shows the same, computed in the browser by `interpret.js` from the same descriptions (`ops.yaml`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..trace import Trace
from .interpret import Element, ExplainError, TooMany, exact, num, par, split_line

HERE = Path(__file__).parent
SCRIPT = HERE / "interpret.js"  # the browser's interpreter of the same descriptions

__all__ = ["SCRIPT", "Explanation", "ExplainError", "evaluate", "exact", "explain", "jacobian", "num", "operands",
           "ops", "par", "split_line"]


@cache
def ops() -> dict[str, Any]:
    """The descriptions of every op kind (ops.yaml), as plain data the browser receives too."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the same data, 10x faster
    return yaml.load((HERE / "ops.yaml").read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader


@dataclass
class Explanation:
    name: str
    index: tuple[int, ...]
    op: str
    result: float
    operands: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    latex: list[str] = field(default_factory=list)
    text: str = ""


def explain(trace: Trace, name: str, index: Any) -> Explanation:
    """Regenerate element `index` of record `name` from its inputs."""
    rec = trace.record(name)
    index = tuple(int(i) for i in (index if isinstance(index, (tuple, list)) else (index,)))
    if len(index) != rec.value.ndim or any(not 0 <= i < n for i, n in zip(index, rec.value.shape)):
        raise IndexError(f"index {list(index)} is outside {name} of shape {list(rec.value.shape)}")
    if rec.op not in ops()["ops"]:
        raise KeyError(f"no explanation for op {rec.op!r}: describe it in engine/explain/ops.yaml")
    element = Element(ops(), rec, [trace.record(n) for n in rec.inputs], index, trace.labels["vocab"])
    result, lines, text = element.explain()
    return Explanation(name, index, rec.op, result, element.operands, lines, text)


def evaluate(trace: Trace, name: str, index: Any, expressions: tuple[str, ...] = (),
             patch: dict[tuple[str, tuple[int, ...]], float] | None = None, terms: dict | None = None) -> list[Any]:
    """Element `index` of record `name` recomputed from its inputs, then `expressions` of the description's language
    evaluated over the same bindings (the exercises' typical wrong answers, the parts of a sum): `[result, *values]`.
    `patch` ({(input record, index): value}) replaces some inputs, e.g. by the rounded numbers a page shows. `terms`:
    a dict the caller keeps while it evaluates one element under several patches, where the element's einsum terms
    are gathered once."""
    element = _element(trace, name, index, patch, terms=terms)
    return [element.value_of("result"), *(element.value_of(e) for e in expressions)]


def operands(trace: Trace, name: str, index: Any,
             limit: int | None = None) -> list[tuple[str, tuple[int, ...]]] | None:
    """The input elements the value of element `index` of `name` is computed from (`explain`'s operands, without
    writing its lines); None when it reads more than `limit` input numbers (elements of float records), found out
    before they are read (a logit's gradient reads a 49,152-word row)."""
    element = _element(trace, name, index, None, limit)
    try:
        element.value_of("result")
        if element.desc.get("reads"):
            element.value_of(element.desc["reads"])
    except TooMany:
        return None
    return element.operands


def _element(trace: Trace, name: str, index: Any, patch: dict | None, limit: int | None = None,
             terms: dict | None = None) -> Element:
    rec = trace.record(name)
    index = tuple(int(i) for i in (index if isinstance(index, (tuple, list)) else (index,)))
    return Element(ops(), rec, [trace.record(n) for n in rec.inputs], index, trace.labels["vocab"], patch, limit,
                   terms)


def jacobian(trace: Trace, name: str, row: Any) -> tuple[np.ndarray, str]:
    """The full Jacobian of one row of a softmax, LayerNorm-normalize or RMSNorm-normalize record w.r.t. that row's
    input.

    Returns (J, description) with J[i, j] = d out_i / d in_j. The backward pass never builds this matrix:
    it applies it to the upstream gradient in O(n) (softmax: y * (g - <g, y>); LayerNorm: the rstd formula).
    """
    rec = trace.record(name)
    row = tuple(int(i) for i in row)
    if len(row) != rec.value.ndim - 1:
        raise IndexError(f"jacobian of {name} needs the index of one row: {rec.value.ndim - 1} numbers")
    for i, n, axis in zip(row, rec.value.shape, rec.axes):
        if not 0 <= i < n:
            raise IndexError(f"bad index {row} for '{name}' jacobian: {axis} index {i} is outside 0..{n - 1}")
    if rec.op == "softmax":
        y = rec.value[row]
        return np.diag(y) - np.outer(y, y), "diag(y) - y yᵀ"
    if rec.op == "normalize":
        xhat = rec.value[row]
        var = float(trace[rec.inputs[2]][row])
        n = xhat.size
        rstd = 1.0 / math.sqrt(var + rec.meta["eps"])
        return rstd * (np.eye(n) - 1.0 / n - np.outer(xhat, xhat) / n), "(I - 1/C - x̂ x̂ᵀ / C) / √(σ²+ε)"
    if rec.op == "rms_normalize":  # RMSNorm: no mean was subtracted, so no 1/C term
        xhat = rec.value[row]
        n = xhat.size
        rstd = 1.0 / math.sqrt(float(trace[rec.inputs[1]][row]) + rec.meta["eps"])
        return rstd * (np.eye(n) - np.outer(xhat, xhat) / n), "(I - x̂ x̂ᵀ / C) / √(ν+ε)"
    raise KeyError(f"no Jacobian for {name} (op {rec.op}): give a softmax, LayerNorm or RMSNorm xhat record")
