"""The optimizer: which one the run uses, its constants, which tensors decay, and the figures of its step (the
optimizer page, and the pages after it).

The step's figures are the optimizer macros' (`tensor_update`, one parameter tensor at a time), worked out once per
run and shared by the facts here and in the other optimizer topics."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from site_build.facts.run import llama
from site_build.figures import Split, abs_stats, nonzero
from site_build.format import fixed, general, tex_number
from site_build.macros.optimizer import TensorUpdate, parameters, update_of

WORKED = "wte"  # the tensor whose element the page works in full: the token embedding


# -- the configured optimizer -----------------------------------------------------------------------------------------
def _config(trace: Any) -> dict[str, Any]:
    return trace.config["optimizer"]


def name(trace: Any) -> str:
    """The optimizer as the config names it: `adamw`, `adam` or `sgd`."""
    return _config(trace)["name"]


def adam_like(trace: Any) -> bool:
    """The optimizer keeps Adam's running averages m and v (AdamW or Adam, not SGD)."""
    return name(trace) in ("adamw", "adam")


def lr(trace: Any) -> float:
    """The learning rate η."""
    return _config(trace)["lr"]


def wd(trace: Any) -> float:
    """The weight decay λ."""
    return _config(trace)["weight_decay"]


def eps(trace: Any) -> float:
    """Adam's ε."""
    return _config(trace)["eps"]


def momentum(trace: Any) -> float:
    """SGD's momentum ρ (0: none)."""
    return _config(trace)["momentum"]


def decay(trace: Any) -> str:
    """Which tensors decay, as the config says it: `matrices` or `all`."""
    return _config(trace)["decay"]


def constants(trace: Any) -> str:
    """The constants after η, in TeX: `, $\\beta_1 = 0.9$, ...` (Adam, AdamW) or `, momentum $\\rho = 0.9$` (SGD)."""
    o = _config(trace)
    if adam_like(trace):
        b1, b2 = (tex_number(b) for b in o["betas"])
        return f", $\\beta_1 = {b1}$, $\\beta_2 = {b2}$, $\\epsilon = {tex_number(o['eps'])}$"
    if o["name"] == "sgd":
        return f", momentum $\\rho = {tex_number(o['momentum'])}$"
    return ""


def first_correction(trace: Any) -> float:
    """1 − β₁: what bias correction divides m by at step 1."""
    return 1 - _config(trace)["betas"][0]


def second_correction(trace: Any) -> float:
    """1 − β₂: what bias correction divides v by at step 1."""
    return 1 - _config(trace)["betas"][1]


def memory1(trace: Any) -> float:
    """How many steps the first moment m remembers, about: 1/(1 − β₁), to one decimal."""
    return round(1 / (1 - _config(trace)["betas"][0]), 1)


def memory2(trace: Any) -> float:
    """How many steps the second moment v remembers, about: 1/(1 − β₂), to one decimal."""
    return round(1 / (1 - _config(trace)["betas"][1]), 1)


def uncorrected(trace: Any) -> float:
    """The first step without bias correction, in units of η: (1 − β₁)/√(1 − β₂), to two decimals."""
    b1, b2 = _config(trace)["betas"]
    return round((1 - b1) / (1 - b2) ** (1 / 2), 2)


def decay_rate(trace: Any) -> float:
    """ηλ: the fraction of itself a decaying weight loses to AdamW's decay in one step."""
    return lr(trace) * wd(trace)


def decay_factor(trace: Any) -> float:
    """1 − ηλ: what AdamW multiplies a decaying weight by before its step."""
    return 1 - lr(trace) * wd(trace)


def has_l2(trace: Any) -> bool:
    """The optimizer adds the L2 weight-decay term to the gradient (Adam and SGD, not AdamW)."""
    return "opt.g." + WORKED in trace


def has_buffer(trace: Any) -> bool:
    """The optimizer keeps a momentum buffer (SGD with momentum)."""
    return "opt.buf." + WORKED in trace


# -- which tensors decay ----------------------------------------------------------------------------------------------
def decaying(trace: Any) -> list[str]:
    """The parameter tensors that decay, in Hugging Face's order (the engine's rule, from each record)."""
    return [n for n in parameters(trace) if trace.record(n).meta["decays"]]


def plain(trace: Any) -> list[str]:
    """The parameter tensors that do not decay."""
    return [n for n in parameters(trace) if not trace.record(n).meta["decays"]]


def _code_list(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) if names else "none"


def decaying_list(trace: Any) -> str:
    """The tensors that decay, as the page lists them: code spans joined by commas, or `none`."""
    return _code_list(decaying(trace))


def plain_list(trace: Any) -> str:
    """The tensors that do not decay, as the page lists them."""
    return _code_list(plain(trace))


