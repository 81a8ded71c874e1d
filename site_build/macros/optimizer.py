"""Macros for the optimizer pages: the statistics of the whole update, and every tensor's update element by element.

    {% set stats = optimizer_stats() %}   {{ stats.total }} weights, {{ stats.near }} moved by about lr, ...
    {{ optimizer_name() }}                AdamW, Adam or SGD, as torch.optim spells it
    {{ update_table() }}                  one row per tensor: its element of largest gradient through every stage
    {{ update_steps("wte", (3, 4)) }}     one element through every stage, as calc() blocks

Which tensors decay is the engine's rule, read from each parameter record (`meta["decays"]`), never re-derived.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from site_build.figures import abs_stats, per_run
from site_build.format import MINUS, format_number, full_repr
from site_build.macros.blocks import Table
from site_build.macros.registry import MacroError, PageContext, ahead, macro

TORCH_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}

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
    # the elements not `near`, by why: the gradient the optimizer sees (with the L2 term, where it adds one) is
    zero: int  # exactly 0
    tiny: int  # not 0 but below 100 ε, and so is the loss gradient ∂L/∂θ (rounding noise, mostly)
    cancel: int  # below 100 ε while ∂L/∂θ is not: the L2 term λθ nearly cancels the loss gradient
    # which way each element moved, against the sign of its loss gradient ∂L/∂θ or with it
    against: int  # Δθ · ∂L/∂θ < 0
    along: int  # Δθ · ∂L/∂θ > 0: with its loss gradient (the weight decay outweighed it)
    flat: int  # ∂L/∂θ exactly 0 (no direction to go against)
    still: int  # ∂L/∂θ not 0, yet Δθ exactly 0 (a step too small to change the number)
    unmoved: int  # Δθ exactly 0, whatever the gradient
    outweighed: int  # the decay term is larger in size than the loss gradient: λ|θ| > |∂L/∂θ| (λ = 0 if no decay)
    opposed: int  # ... and points the other way: λθ · ∂L/∂θ < 0


class OptimizerStats:
    """The whole update in numbers (`optimizer_stats()`); tensors in Hugging Face's order.

    `total`, `names` and the number of `tensors` come from the shapes; every other figure reads the tensors (a
    gigabyte at GPT-2 sizes) and is worked out on first use, so a page that only counts the weights costs nothing."""

    FIGURES = ("near", "zero", "tiny", "decaying", "plain", "zero_tensors", "tiny_tensors", "largest_decaying_weight",
               "largest_change", "smallest_mean_change", "steepest", "flattest")

    def __init__(self, names: list[str], sizes: list[int], tensors: Callable[[], list[TensorUpdate]],
                 largest_weight: Callable[[list[str]], float]) -> None:
        self.names = names
        self.total = sum(sizes)  # weights
        self.tensors = _Tensors(len(names), self._fill)
        self._tensors = tensors
        self._largest_weight = largest_weight

    def _fill(self) -> list[TensorUpdate]:
        if "near" in self.__dict__:
            return self.__dict__["_done"]
        tensors = self._tensors()
        near = zero = tiny = 0
        decaying, plain, zero_tensors, tiny_tensors = [], [], [], []
        for t in tensors:
            near += t.near
            (decaying if t.decays else plain).append(t.name)
            if t.zero:
                zero += t.zero
                zero_tensors.append(t.name)
            if t.tiny:
                tiny += t.tiny
                tiny_tensors.append(t.name)
        self.__dict__.update(
            _done=tensors,
            near=near,  # weights moved by an amount within 1% of lr
            zero=zero,  # weights not moved by about lr whose gradient is exactly 0
            tiny=tiny,  # weights not moved by about lr whose gradient is not 0 but below 100 ε (TensorUpdate.tiny)
            decaying=decaying,
            plain=plain,  # the tensors that do not decay
            zero_tensors=zero_tensors,  # tensors with a zero gradient somewhere
            tiny_tensors=tiny_tensors,
            largest_decaying_weight=self._largest_weight(decaying),  # the largest |θ| of a decaying tensor
            largest_change=max(t.max_change for t in tensors),  # the largest |θ' − θ| of any weight
            smallest_mean_change=min(t.mean_change for t in tensors),  # the smallest mean |θ' − θ| of a tensor
            steepest=max(tensors, key=lambda t: t.mean_grad),  # the tensor with the largest mean |gradient|
            flattest=min(tensors, key=lambda t: t.mean_grad),  # the tensor with the smallest mean |gradient|
        )
        return tensors

    def __getattr__(self, name: str) -> Any:  # only for what is not there yet: the figures
        if name in self.FIGURES:
            self._fill()
            return self.__dict__[name]
        raise AttributeError(name)


class _Tensors(Sequence):
    """OptimizerStats.tensors: its length is known at once, its items once the figures are worked out."""

    def __init__(self, size: int, fill: Callable[[], list[TensorUpdate]]) -> None:
        self.size = size
        self.fill = fill

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        return self.fill()[i]

    def __iter__(self) -> Iterator[TensorUpdate]:
        return iter(self.fill())


def parameters(trace: Any) -> list[str]:
    """The parameter tensors (their initial records), in Hugging Face's order."""
    return [names["initial"] for names in trace.index.values() if isinstance(names, dict)]


