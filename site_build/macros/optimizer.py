"""Macros for the optimizer pages: one card per parameter tensor, and the statistics of the whole update.

    {{ update_card("wte", "12-embedding-gradients.md", "the embedding-gradient page") }}
    {% set stats = optimizer_stats() %}   {{ stats.total }} weights, {{ stats.near }} moved by about lr, ...
    {{ optimizer_name() }}                AdamW, Adam or SGD, as torch.optim spells it

Which tensors decay is the engine's rule, read from each parameter record (`meta["decays"]`), never re-derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from site_build.format import fixed
from site_build.macros.numbers import matrix, shape
from site_build.macros.registry import MacroError, PageContext, macro

TORCH_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}

# The intermediates an update records, in the order the update computes them (those the optimizer makes).
STAGES = (
    ("opt.g.", "the gradient with the L2 weight-decay term added, $g = \\nabla\\theta + \\lambda\\theta$"),
    ("opt.buf.", "the momentum buffer $b$ (at step 1 it equals $g$)"),
    ("opt.m.", "first moment $m = (1-\\beta_1)\\,g$ at step 1"),
    ("opt.v.", "second moment $v = (1-\\beta_2)\\,g^2$ at step 1"),
    ("opt.m_hat.", "bias-corrected first moment $\\hat m = m/(1-\\beta_1)$"),
    ("opt.v_hat.", "bias-corrected second moment $\\hat v = v/(1-\\beta_2)$"),
    ("updated.", "after the step"),
)


@dataclass(frozen=True)
class TensorUpdate:
    """How one parameter tensor moved in the step."""

    name: str
    size: int
    decays: bool  # the engine's rule, from the record's meta
    max_change: float  # largest |θ' − θ|
    mean_change: float  # mean |θ' − θ|
    near: int  # elements whose |θ' − θ| is within 1% of lr
    max_grad: float  # largest |∂L/∂θ|
    mean_grad: float  # mean |∂L/∂θ|
    zero: int  # elements whose gradient (with the L2 term, where the optimizer adds one) is exactly 0
    tiny: int  # elements whose gradient is not 0 but below 100 ε


@dataclass
class OptimizerStats:
    """The whole update in numbers (`optimizer_stats()`); tensors in Hugging Face's order."""

    tensors: list[TensorUpdate]
    total: int = 0  # weights
    near: int = 0  # weights moved by an amount within 1% of lr
    zero: int = 0
    tiny: int = 0
    decaying: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)  # the tensors that do not decay
    zero_tensors: list[str] = field(default_factory=list)  # tensors with a zero gradient somewhere
    tiny_tensors: list[str] = field(default_factory=list)
    largest_decaying_weight: float = 0.0  # the largest |θ| of a decaying tensor
    largest_change: float = 0.0  # the largest |θ' − θ| of any weight
    smallest_mean_change: float = 0.0  # the smallest mean |θ' − θ| of a tensor
    steepest: TensorUpdate | None = None  # the tensor with the largest mean |gradient|
    flattest: TensorUpdate | None = None  # the tensor with the smallest mean |gradient|

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]


def parameters(trace: Any) -> list[str]:
    """The parameter tensors (their initial records), in Hugging Face's order."""
    return [names["initial"] for names in trace.index.values() if isinstance(names, dict)]


def tensor_update(trace: Any, name: str) -> TensorUpdate:
    """The figures of one parameter tensor."""
    opt = trace.config["optimizer"]
    lr, eps = opt["lr"], opt["eps"]
    change = np.abs(trace["updated." + name] - trace[name])
    grad = np.abs(trace["grad." + name])
    seen = np.abs(trace["opt.g." + name]) if "opt.g." + name in trace else grad  # what the optimizer averages
    return TensorUpdate(
        name=name,
        size=int(change.size),
        decays=bool(trace.record(name).meta["decays"]),
        max_change=float(change.max()),
        mean_change=float(change.mean()),
        near=int((np.abs(change - lr) <= lr / 100).sum()),
        max_grad=float(grad.max()),
        mean_grad=float(grad.mean()),
        zero=int((seen == 0).sum()),
        tiny=int(((seen > 0) * (seen < eps * 100)).sum()),
    )


@macro
def optimizer_stats(ctx: PageContext, match: str = "*") -> OptimizerStats:
    """The update in numbers, over every parameter tensor or those whose name matches `match` (`"*ln_*"`)."""
    if not isinstance(match, str):
        raise MacroError(f"bad argument match={match!r} for optimizer_stats(): give a pattern such as '*ln_*'")
    names = [n for n in parameters(ctx.trace) if fnmatchcase(n, match)]
    if not names:
        raise MacroError(f"optimizer_stats('{match}'): no parameter tensor matches")
    tensors = [tensor_update(ctx.trace, n) for n in names]
    stats = OptimizerStats(tensors)
    for t in tensors:
        stats.total += t.size
        stats.near += t.near
        (stats.decaying if t.decays else stats.plain).append(t.name)
        if t.zero:
            stats.zero += t.zero
            stats.zero_tensors.append(t.name)
        if t.tiny:
            stats.tiny += t.tiny
            stats.tiny_tensors.append(t.name)
    stats.largest_decaying_weight = max([float(np.abs(ctx.trace[n]).max()) for n in stats.decaying], default=0.0)
    stats.largest_change = max(t.max_change for t in tensors)
    stats.smallest_mean_change = min(t.mean_change for t in tensors)
    stats.steepest = max(tensors, key=lambda t: t.mean_grad)
    stats.flattest = min(tensors, key=lambda t: t.mean_grad)
    return stats


@macro
def optimizer_name(ctx: PageContext) -> str:
    """The configured optimizer as `torch.optim` spells it: AdamW, Adam or SGD."""
    name = ctx.trace.config["optimizer"]["name"]
    return TORCH_NAMES.get(name, name)


@macro
def update_card(ctx: PageContext, name: str, page: str, title: str) -> Markup:
    """One parameter tensor through the step: whether it decays, how far it moved, a link to the page that
    derives its gradient (`page`, shown as `title`), then its values before, every intermediate, and after."""
    rec = ctx.record(name)
    if rec.op != "param":
        raise MacroError(f"update_card needs a parameter tensor such as 'wte'; '{name}' is a {rec.op} record")
    for what, arg in (("page", page), ("title", title)):
        if not isinstance(arg, str) or not arg.strip():
            raise MacroError(f"bad argument {what}={arg!r} for update_card(): give text")
    opt = ctx.trace.config["optimizer"]
    t = tensor_update(ctx.trace, name)
    decay = "decays" if t.decays else "does not decay"
    out = [
        f"### `{escape(name)}`\n\n",
        f"{shape(ctx, name)}; {decay} ($\\lambda = {opt['weight_decay'] if t.decays else 0}$).\n",
        f"Over the whole tensor, {t.near} of {t.size} elements moved by an amount within 1% of\n",
        f"$\\eta = {opt['lr']}$; the largest change is {fixed(t.max_change, 6)}. Its gradient `grad.{escape(name)}`"
        " is derived on\n",
        f"[{escape(title)}]({escape(page)}).\n\n",
        "**Before** the step, the weights as initialised:\n\n",
        f"{matrix(ctx, name)}\n\n",
    ]
    for prefix, what in STAGES:
        if prefix + name in ctx.trace:
            label = "After" if prefix == "updated." else f"`{prefix[:-1]}`"
            out.append(f"**{label}**, {what}:\n\n{matrix(ctx, prefix + name)}\n\n")
    return Markup("".join(out))