# -- the step, tensor by tensor ---------------------------------------------------------------------------------------
class Tensor(NamedTuple):
    """How one parameter tensor moved in the step (the macros' TensorUpdate), with its changes in units of η."""

    name: str
    size: int
    decays: bool
    near: int  # elements moved by an amount within 1% of η
    zero: int  # elements not `near` whose gradient (with the L2 term, where there is one) is exactly 0
    tiny: int  # elements not `near` whose gradient is not 0 but below 100 ε
    max_change: float  # largest |θ' − θ|
    mean_change: float  # mean |θ' − θ|
    max_grad: float  # largest |∂L/∂θ|
    mean_grad: float  # mean |∂L/∂θ|
    max_change_lr: float  # max_change / η
    mean_change_lr: float  # mean_change / η
    along: int  # elements that moved with their loss gradient (Δθ · ∂L/∂θ > 0)


def updates(trace: Any) -> list[TensorUpdate]:
    """Every parameter tensor's figures, worked out once per run (they read every weight)."""
    return [update_of(trace, n) for n in parameters(trace)]


def tensors(trace: Any) -> list[Tensor]:
    """Every parameter tensor's update, in Hugging Face's order."""
    rate = lr(trace)
    return [Tensor(u.name, u.size, u.decays, u.near, u.zero, u.tiny, u.max_change, u.mean_change, u.max_grad,
                   u.mean_grad, u.max_change / rate, u.mean_change / rate, u.along) for u in updates(trace)]


def tensor(trace: Any, name: str) -> Tensor:
    """One parameter tensor's update, by name."""
    return next(t for t in tensors(trace) if t.name == name)


def tensor_count(trace: Any) -> int:
    """How many parameter tensors the model has."""
    return len(parameters(trace))


def weights(trace: Any) -> int:
    """How many weights the model has, over every parameter tensor."""
    return sum(int(trace[n].size) for n in parameters(trace))


def near(trace: Any) -> int:
    """How many weights moved by an amount within 1% of η."""
    return sum(u.near for u in updates(trace))


def near_percent(trace: Any) -> float:
    """The share of the weights that moved by an amount within 1% of η, in percent."""
    return 100 * near(trace) / weights(trace)


def off(trace: Any) -> int:
    """How many weights did not move by an amount within 1% of η."""
    return weights(trace) - near(trace)


def _total(trace: Any, field: str, decaying_only: bool = False) -> int:
    return sum(getattr(u, field) for u in updates(trace) if u.decays or not decaying_only)


def zero(trace: Any) -> int:
    """How many weights did not move by about η and have a gradient (with the L2 term, where the optimizer adds one)
    of exactly 0."""
    return _total(trace, "zero")


def tiny(trace: Any) -> int:
    """How many weights did not move by about η and have a gradient that is not 0 but below 100 ε, like their loss
    gradient (rounding noise, mostly)."""
    return _total(trace, "tiny")


def cancel(trace: Any) -> int:
    """How many weights did not move by about η because the L2 term λθ nearly cancels a loss gradient of a fair size,
    leaving a gradient below 100 ε (Adam and SGD, which add λθ to the gradient)."""
    return _total(trace, "cancel")


def rest(trace: Any) -> int:
    """How many weights have a gradient of a fair size and still did not move by about η."""
    return off(trace) - zero(trace) - tiny(trace) - cancel(trace)


def _them(n: int) -> tuple[str, str, str]:
    """(has/have, it/they, does/do) for a count."""
    return ("has", "it", "does") if n == 1 else ("have", "they", "do")


def near_split(trace: Any) -> Split:
    """The weights, by whether they moved by about η: 'of the 6864 weights, **6830** (99.5%) moved by an amount
    within 1% of $\\eta$ (with AdamW's decay, how much it adds), and the other 34 did not'."""
    total, n = weights(trace), near(trace)
    text = (f"of the {total} weights, **{n}** ({fixed(near_percent(trace), 1)}%) moved by an amount within 1% of "
            "$\\eta$")
    if name(trace) == "adamw" and decaying(trace) and wd(trace) > 0:
        text += (" (the decay adds $\\eta\\lambda|\\theta|$, which for the largest decaying weight, "
                 f"$|\\theta| = {fixed(largest_decaying_weight(trace))}$, is {general(decay_share(trace), 3)}% of "
                 "$\\eta$)")
    if off(trace):
        text += ", and the last one did not" if off(trace) == 1 else f", and the other {off(trace)} did not"
    return Split(text, total, tuple(x for x in (n, off(trace)) if x))