CHUNK = 1 << 20  # elements of a tensor looked at together (GPT-2's wte has 38.6M: no 300 MB temporaries)


def tensor_update(trace: Any, name: str) -> TensorUpdate:
    """The figures of one parameter tensor, a slice of CHUNK elements at a time."""
    opt = trace.config["optimizer"]
    lr, eps = opt["lr"], opt["eps"]
    decays = bool(trace.record(name).meta["decays"])
    wd = opt["weight_decay"] if decays else 0.0
    flat = [np.asarray(trace[n]).reshape(-1) for n in ("updated." + name, name, "grad." + name)]
    flat.append(np.asarray(trace["opt.g." + name]).reshape(-1) if "opt.g." + name in trace else flat[2])
    size = flat[0].size
    figures = []  # per slice: max and sum of |change|, near, max and sum of |grad|, zero, tiny, cancel, directions
    for k in range(0, max(size, 1), CHUNK):
        updated, initial, g, g_seen = (a[k:k + CHUNK] for a in flat)
        delta = updated - initial
        change = np.abs(delta)
        grad = np.abs(g)
        seen = np.abs(g_seen)  # what the optimizer averages
        near = np.abs(change - lr) <= lr / 100
        small = ~near & (seen > 0) & (seen < eps * 100)
        cancel = small & (grad >= eps * 100)
        way = delta * g
        outweighed = wd * np.abs(initial) > grad
        figures.append((change.max(initial=0.0), change.sum(), int(near.sum()), grad.max(initial=0.0), grad.sum(),
                        int((~near & (seen == 0)).sum()), int((small & ~cancel).sum()), int(cancel.sum()),
                        int((way < 0).sum()), int((way > 0).sum()), int((g == 0).sum()),
                        int(((g != 0) & (delta == 0)).sum()), int((delta == 0).sum()), int(outweighed.sum()),
                        int((outweighed & (initial * g < 0)).sum())))
    trace.release(["updated." + name, name, "grad." + name, "opt.g." + name])  # a big run's pages, read once
    cols = list(zip(*figures))
    return TensorUpdate(
        name=name,
        size=int(size),
        decays=decays,
        max_change=float(max(cols[0])),
        mean_change=float(sum(cols[1]) / size) if size else math.nan,
        near=sum(cols[2]),
        max_grad=float(max(cols[3])),
        mean_grad=float(sum(cols[4]) / size) if size else math.nan,
        zero=sum(cols[5]),
        tiny=sum(cols[6]),
        cancel=sum(cols[7]),
        against=sum(cols[8]),
        along=sum(cols[9]),
        flat=sum(cols[10]),
        still=sum(cols[11]),
        unmoved=sum(cols[12]),
        outweighed=sum(cols[13]),
        opposed=sum(cols[14]),
    )


@macro
def optimizer_stats(ctx: PageContext, match: str = "*") -> OptimizerStats:
    """The update in numbers, over every parameter tensor or those whose name matches `match` (`"*ln_*"`)."""
    if not isinstance(match, str):
        raise MacroError(f"bad argument match={match!r} for optimizer_stats(): give a pattern such as '*ln_*'")
    names = [n for n in parameters(ctx.trace) if fnmatchcase(n, match)]
    if not names:
        raise MacroError(f"optimizer_stats('{match}'): no parameter tensor matches")

    def tensors() -> list[TensorUpdate]:  # once per tensor and build: pages ask for all tensors, then for groups
        return [_update(ctx, n) for n in names]

    def largest_weight(decaying: list[str]) -> float:
        return max([ctx.figures(("largest", n), lambda n=n: abs_stats(ctx.trace, n).largest) for n in decaying],
                   default=0.0)

    sizes = [int(np.prod(ctx.trace.record(n).value.shape)) for n in names]
    return OptimizerStats(names, sizes, tensors, largest_weight)


def update_of(trace: Any, name: str) -> TensorUpdate:
    """tensor_update, worked out once per run (the pages' facts and these macros share it)."""
    return per_run(trace, ("update", name), lambda: tensor_update(trace, name))


def _update(ctx: PageContext, name: str) -> TensorUpdate:
    return ctx.figures(("update", name), lambda: update_of(ctx.trace, name))


