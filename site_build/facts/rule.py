"""The optimizer's rule in words: the sentences of the optimizer page that differ with the optimizer, its weight
decay and the model (what its moments average, how to read its update, which tensors decay, how large its steps
are), each the one this run needs."""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from site_build import format as fmt
from site_build.facts import llama_bwd, opt
from site_build.format import fixed
from site_build.macros.optimizer import TORCH_NAMES


def _torch_name(trace: Any) -> str:
    return TORCH_NAMES.get(opt.name(trace), opt.name(trace))


def averaged(trace: Any) -> Markup:
    """What Adam's moments average: the gradient plus the L2 term (Adam), or the loss gradient itself (AdamW)."""
    if opt.name(trace) == "adam":
        return Markup("gradient $g_k$. For Adam, $g_k$ is not quite the raw gradient: it is the gradient plus\nthe L2 "
                      "weight-decay term, as the section on weight decay shows.")
    return Markup("gradient $g_k = \\nabla_\\theta\\mathcal L$ at step $k$.")


def reading(trace: Any) -> Markup:
    """How to read the Adam-like update: with AdamW's decay factor first, or the step alone (Adam), and what ε is
    for."""
    eps = f"$\\epsilon = {fmt.tex_number(opt.eps(trace))}$ only keeps the division safe when $\\hat v$ is zero."
    if opt.name(trace) == "adamw":
        return Markup("Read it from left to right: shrink the old weight by the factor $1-\\eta\\lambda$ (only for "
                      "tensors that decay;\nfor the others $\\lambda = 0$ here), then subtract the step against the "
                      "corrected first moment, measured in units\nof the corrected gradient size. " + eps)
    return Markup("Step against the corrected first moment, measured in units of the corrected gradient size.\n" + eps)


def decays_when(trace: Any) -> Markup:
    """Which tensors `optimizer.decay` makes decay: every one (`all`), or those with two or more axes, and why the
    1-D ones are spared."""
    if opt.decay(trace) == "all":
        return Markup(f"every\ntensor decays (what plain `torch.optim.{_torch_name(trace)}(model.parameters())` does).")
    spared = (", kept here for the Llama block: shrinking a gain\ntowards zero" if llama_bwd.llama(trace) else
              ": shrinking a bias or a LayerNorm gain\ntowards zero")
    return Markup("a tensor decays\nwhen it has two or more axes (a weight matrix or an embedding table), never "
                  f"when it has one ({llama_bwd.one_axis(trace)}).\nThis is GPT-2's and nanoGPT's convention{spared} "
                  "does not make the model simpler, it only fights the normalisation.")


def decay_moot(trace: Any) -> str:
    """That the choice of decaying tensors changes nothing, when the weight decay is 0 ("" otherwise)."""
    return "With `weight_decay: 0`, the choice makes no difference in this build." if opt.wd(trace) == 0 else ""


def zero_rows(trace: Any) -> str:
    """Which rows of the embedding tables get exactly zero gradient, and why: positions the text never reaches,
    words no text reads (with an untied output layer); "" when none does."""
    out = []
    if opt.zero_in_wpe(trace):
        positions = fmt.counted(int(np.asarray(trace["input_ids"]).shape[1]), "position")
        out.append("The zero gradients in `wpe` are the rows for positions the text never reaches: there are\n"
                   f"{trace.config['model']['n_positions']} rows but only {positions} in use.")
    if llama_bwd.zero_in_wte(trace):
        n = llama_bwd.unused_count(trace)
        out.append(f"Among the zero gradients in `wte` are the rows of the {'word' if n == 1 else 'words'} no text "
                   "reads: the output\nlayer is a matrix of its own, so nothing else reaches "
                   f"{'it' if n == 1 else 'them'}.")
    return "\n".join(out)


def spread(trace: Any) -> Markup:
    """How far apart the tensors' mean gradients are (steepest against flattest), and what plain gradient descent
    and Adam's first step make of that."""
    s, f = opt.steepest(trace), opt.flattest(trace)
    lead = f"The gradients in this model span a wide range: the mean $|g|$ of `{s.name}` is {fixed(s.mean_grad, 4)}"
    if f.mean_grad > 0:
        times = fixed(opt.gradient_spread(trace), 0)
        return Markup(f"{lead}, that of\n`{f.name}` is {fixed(f.mean_grad, 6)}, {times} times smaller. Plain gradient "
                      f"descent with one learning rate would move the weights of `{f.name}`\nabout {times} times less, "
                      f"on average, than those of `{s.name}`. Adam's first step\ntreats them all alike.")
    return Markup(f"{lead}, while\nevery gradient of `{f.name}` is exactly zero. Plain gradient descent with one "
                  "learning rate moves weights in\nproportion to their gradients; Adam's first step moves every weight "
                  "with a nonzero gradient by about $\\eta$.")


def sgd_sizes(trace: Any) -> Markup:
    """How large SGD's steps are: as spread as the gradients (largest change, smallest mean), and how few weights
    moved by about η."""
    own = "buffer" if opt.has_buffer(trace) else "gradient"
    near = f"Only {opt.near(trace)} of the " if opt.near(trace) else "None of the "
    return Markup(
        f"SGD keeps the gradient's size: the step of every weight is $\\eta$ times its own {own}.\nThe largest single "
        f"change in this step is {fixed(opt.largest_change(trace), 6)} and the smallest per-tensor mean change is\n"
        f"{fixed(opt.smallest_mean_change(trace), 6)}: the steps differ as much as the gradients do, which is exactly "
        f"what Adam's\ndivision by $\\sqrt{{\\hat v}}$ removes. {near}{opt.weights(trace)}\nweights moved by an amount "
        "within 1% of $\\eta$.")
