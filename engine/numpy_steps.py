"""Each record's NumPy code: the line (or few lines) that computes it from its inputs, as plain NumPy.

    numpy_lines(trace, "L0.attn.scores")
    ['v["L0.attn.scores"] = v["L0.attn.q"] @ v["L0.attn.k"].swapaxes(-1, -2)']

The lines are generated from what the trace says about a record (its op kind, inputs, axes, meta and shape), the
way engine/explain/ops.yaml describes the arithmetic of one element: nothing here knows a record by its name. Run
in order, the lines of every record recompute the whole step from the initial weights and the input ids: the
values live in a dict `v` (record name -> array) and the trace file's values in `T`. The notebook
(`handstep notebook`) is these lines; each step of the site shows its own line beside its formula.

Every line does the arithmetic in the engine's own order (engine/layers.py, engine/optim.py): the same matrix
products and the same sums, so on the machine that made the trace the results are equal to the last bit. That
matters: a gradient that is mathematically zero is rounding noise (~1e-18), and Adam divides it by its own size
(plus ε), which turns another order of the same sums into a different update of ~1e-11.
"""

from __future__ import annotations

import json
import math
from typing import Any

LOADED = ("param", "input")  # values the notebook reads from the trace file: the initial weights and the batch
NOT_RECOMPUTED = ("train",)  # phases not recomputed: the training run's summaries (many steps, not one)


class NumpyStepError(Exception):
    """A record whose op kind has no NumPy line here (add it to `numpy_lines`)."""


def q(name: str) -> str:
    """A record name as a Python string literal."""
    return json.dumps(name)


def ref(name: str, var: str = "v") -> str:
    """`v["name"]`."""
    return f"{var}[{q(name)}]"


def computed(record: Any) -> bool:
    """Whether the notebook computes the record (rather than reading it from the trace file or skipping it)."""
    return record.op not in LOADED and record.phase not in NOT_RECOMPUTED


def numpy_lines(trace: Any, name: str) -> list[str]:
    """The NumPy line(s) that compute record `name` from its inputs; the last one assigns `v[name]`.

    Loaded records (weights, input ids, targets) read the trace file: `v["wte"] = T["wte"]`."""
    rec = trace.record(name)
    shapes = {n: tuple(trace.record(n).value.shape) for n in rec.inputs}
    return record_lines(rec, shapes)


