"""Each record's NumPy code: the line (or few lines) that computes it from its inputs, as plain NumPy.

    numpy_lines(trace, "L0.attn.scores")
    ['v["L0.attn.scores"] = v["L0.attn.q"] @ v["L0.attn.k"].swapaxes(-1, -2)']

The lines are generated from what the trace says about a record (its op kind, inputs, axes, meta and shape) by its
kind's `numpy` function (engine/ops.py), the way engine/explain/ops.yaml describes the arithmetic of one element:
nothing here knows a record by its name or its kind. Run in order, the lines of every record recompute the whole
step from the initial weights and the input ids: the values live in a dict `v` (record name -> array) and the trace
file's values in `T`. The notebook (`handstep notebook`) is these lines; each step of the site shows its own line
beside its formula.

Every line does the arithmetic in the engine's own order (engine/layers.py, engine/optim.py): the same matrix
products and the same sums, so on the machine that made the trace the results are equal to the last bit. That
matters: a gradient that is mathematically zero is rounding noise (~1e-18), and Adam divides it by its own size
(plus ε), which turns another order of the same sums into a different update of ~1e-11.
"""

from __future__ import annotations

from typing import Any

from .ops import Line, NumpyStepError, kind, load

__all__ = ["NumpyStepError", "computed", "forward_function", "loaded", "numpy_lines", "parameters",
           "updated_weights_function"]


def loaded(record: Any) -> bool:
    """Whether the notebook reads the record from the trace file (the initial weights and the batch)."""
    return kind(record.op).numpy is load


def computed(record: Any) -> bool:
    """Whether the notebook computes the record (rather than reading it from the trace file, or leaving it out: the
    training run's summaries, many steps rather than one)."""
    numpy = kind(record.op).numpy
    return bool(numpy) and numpy is not load


def numpy_lines(trace: Any, name: str) -> list[str]:
    """The NumPy line(s) that compute record `name` from its inputs; the last one assigns `v[name]`.

    Loaded records (weights, input ids, targets) read the trace file: `v["wte"] = T["wte"]`."""
    rec = trace.record(name)
    numpy = kind(rec.op).numpy
    if not numpy:
        raise NumpyStepError(f"{name}: no NumPy line: {numpy.why}")
    return numpy(Line(rec, {n: tuple(trace.record(n).value.shape) for n in rec.inputs}))


def forward_function(trace: Any) -> list[str]:
    """`def forward(v)`: every computed forward-pass record's lines in trace order, on a copy of `v` (weights and
    batch): the forward pass as one function, to run again on the updated weights."""
    body = ["v = dict(v)"]
    for rec in trace.records:
        if rec.phase == "forward" and computed(rec):
            body.extend(numpy_lines(trace, rec.name))
    return ["def forward(v):", *("    " + line for line in body), "    return v"]


def updated_weights_function(trace: Any) -> list[str]:
    """`def updated_weights(v)`: the batch and every parameter's updated value under the parameter's name (what
    `forward` takes), for the forward pass on the updated weights."""
    inputs = tuple(r.name for r in trace.records if r.op == "input")
    return ["def updated_weights(v):",
            f"    return {{**{{name: v['updated.' + name] for name in PARAMETERS}}, "
            f"**{{name: v[name] for name in {inputs!r}}}}}"]


def parameters(trace: Any) -> list[str]:
    """The parameter records (the initial weights), in trace order."""
    return [r.name for r in trace.records if r.op == "param"]
