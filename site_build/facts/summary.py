"""Did the step help? (the summary page): the loss before and after the step, the change at every position, the
first-order prediction of that change, and where the gradient was largest."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from markupsafe import Markup, escape

from site_build import format as fmt
from site_build.facts import opt, way
from site_build.figures import CHUNK, Split, abs_stats, joined, nonzero, per_run
from site_build.macros.optimizer import parameters


def before(trace: Any) -> float:
    """The loss before the step."""
    return float(trace["loss"])


def after(trace: Any) -> float:
    """The loss on the updated weights."""
    return float(trace["after.loss"])


def fall(trace: Any) -> float:
    """How much the step lowered the loss (negative if it raised it)."""
    return before(trace) - after(trace)


def fall_percent(trace: Any) -> float:
    """The same, in percent of the loss before the step."""
    return 100 * fall(trace) / before(trace)


def change(trace: Any) -> float:
    """The change of the loss, after minus before."""
    return after(trace) - before(trace)


def tied(trace: Any) -> bool:
    """The output layer is the token table, transposed (weight tying)."""
    return bool(trace.config["model"].get("tie_embeddings", True))


# -- one row worked in full -------------------------------------------------------------------------------------------
def row(trace: Any) -> int:
    """The position of text 1 worked in full: the second, or the first if the text has only one target."""
    return min(1, int((np.asarray(trace["targets"][0]) >= 0).sum()) - 1)


def row_target(trace: Any) -> int:
    """The target (vocabulary index) at that position."""
    return int(trace["targets"][0][row(trace)])


def row_word(trace: Any) -> str:
    """The target word at that position."""
    return trace.labels["targets"][0][row(trace)]


# -- position by position ---------------------------------------------------------------------------------------------
class Gain(NamedTuple):
    """How the probability of the right word changed at one position: text `b`, position `t`, its target word."""

    b: int
    t: int
    target: str
    change: float  # after − before


def positions(trace: Any) -> list[Gain]:
    """Every target of the batch, text by text, with the change of its probability over the step."""
    valid = np.asarray(trace["targets"]) >= 0
    p0, p1 = np.asarray(trace["loss.target_prob"]), np.asarray(trace["after.target_prob"])
    return [Gain(b, t, trace.labels["targets"][b][t], float(p1[b][t] - p0[b][t]))
            for b in range(valid.shape[0]) for t in range(valid.shape[1]) if valid[b][t]]


def scored(trace: Any) -> int:
    """How many positions have a target."""
    return len(positions(trace))


def up(trace: Any) -> int:
    """At how many positions the right word became more likely."""
    return sum(1 for g in positions(trace) if g.change > 0)


def down(trace: Any) -> int:
    """At how many positions the right word became less likely."""
    return sum(1 for g in positions(trace) if g.change < 0)


def kept(trace: Any) -> int:
    """At how many positions the right word kept its probability."""
    return scored(trace) - up(trace) - down(trace)


def changes(trace: Any) -> Split:
    """How the right word's probability changed over the positions, as a sentence that counts every position once:
    'The right word became more likely at 5 of the 8 positions, less likely at 2 and kept its probability at 1.'"""
    n, more, less, same = scored(trace), up(trace), down(trace), kept(trace)
    every = "the one position" if n == 1 else f"every one of the {n} positions"
    for count, words in ((more, "became more likely"), (less, "became less likely"), (same, "kept its probability")):
        if count == n:
            return Split(f"The right word {words} at {every}.", n, (n,))
    parts = nonzero((more, f"became more likely at {more}"),
                    (less, f"{'' if more else 'became '}less likely at {less}"),
                    (same, f"kept its probability at {same}"))
    words = [w + (f" of the {n} positions" if i == 0 else "") for i, (_, w) in enumerate(parts)]
    return Split(f"The right word {joined(words)}.", n, tuple(c for c, _ in parts))


def best(trace: Any) -> Gain:
    """The position of the largest gain (the first, on a tie)."""
    out, top = positions(trace)[0], -1.0
    for g in positions(trace):
        if g.change > top:
            out, top = g, g.change
    return out


def worst(trace: Any) -> Gain:
    """The position of the largest loss of probability (the first, on a tie)."""
    out, low = positions(trace)[0], 1.0
    for g in positions(trace):
        if g.change < low:
            out, low = g, g.change
    return out


# -- the first-order prediction ---------------------------------------------------------------------------------------
def predicted(trace: Any) -> float:
    """The change of the loss the gradient predicts for this step: Σ g·Δθ over every weight."""
    return _first_order_terms(trace)[0]


def _first_order_terms(trace: Any) -> tuple[float, float, float]:
    """Σ g·Δθ, and its positive and its negative terms added up apart, a slice at a time (a GPT-2 table is 38
    million of them), once per run."""

    def make() -> tuple[float, float, float]:
        total, up, down = 0.0, 0.0, 0.0
        for name in parameters(trace):
            names = ("grad." + name, "updated." + name, name)
            g, new, old = (np.asarray(trace[n]).reshape(-1) for n in names)
            tensor = 0.0
            for k in range(0, g.size, CHUNK):
                terms = g[k:k + CHUNK] * (new[k:k + CHUNK] - old[k:k + CHUNK])
                tensor += terms.sum()
                up += float(terms[terms > 0].sum())
                down += float(terms[terms < 0].sum())
            total += tensor
            trace.release(names)  # a big run's pages, read once
        return float(total), up, down

    return per_run(trace, ("first order",), make)


def uphill(trace: Any) -> float:
    """The part of that prediction from the weights that moved with their gradient: the terms g·Δθ > 0."""
    return _first_order_terms(trace)[1]


def downhill(trace: Any) -> float:
    """The part from the weights that moved against it: the terms g·Δθ < 0."""
    return _first_order_terms(trace)[2]


def _amount(x: float) -> str:
    return fmt.fixed(x) if abs(x) >= 1e-3 else fmt.sci(x)


def first_order(trace: Any) -> str:
    """What each term g_i Δθ_i of the first-order prediction is for this optimizer, in a sentence or two, true of
    every weight (the weights that moved with their gradient counted)."""
    o = trace.config["optimizer"]
    against, n = "$-\\eta\\,|g_i|$", way.along(trace)
    if o["name"] == "sgd":
        if o["weight_decay"] == 0:
            return ("For SGD without weight decay the step is $-\\eta g_i$ (at step 1 the momentum buffer is the "
                    "gradient itself), so each term is $-\\eta g_i^2$, never positive.")
        return ("For SGD the step is $-\\eta(g_i + \\lambda\\theta_i)$ (at step 1 the momentum buffer is that "
                "sum itself), so each term is $-\\eta g_i^2$ plus a decay term $-\\eta\\lambda g_i\\theta_i$ of "
                "either sign" + (f"; for the {n} weights whose decay term outweighs the first, the term is an "
                                 f"increase ({_amount(uphill(trace))} in all)." if n else "."))
    l2 = o["name"] == "adam" and o["weight_decay"] > 0 and bool(opt.decaying(trace))
    sign = "\\operatorname{sign}(g_i + \\lambda\\theta_i)" if l2 else "\\operatorname{sign}(g_i)"
    step = f"At step 1 {'Adam' if o['name'] == 'adam' else 'AdamW'} moves each weight by about $-\\eta\\,{sign}$"
    if l2:
        step += ", the sign of its gradient plus the L2 term"
    elif o["name"] == "adamw" and o["weight_decay"] > 0:
        step += " (plus its small decay)"
    if not n:
        return f"{step}, so each term is about {against}: every weight with a nonzero gradient contributes a decrease."
    why = "the L2 term flips that sign" if l2 else "the decay outweighs the step"
    return (f"{step}, so each term is about {against}, a decrease, except for the {n} "
            f"{'weight' if n == 1 else 'weights'} where {why} (the optimizer page counts them): there the term is "
            f"an increase. Those gradients are small: together they add {_amount(uphill(trace))}, against "
            f"{_amount(downhill(trace))} from every other weight.")


def verdict(trace: Any) -> Markup:
    """What the step did to the loss: lowered it (by how much, and in percent), raised it (an overshoot), or
    nothing."""
    if after(trace) < before(trace):
        return Markup(f"The step lowered it by {fmt.fixed(fall(trace))}, that is by "
                      f"{fmt.fixed(fall_percent(trace), 1)}%.")
    if after(trace) > before(trace):
        return Markup(f"The step *raised* it by {fmt.fixed(change(trace))}: the learning rate is too large for this "
                      "model, and the\nstep overshot.")
    return Markup("The step did not change it.")


def against_prediction(trace: Any) -> Markup:
    """The real change of the loss against the first-order prediction, and what the gap says of the loss's curve
    along the step ("" when either is 0)."""
    if change(trace) == 0 or predicted(trace) == 0:
        return Markup("")
    if ratio(trace) < 0:
        curve = "the loss moved the other way, so this step went past the region where the straight line is any guide"
    elif ratio(trace) < 1:
        curve = ("along this step the loss curves upwards (its second derivative is positive), so the straight line "
                 "is too optimistic")
    else:
        curve = "along this step the loss curves downwards, so it changed even more than the straight line predicts"
    return Markup(f"The real change is\n{fmt.fixed(change_percent(trace), 0)}% of the straight-line prediction: "
                  f"{curve}.")


def ratio(trace: Any) -> float:
    """The real change of the loss over the predicted one."""
    return change(trace) / predicted(trace)


def change_percent(trace: Any) -> float:
    """The real change of the loss in percent of the predicted one."""
    return 100 * change(trace) / predicted(trace)


# -- where the gradient was largest ----------------------------------------------------------------------------------
class Steepest(NamedTuple):
    """One parameter tensor's largest gradient entry: the tensor, the entry's index, its size, where it sits (as the
    table says it) and the tensor's mean |gradient|."""

    name: str
    at: tuple[int, ...]
    largest: float
    where: Markup
    mean: float


