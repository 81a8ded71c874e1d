"""Which way each weight moved in the step: against its loss gradient ∂L/∂θ, as gradient descent means to, or with it,
where weight decay outweighed the gradient (the optimizer page, the summary, the introduction and the updates page).

The sign of a weight's step is the sign of what the optimizer divides or scales: AdamW's Adam part is −η sign(∇θ) at
step 1, with the decoupled decay −ηλθ beside it; Adam and SGD add the L2 term first, g = ∇θ + λθ, and step against
g. Where λθ is larger than ∇θ and points the other way, g has the sign of λθ, and the weight moves towards zero,
with its loss gradient. The counts are the optimizer macros' (TensorUpdate), one pass over every weight per run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from site_build.facts import opt
from site_build.figures import CHUNK, Split, joined, nonzero
from site_build.format import fixed, general

SHOWN = 4  # tensors named one by one where the weights that moved with their gradient sit; the rest are summed


def _sum(trace: Any, field: str) -> int:
    return sum(getattr(u, field) for u in opt.updates(trace))


def against(trace: Any) -> int:
    """How many weights moved against their loss gradient (Δθ · ∂L/∂θ < 0)."""
    return _sum(trace, "against")


def along(trace: Any) -> int:
    """How many weights moved with their loss gradient (Δθ · ∂L/∂θ > 0): weight decay outweighed it."""
    return _sum(trace, "along")


def flat(trace: Any) -> int:
    """How many weights have a loss gradient of exactly 0 (no direction to go against)."""
    return _sum(trace, "flat")


def still(trace: Any) -> int:
    """How many weights have a loss gradient that is not 0 and yet did not change at all (a step below the last
    digit of the weight)."""
    return _sum(trace, "still")


def outweighed(trace: Any) -> int:
    """How many decaying weights have a loss gradient smaller in size than their decay term: |∂L/∂θ| < λ|θ|."""
    return _sum(trace, "outweighed")


def opposed(trace: Any) -> int:
    """How many of those have a decay term λθ that points against the loss gradient."""
    return _sum(trace, "opposed")


def decaying_weights(trace: Any) -> int:
    """How many weights the tensors that decay hold."""
    return sum(u.size for u in opt.updates(trace) if u.decays)


def largest_decay_term(trace: Any) -> float:
    """The largest decay term λ|θ| of any decaying weight."""
    return opt.wd(trace) * opt.largest_decaying_weight(trace)


def _their(n: int) -> str:
    return "its" if n == 1 else "their"


def directions(trace: Any) -> Split:
    """Every weight by the way it moved: against its loss gradient, with it, with a loss gradient of exactly 0, or
    not at all although its gradient is not 0."""
    n_flat, n_still = flat(trace), still(trace)
    parts = nonzero(
        (against(trace), f"**{against(trace)}** moved against {_their(against(trace))} loss gradient"),
        (along(trace), f"**{along(trace)}** with it"),
        (n_flat, f"{n_flat} {'has' if n_flat == 1 else 'have'} a loss gradient of exactly zero, so there is no "
                 "direction to go against"),
        (n_still, f"{n_still} did not change at all, {'its' if n_still == 1 else 'each'} step smaller than the "
                  "last digit of the weight"),
    )
    return Split(f"Of the {opt.weights(trace)} weights, {joined([w for _, w in parts])}.", opt.weights(trace),
                 tuple(n for n, _ in parts))


def why_against(trace: Any) -> str:
    """Why no weight moved with its loss gradient, for this optimizer (the page says it when `along` is 0)."""
    name, decay = opt.name(trace), opt.wd(trace) > 0 and bool(opt.decaying(trace))
    if name == "adamw":
        first = ("AdamW's first step is $-\\eta\\,\\operatorname{sign}(\\nabla\\theta)$, to within $\\epsilon$: "
                 "against the gradient")
        if not decay:
            return first + ", and there is no weight decay to add anything."
        return (f"{first}; the decoupled decay $-\\eta\\lambda\\theta$ beside it is at most "
                f"{general(opt.decay_share(trace), 3)}% of $\\eta$ here, too little to turn a step around.")
    step = ("Adam's first step is $-\\eta\\,\\operatorname{sign}(g)$, to within $\\epsilon$" if name == "adam" else
            "SGD's step is $-\\eta\\,g$" + (" (at step 1 the momentum buffer is $g$ itself)" if opt.momentum(trace)
                                            else ""))
    if not decay:
        return f"{step}, and with no weight decay $g$ is the loss gradient itself: every step goes against it."
    return (f"{step}, with $g = \\nabla\\theta + \\lambda\\theta$; nowhere in this step is the L2 term "
            "$\\lambda\\theta$ both larger than the loss gradient and pointing the other way, so $g$ keeps the "
            "sign of $\\nabla\\theta$ and every step goes against it.")


def where(trace: Any) -> Split:
    """Where the weights that moved with their gradient sit: the tensors that hold most of them, then the rest."""
    holders = sorted((u for u in opt.updates(trace) if u.along), key=lambda u: -u.along)
    named = holders if len(holders) <= SHOWN + 1 else holders[:SHOWN]
    parts = [(u.along, f"{u.along} in `{u.name}`") for u in named]
    others = holders[len(named):]
    if others:
        n = sum(u.along for u in others)
        parts.append((n, f"{n} in the {len(others)} other tensors"))
    lead = f"Those {along(trace)} sit in {len(holders)} tensors: " if len(holders) > 1 else \
        f"All {along(trace)} sit in one tensor: "
    return Split(f"{lead}{joined([w for _, w in parts])}.", along(trace), tuple(n for n, _ in parts))


def example(trace: Any) -> str:
    """The tensor whose weights most often moved with their gradient: the page works one of them in full."""
    return max(opt.updates(trace), key=lambda u: u.along).name


def example_at(trace: Any) -> tuple[int, ...]:
    """Its weight that moved with its gradient and is largest in size (the decay term is largest there); read a
    slice at a time."""
    name = example(trace)
    theta, new, g = (np.asarray(trace[p + name]).reshape(-1) for p in ("", "updated.", "grad."))
    best, at = -1.0, 0
    for k in range(0, theta.size, CHUNK):
        part = theta[k:k + CHUNK]
        size = np.where((new[k:k + CHUNK] - part) * g[k:k + CHUNK] > 0, np.abs(part), -1.0)
        i = int(size.argmax())
        if size[i] > best:
            best, at = float(size[i]), k + i
    return tuple(int(i) for i in np.unravel_index(at, np.shape(trace[name])))


def example_where(trace: Any) -> str:
    """Where that weight sits, for a sentence: 'row 8, column 16', or 'entry 5' in a bias or a gain."""
    at = example_at(trace)
    return f"row {at[0]}, column {at[1]}" if len(at) == 2 else f"entry {at[0]}"


def example_decay(trace: Any) -> float:
    """Its decay term λθ."""
    return opt.wd(trace) * float(np.asarray(trace[example(trace)])[example_at(trace)])


def example_move_lr(trace: Any) -> float:
    """How far it moved, in units of η (signed)."""
    name, at = example(trace), example_at(trace)
    return float(np.asarray(trace["updated." + name])[at] - np.asarray(trace[name])[at]) / opt.lr(trace)


def why_along(trace: Any) -> str:
    """Why some weights moved with their loss gradient, for this optimizer (the page says it when `along` is not 0),
    with this run's numbers."""
    name = opt.name(trace)
    share = (f"{outweighed(trace)} of the {decaying_weights(trace)} weights that decay have a loss gradient smaller "
             f"in size than their $\\lambda\\theta$ (which reaches {fixed(largest_decay_term(trace), 4)} here), and "
             f"for {opposed(trace)} of them $\\lambda\\theta$ also points the other way")
    if name == "adam":
        return (f"Why: Adam adds the L2 term to the gradient before anything else, $g = \\nabla\\theta + "
                f"\\lambda\\theta$, and its first step keeps only the sign of $g$. {share}: there $g$ takes the sign "
                "of $\\lambda\\theta$, and the weight moves by almost a full $\\eta$ towards zero, with its loss "
                "gradient. AdamW (`optimizer.name: adamw`) keeps the decay out of the moments: these weights would "
                "have moved by $\\eta$ against their loss gradient, and the decay would only have shrunk them by "
                f"$\\eta\\lambda|\\theta|$, at most {general(opt.decay_share(trace), 3)}% of $\\eta$ here. That is "
                "why AdamW exists: inside Adam the L2 term is divided by $\\sqrt{\\hat v}$ like the gradient, so "
                "where the gradient is small the decay acts at the full rate $\\eta$, and it can overrule what the "
                "loss asks for.")
    if name == "sgd":
        return (f"Why: SGD adds the L2 term to the gradient, $g = \\nabla\\theta + \\lambda\\theta$, and steps by "
                f"$-\\eta\\,g$. {share}: there $g$ has the sign of $\\lambda\\theta$, and the weight moves towards "
                "zero, with its loss gradient. SGD keeps the size of $g$, so these steps are small: $\\eta$ times "
                "the amount by which $\\lambda|\\theta|$ exceeds $|\\nabla\\theta|$.")
    return ("Why: AdamW's step is the Adam part, $\\eta$ against the sign of the gradient, plus the decoupled decay "
            "$-\\eta\\lambda\\theta$. Where the gradient is only a few $\\epsilon$ in size the Adam part shrinks to "
            "$\\eta\\,|g|/(|g|+\\epsilon)$, and the decay, up to $\\eta\\lambda|\\theta|$, can outweigh it: that is "
            "what happened to these weights.")