def off_split(trace: Any) -> Split:
    """Why the weights that did not move by about η did not, every one counted once (an Adam-like optimizer): a
    gradient of exactly 0, one below 100 ε (noise), one below 100 ε because λθ cancels the loss gradient, or one
    of some hundreds of ε."""
    seen = " (with the L2 term)" if has_l2(trace) else ""
    n_zero = zero(trace)
    has, it, does = _them(n_zero)
    moved_by_decay = name(trace) == "adamw" and wd(trace) > 0 and any(u.zero and u.decays for u in updates(trace))
    kept = sum(u.zero for u in updates(trace) if not u.decays)
    example = "" if llama(trace) else " (such as the key bias)"  # a Llama block has no biases
    if not moved_by_decay:
        then = f"{it} {does} not move at all"
    elif kept:
        then = "only the decoupled decay moves those that decay, and the others do not move at all"
    else:
        then = f"only the decoupled decay moves {'it' if n_zero == 1 else 'them'}"
    parts = nonzero(
        (n_zero, f"{n_zero} {has} a gradient{seen} of exactly zero ({zero_list(trace)}), so $\\hat m = 0$ and "
                 f"{then}"),
        (tiny(trace), f"{tiny(trace)} {_them(tiny(trace))[0]} a gradient that is not zero but smaller than "
                      f"$100\\,\\epsilon$ ({tiny_list(trace)}), often rounding noise of a gradient that is "
                      f"mathematically zero{example}, and there $\\epsilon$ wins and the step is tiny"),
        (cancel(trace), f"{cancel(trace)} {_them(cancel(trace))[0]} a loss gradient of a fair size that the L2 term "
                        "$\\lambda\\theta$ nearly cancels, leaving $g = \\nabla\\theta + \\lambda\\theta$ "
                        "below $100\\,\\epsilon$, so that $\\epsilon$ takes a share of the step"),
        (rest(trace), f"{rest(trace)} {_them(rest(trace))[0]} a gradient large enough but moved by more than 1% more "
                      "or less than $\\eta$: " + (
                          "the decay term $\\eta\\lambda\\theta$, or a gradient only some hundreds of "
                          "$\\epsilon$ in size, pushes them off" if name(trace) == "adamw" and wd(trace) > 0 else
                          "their gradient is only some hundreds of $\\epsilon$ in size, so $\\epsilon$ still "
                          "takes a visible share of the step")),
    )
    lead = "That one: " if off(trace) == 1 else f"Of those {off(trace)}, "
    return Split(lead + "; ".join(words for _, words in parts) + ".", off(trace),
                 tuple(n for n, _ in parts))


def zero_list(trace: Any) -> str:
    """The tensors with a weight that did not move by about η and has a gradient of exactly 0, as the page lists
    them."""
    return _code_list([u.name for u in updates(trace) if u.zero])


def tiny_list(trace: Any) -> str:
    """The tensors with a weight that did not move by about η and has a tiny gradient (`tiny`), as the page lists
    them."""
    return _code_list([u.name for u in updates(trace) if u.tiny])


def zero_in_wpe(trace: Any) -> bool:
    """Some gradient of the position table is exactly 0 (rows no text reaches)."""
    return any(u.zero for u in updates(trace) if u.name == "wpe")


def largest_decaying_weight(trace: Any) -> float:
    """The largest |θ| of any tensor that decays (0 if none does)."""
    return max((abs_stats(trace, n).largest for n in decaying(trace)), default=0.0)


def decay_share(trace: Any) -> float:
    """What decay adds to the step of the largest decaying weight, ηλ|θ|, in percent of η."""
    return 100 * wd(trace) * largest_decaying_weight(trace)


def steepest(trace: Any) -> Tensor:
    """The tensor with the largest mean |gradient|."""
    return max(tensors(trace), key=lambda t: t.mean_grad)


def flattest(trace: Any) -> Tensor:
    """The tensor with the smallest mean |gradient|."""
    return min(tensors(trace), key=lambda t: t.mean_grad)


def gradient_spread(trace: Any) -> float:
    """How many times the steepest tensor's mean |gradient| is the flattest's."""
    return steepest(trace).mean_grad / flattest(trace).mean_grad


def largest_change(trace: Any) -> float:
    """The largest |θ' − θ| of any weight."""
    return max(u.max_change for u in updates(trace))


def smallest_mean_change(trace: Any) -> float:
    """The smallest mean |θ' − θ| of a tensor."""
    return min(u.mean_change for u in updates(trace))


# -- the element worked in full ---------------------------------------------------------------------------------------
def _largest(trace: Any, name: str) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(abs_stats(trace, name).at, np.shape(trace[name])))


def worked_at(trace: Any) -> tuple[int, ...]:
    """The element of the token embedding the page works in full: the one of largest |gradient| (row, column)."""
    return _largest(trace, "grad." + WORKED)


def worked_word(trace: Any) -> str:
    """The word of that element's row."""
    return trace.labels["vocab"][worked_at(trace)[0]]


def worked_decays(trace: Any) -> bool:
    """The token embedding decays."""
    return bool(trace.record(WORKED).meta["decays"])


def worked_move(trace: Any) -> float:
    """How far that element moved, |θ' − θ|."""
    at = worked_at(trace)
    return float(abs(trace["updated." + WORKED][at] - trace[WORKED][at]))


def worked_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return worked_move(trace) / lr(trace)


def contrast(trace: Any) -> str | None:
    """The tensor the page contrasts with the worked one: the last that does not decay (None if every one does)."""
    names = plain(trace)
    return names[-1] if names else None


def contrast_at(trace: Any) -> int:
    """Its element of largest |gradient| (the tensor is 1-D)."""
    return _largest(trace, "grad." + contrast(trace))[0]