def _where(trace: Any, name: str, at: tuple[int, ...], word: str) -> Markup:
    """`vocab 3 ("cat"), d_model 5`: every axis with the entry's index; the word of a vocabulary index quoted."""
    parts = []
    for axis, i in zip(trace.record(name).axes, at):
        part = f"{escape(axis)} {i}"
        if axis == "vocab":
            part += f' ({word}"{fmt.html_words(trace.labels["vocab"][i])}")'
        parts.append(part)
    return Markup(", ".join(parts))


def gradients(trace: Any) -> list[Steepest]:
    """Every parameter tensor, ordered by its largest gradient entry, largest first."""
    rows = []
    for name in parameters(trace):
        g = abs_stats(trace, "grad." + name)
        at = tuple(int(i) for i in np.unravel_index(g.at, np.shape(trace["grad." + name])))
        rows.append(Steepest(name, at, g.largest, _where(trace, name, at, ""), g.mean))
    return sorted(rows, key=lambda r: r.largest, reverse=True)


def top(trace: Any) -> Steepest:
    """The tensor with the largest gradient entry of the whole model."""
    return gradients(trace)[0]


def top_where(trace: Any) -> Markup:
    """Where that entry sits, as the sentence says it: `vocab 3 (the word "cat"), d_model 5`."""
    t = top(trace)
    return _where(trace, t.name, t.at, "the word ")


def ordering(trace: Any) -> Markup:
    """What the ordering by largest gradient says: why the token table can lead it (tied to the output layer), and
    whether it is also the ordering of how far the tensors moved (SGD) or not (Adam's first step)."""
    out = ""
    if top(trace).name == "wte" and tied(trace):
        out = ("The token table gets gradient from two places, the output layer (every word, at every position) and "
               "the input\nlookup (the words of the text), which is why its entries can grow largest; the\n"
               "[embedding-gradient page](12-embedding-gradients.md) adds the two up.\n")
    if opt.adam_like(trace):
        out += ("None of this decided how far a weight moved at step 1, though: Adam's first step is about $\\eta$ "
                "for almost every weight\nwhatever its gradient, as [the optimizer page](13-optimizer.md) showed. The "
                "gradient's size starts to matter from\nstep 2 on, through the running averages.")
    elif opt.wd(trace) == 0:
        out += ("With SGD the step is proportional to the gradient, so this ordering is also the ordering of how far "
                "each tensor moved.")
    else:
        out += ("With SGD the step is proportional to the gradient plus the decay term $\\lambda\\theta$, so, "
                "where the decay is small,\nthis ordering is also the ordering of how far each tensor moved.")
    return Markup(out)