@ahead
def _start_updates(ctx: PageContext) -> None:
    """A big run's update figures are worked out while the pages before the optimizer's render."""
    for name in parameters(ctx.trace):
        ctx.start(("update", name), lambda name=name: update_of(ctx.trace, name), lane="ahead")
        if ctx.trace.record(name).meta["decays"]:
            ctx.start(("largest", name), lambda name=name: abs_stats(ctx.trace, name).largest, lane="ahead")


@macro
def optimizer_name(ctx: PageContext) -> str:
    """The configured optimizer as `torch.optim` spells it: AdamW, Adam or SGD."""
    name = ctx.trace.config["optimizer"]["name"]
    return TORCH_NAMES.get(name, name)


# -- the update of every tensor, element by element ----------------------------------------------------------------
# The records one update reads and makes, in the order the optimizer computes them, with a column heading each.
STEPS = (("", r"\theta"), ("grad.", r"\nabla\theta"), ("opt.g.", r"g"), ("opt.buf.", r"\mathrm{buf}"),
         ("opt.m.", "m"), ("opt.v.", "v"), ("opt.m_hat.", r"\hat m"), ("opt.v_hat.", r"\hat v"),
         ("updated.", r"\theta'"))


def readable(x: Any) -> str:
    """A number a reader can take in at a glance, as HTML: `0.1234`, `−0.0012`, or `2.35×10⁻⁹` for tiny and huge
    values (the second moments are 10⁻⁹ where the gradients are 10⁻³; four decimals would show 0.0000)."""
    x = float(x)
    if x == 0 or not np.isfinite(x):
        return format_number(x)
    if 1e-3 <= abs(x) < 1e4:
        return format_number(x)
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.replace('-', MINUS)}×10<sup>{str(int(exponent)).replace('-', MINUS)}</sup>"


def _cell(ctx: PageContext, name: str, index: tuple[int, ...]) -> str:
    """One element as a clickable number in readable notation (the click panel shows its arithmetic)."""
    value = float(np.asarray(ctx.trace[name])[index])
    ctx.mark(name)
    at = ",".join(str(i) for i in index)
    return (f'<span class="value-highlight" data-record="{escape(name)}" data-at="{at}" title="{full_repr(value)}">'
            f"{readable(value)}</span>")


@macro
def update_table(ctx: PageContext, match: str = "*") -> Markup:
    """One row per parameter tensor (those matching `match`): its element of largest |gradient| through every
    stage of the update, each number clickable, tiny ones as m×10ᵉ; then Δθ/η."""
    names = [n for n in parameters(ctx.trace) if fnmatchcase(n, match)] if isinstance(match, str) else []
    if not names:
        raise MacroError(f"update_table({match!r}): no parameter tensor matches")
    stages = [(prefix, tex) for prefix, tex in STEPS if prefix == "" or prefix + names[0] in ctx.trace]
    lr = float(ctx.trace.config["optimizer"]["lr"])
    head = "".join(f'<th scope="col">{ctx.slot(tex, False)}</th>' for _, tex in stages)
    rows = []
    for name in names:
        g = np.abs(np.asarray(ctx.trace["grad." + name]))
        index = tuple(int(i) for i in np.unravel_index(int(g.argmax()), g.shape))
        delta = (float(np.asarray(ctx.trace["updated." + name])[index]) - float(np.asarray(ctx.trace[name])[index]))
        cells = "".join(f"<td>{_cell(ctx, prefix + name, index)}</td>" for prefix, _ in stages)
        decays = "decays" if ctx.trace.record(name).meta["decays"] else "no decay"
        where = ", ".join(map(str, index))
        rows.append(f'<tr><th scope="row"><code>{escape(name)}</code><br><span class="at">[{where}] · {decays}</span>'
                    f"</th>{cells}<td>{readable(delta / lr)}</td></tr>")
    ratio = ctx.slot(r"\Delta\theta/\eta", False)
    shown = tuple(prefix + name for name in names for prefix, _ in stages)  # the cells' records, row by row
    return ctx.place(Table(shown), f'<div class="table-wrap"><table class="update-table"><thead><tr><th scope="col">'
                     f'tensor, element</th>{head}<th scope="col">{ratio}</th></tr></thead><tbody>'
                     f'{"".join(rows)}</tbody></table></div>')


@macro
def update_steps(ctx: PageContext, name: str, index: Any) -> Markup:
    """One element of one parameter tensor through the whole update, as calc() blocks in the optimizer's order:
    `{{ update_steps("L0.mlp.c_fc.weight", (3, 7)) }}`."""
    from site_build.macros.numbers import calc

    rec = ctx.record(name)
    if rec.op != "param":
        raise MacroError(f"update_steps needs a parameter tensor such as 'wte'; '{name}' is a {rec.op} record")
    out = []
    for prefix, _ in STEPS[1:]:
        if prefix + name in ctx.trace:
            out.append(str(calc(ctx, prefix + name, index)))
    return Markup("\n\n".join(out))