def record_lines(rec: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """`numpy_lines` for one record, given the shapes of its inputs."""
    out = ref(rec.name)
    x = [ref(n) for n in rec.inputs]
    meta = rec.meta
    shape = tuple(rec.value.shape)
    op = rec.op
    if op in LOADED:
        return [f"{out} = T[{q(rec.name)}]"]
    if op == "embedding":
        if len(x) == 2:  # the token table, row by input id
            return [f"{out} = {x[0]}[{x[1]}]"]
        return [f"{out} = {x[0]}[:{shape[0]}]"]  # the position table: one row per position
    if op == "add":
        return [f"{out} = {x[0]} + {x[1]}"]
    if op == "mean":
        return [f"{out} = {x[0]}.mean(axis=-1)"]
    if op == "var":
        return [f"{out} = (({x[0]} - {x[1]}[..., None]) ** 2).mean(axis=-1)"]
    if op == "normalize":
        return [f"{out} = ({x[0]} - {x[1]}[..., None]) / np.sqrt({x[2]}[..., None] + {meta['eps']!r})"]
    if op == "affine":
        return [f"{out} = {x[0]} * {x[1]} + {x[2]}"]
    if op == "linear":
        return [f"{out} = {contraction(meta['einsum'], x[:2], [shapes[n] for n in rec.inputs[:2]], shape)} + {x[2]}"]
    if op in ("matmul", "mul", "sum"):
        return [f"{out} = {contraction(meta['einsum'], x, [shapes[n] for n in rec.inputs], shape)}"]
    if op == "split_heads":
        B, H, T, D = shape
        src = x[0]
        if meta.get("part") is not None:  # Q, K or V: its third of the packed columns
            lo = int(meta["part"]) * H * D
            src = f"{src}[..., {lo}:{lo + H * D}]"
        return [f"{out} = {src}.reshape({B}, {T}, {H}, {D}).transpose(0, 2, 1, 3)"]
    if op == "merge_heads":
        return [f"{out} = {x[0]}.transpose(0, 2, 1, 3).reshape({', '.join(map(str, shape))})"]
    if op == "merge_qkv":
        B, T, N = shape
        names = ", ".join(q(n) for n in rec.inputs)
        return [f"{out} = np.concatenate([v[n].transpose(0, 2, 1, 3).reshape({B}, {T}, {N // 3}) "
                f"for n in ({names})], axis=-1)"]
    if op == "scale":
        return [f"{out} = {x[0]} * {_factor(meta['factor'])}"]
    if op == "causal_mask":
        return [f"{out} = np.where({_tril(shape[-1])}, {x[0]}, -np.inf)"]
    if op == "softmax":
        return [f"e = np.exp({x[0]} - {x[0]}.max(axis=-1, keepdims=True))",
                f"{out} = e / e.sum(axis=-1, keepdims=True)"]
    if op == "gelu":
        k, c = _gelu_k(meta["k"]), repr(meta["c"])
        return [f"u = {x[0]}", f"{out} = 0.5 * u * (1.0 + np.tanh({k} * (u + {c} * (u * u * u))))"]
    if op == "gather":
        return [f"y = {x[1]}",
                f"{out} = np.where(y >= 0, np.take_along_axis({x[0]}, np.where(y >= 0, y, 0)[..., None], "
                "axis=-1)[..., 0], 0.0)"]
    if op == "cross_entropy":
        return [f"z, y = {x[0]}, {x[1]}",
                "m = z.max(axis=-1)",
                "lse = m + np.log(np.exp(z - m[..., None]).sum(axis=-1))",
                f"{out} = np.where(y >= 0, lse - np.take_along_axis(z, np.where(y >= 0, y, 0)[..., None], "
                "axis=-1)[..., 0], 0.0)"]
    if op == "loss_mean":
        return [f"{out} = {x[0]}.sum() / ({x[1]} >= 0).sum()"]
    if op == "cross_entropy_backward":
        return [f"y = {x[1]}",
                f"onehot = np.eye({shape[-1]})[np.where(y >= 0, y, 0)]",
                f"{out} = np.where((y >= 0)[..., None], ({x[0]} - onehot) / (y >= 0).sum(), 0.0)"]
    if op == "layernorm_backward":
        return [f"g, xh = {x[0]}, {x[1]}",
                f"rstd = 1.0 / np.sqrt({x[2]}[..., None] + {meta['eps']!r})",
                f"{out} = rstd * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))"]
    if op == "gelu_backward":
        k, c = _gelu_k(meta["k"]), repr(meta["c"])
        return [f"g, u = {x[0]}, {x[1]}",
                f"th = np.tanh({k} * (u + {c} * (u * u * u)))",
                f"{out} = g * (0.5 * (1.0 + th) + 0.5 * u * ((1.0 - th * th) * {k} * (1.0 + 3.0 * {c} * (u * u))))"]
    if op == "softmax_backward":
        return [f"g, y = {x[0]}, {x[1]}", f"{out} = y * (g - (g * y).sum(axis=-1, keepdims=True))"]
    if op == "mask_backward":
        return [f"{out} = np.where({_tril(shape[-1])}, {x[0]}, 0.0)"]
    if op == "embedding_backward":
        if len(x) == 2:  # scatter-add: a word used at several positions gets the sum of their rows
            return [f"{out} = np.zeros({shape})", f"np.add.at({out}, {x[1]}, {x[0]})"]
        T = shapes[rec.inputs[0]][1]
        return [f"{out} = np.zeros({shape})", f"{out}[:{T}] = {x[0]}.sum(axis=0)"]
    if op == "l2_grad":
        return [f"{out} = {x[0]} + {meta['wd']!r} * {x[1]}"]
    if op in ("adam_m", "adam_v", "sgd_buf") and meta.get("step", 1) != 1:
        raise NumpyStepError(f"{rec.name}: only the first step (where the moments start at zero) is recorded")
    if op == "adam_m":
        return [f"{out} = (1 - {meta['beta']!r}) * {x[0]}"]
    if op == "adam_v":
        return [f"{out} = (1 - {meta['beta']!r}) * {x[0]} * {x[0]}"]
    if op in ("adam_m_hat", "adam_v_hat"):
        return [f"{out} = {x[0]} / (1 - {meta['beta']!r} ** {meta['step']})"]
    if op in ("adamw_update", "adam_update"):
        lr, wd, eps = repr(meta["lr"]), meta.get("wd", 0.0), repr(meta["eps"])
        decayed = f"{x[0]} * (1 - {lr} * {wd!r})" if op == "adamw_update" and wd else x[0]
        return [f"{out} = {decayed} - {lr} * {x[1]} / (np.sqrt({x[2]}) + {eps})"]
    if op == "sgd_buf":
        return [f"{out} = {x[0]}.copy()  # step 1: the momentum buffer starts at the gradient"]
    if op == "sgd_update":
        return [f"{out} = {x[0]} - {meta['lr']!r} * {x[1]}"]
    if op == "forward":  # the forward pass again, on the updated weights (see `forward_function`)
        return [f"{out} = forward(updated_weights(v))[{q(rec.name.split('.', 1)[-1])}]"]
    raise NumpyStepError(f"no NumPy line for op {op!r} (record {rec.name}): add it to engine/numpy_steps.py")


def contraction(spec: str, operands: list[str], shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> str:
    """A NumPy expression for `np.einsum(spec, *operands)`, written as the engine computes it: a batched matrix
    product, rows (batch × tokens) times a matrix, a product summed over axes, or an elementwise product."""
    lhs, out = spec.split("->")
    specs = lhs.split(",")
    if len(specs) == 1:
        (a,) = specs
        summed = tuple(i for i, ch in enumerate(a) if ch not in out)
        if [ch for ch in a if ch in out] == list(out) and summed:
            return f"{operands[0]}.sum(axis={_axes(summed)})"
    elif len(specs) == 2:
        a, b = specs
        A, B = operands
        summed = [ch for ch in a + b if ch not in out]
        if not summed:  # an elementwise product, the second broadcast over the leading axes of the first
            if a == out and out.endswith(b):
                return f"{A} * {B}"
        elif a == b and set(out) <= set(a):  # a product summed over the axes not kept
            axes = tuple(i for i, ch in enumerate(a) if ch not in out)
            if [ch for ch in a if ch in out] == list(out):
                return f"({A} * {B}).sum(axis={_axes(axes)})"
        batch = out[:-2]
        if len(a) == len(b) == len(out) >= 3 and a[:-2] == b[:-2] == batch:  # batched matrix product
            m, n = out[-2:]
            k = [ch for ch in a[-2:] if ch not in out]
            if len(k) == 1 and sorted(a[-2:]) == sorted(m + k[0]) and sorted(b[-2:]) == sorted(k[0] + n):
                left = A if a[-2:] == m + k[0] else f"{A}.swapaxes(-1, -2)"
                right = B if b[-2:] == k[0] + n else f"{B}.swapaxes(-1, -2)"
                return f"{left} @ {right}"
        lead = a[:-1]
        if len(lead) >= 1 and len(b) == 2 and out == lead + out[-1:] and len(out) == len(a):
            # rows (every leading axis at once) times a matrix, as one product
            i, o = a[-1], out[-1]
            if sorted(b) == sorted(i + o) and i != o:
                right = B if b == i + o else f"{B}.T"
                dims = ", ".join(map(str, out_shape))
                return f"({A}.reshape(-1, {shapes[0][-1]}) @ {right}).reshape({dims})"
        if len(out) == 2 and a[:-1] == b[:-1] and len(a) >= 2 and out == a[-1] + b[-1]:
            # rows of one times rows of the other, summed over every leading axis
            return f"{A}.reshape(-1, {shapes[0][-1]}).T @ {B}.reshape(-1, {shapes[1][-1]})"
    return f"np.einsum({q(spec)}, {', '.join(operands)})"


def _axes(axes: tuple[int, ...]) -> str:
    return str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"


def _tril(n: int) -> str:
    return f"np.tril(np.ones(({n}, {n}), dtype=bool))"


def _factor(factor: float) -> str:
    """A scale as `(1 / np.sqrt(d))` when it is exactly that, else its value."""
    d = round(1.0 / (factor * factor))
    return f"(1 / np.sqrt({d}))" if d >= 1 and 1.0 / math.sqrt(d) == factor else repr(factor)


def _gelu_k(k: float) -> str:
    return "np.sqrt(2 / np.pi)" if k == math.sqrt(2.0 / math.pi) else repr(k)


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