def unmoved(trace: Any) -> int:
    """How many weights did not change at all."""
    return _sum(trace, "unmoved")


def in_brief(trace: Any) -> Split:
    """The step in a few words, true of every weight of this run: 'each weight moves a small step against its
    gradient', with the exceptions counted."""
    total = opt.weights(trace)
    if against(trace) == total:
        return Split("each weight moves a small step against its gradient", total, (total,))
    n_along, n_flat, n_still = along(trace), flat(trace), still(trace)
    exceptions = nonzero(
        (n_along, f"{n_along} {'is' if n_along == 1 else 'are'} pulled the other way, towards zero, by weight decay"),
        (n_flat, f"{n_flat} {'has' if n_flat == 1 else 'have'} a gradient of exactly zero"),
        (n_still, f"{n_still} {'does' if n_still == 1 else 'do'} not change at all"))
    text = (f"the weights move a small step against their gradient ({against(trace)} of the {total} in this build; "
            f"{joined([w for _, w in exceptions])})")
    return Split(text, total, (against(trace), *(n for n, _ in exceptions)))


def changed(trace: Any) -> str:
    """What the step did to the weights, for a sentence: 'changed every weight of the model', or how many it
    changed."""
    total, n = opt.weights(trace), unmoved(trace)
    if n == 0:
        return "changed every weight of the model"
    rest = "one weight stays exactly where it was" if n == 1 else f"{n} stay exactly where they were"
    return f"changed {total - n} of the {total} weights of the model ({rest})"


def changed_numbers(trace: Any) -> str:
    """The new weights, for a sentence: 'its 6864 numbers slightly changed', or '6863 of its 6864 numbers slightly
    changed'."""
    total, n = opt.weights(trace), unmoved(trace)
    return f"its {total} numbers slightly changed" if n == 0 else f"{total - n} of its {total} numbers slightly changed"


def step_sign(trace: Any) -> str:
    """The sign of Δθ/η at step 1 of an Adam-like optimizer, for a parenthesis: 'the sign opposite to the
    gradient's', with the weights where it is not."""
    n = along(trace)
    if opt.has_l2(trace):
        text = ("the sign opposite to that of $g = \\nabla\\theta + \\lambda\\theta$, the gradient with the L2 "
                "term")
        if n:
            text += f"; for {n} {'weight' if n == 1 else 'weights'} that is the sign of the loss gradient itself"
        return text
    if n:
        return (f"the sign opposite to the gradient's, except for {n} {'weight' if n == 1 else 'weights'} whose "
                "decay outweighed a tiny gradient")
    return "the sign opposite to the gradient's"
