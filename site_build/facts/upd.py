"""Every tensor's update (the updates page): the four elements it works in full (a weight matrix, a bias, the key
bias, an unused row of the position table), the average gradient of the step, and the tensors grouped for their
pictures."""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from site_build.facts import opt
from site_build.format import counted, fixed, sci, tex_number
from site_build.macros.optimizer import parameters

# the weight matrix worked in full: block 0's feed-forward expansion (GPT-2) or gate projection (Llama)
MATRICES = {"gpt2": "L0.mlp.c_fc.weight", "llama": "L0.mlp.gate_proj.weight"}
BIAS = "L0.mlp.c_fc.bias"  # the bias worked in full: the expansion's
KEY_BIAS = "L0.attn.c_attn.bias"  # the packed query | key | value bias, whose key block gets no gradient


def largest_at(trace: Any, name: str) -> tuple[int, ...]:
    """The index of the largest |value| of record `name`."""
    values = np.abs(np.asarray(trace[name]))
    return tuple(int(i) for i in np.unravel_index(int(values.argmax()), values.shape))


def moved(trace: Any, name: str, at: Any) -> float:
    """How far element `at` of parameter `name` moved, θ' − θ."""
    return float(trace["updated." + name][at] - trace[name][at])


def decays(trace: Any, name: str) -> bool:
    """Whether parameter `name` decays."""
    return bool(trace.record(name).meta["decays"])


# -- a weight matrix --------------------------------------------------------------------------------------------------
def matrix(trace: Any) -> str:
    """The weight matrix the page works in full."""
    return MATRICES[trace.config["model"].get("arch", "gpt2")]


def matrix_at(trace: Any) -> tuple[int, ...]:
    """The element of that weight matrix with the largest gradient (row, column)."""
    return largest_at(trace, "grad." + matrix(trace))


def matrix_decays(trace: Any) -> bool:
    """That weight matrix decays."""
    return decays(trace, matrix(trace))


def matrix_move(trace: Any) -> float:
    """How far that element moved, θ' − θ."""
    return moved(trace, matrix(trace), matrix_at(trace))


def matrix_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return matrix_move(trace) / opt.lr(trace)


def matrix_size(trace: Any) -> float:
    """The size |θ| of that element before the step."""
    return float(abs(trace[matrix(trace)][matrix_at(trace)]))


def matrix_decay_term(trace: Any) -> float:
    """What AdamW's decay adds to its move: −ηλθ."""
    return float(-opt.lr(trace) * opt.wd(trace) * trace[matrix(trace)][matrix_at(trace)])


def matrix_off(trace: Any) -> float:
    """How far its |Δθ/η| is from 1."""
    return abs(abs(matrix_move_lr(trace)) - 1)


# -- a bias -----------------------------------------------------------------------------------------------------------
def bias_at(trace: Any) -> tuple[int, ...]:
    """The entry of the expansion's bias with the largest gradient."""
    return largest_at(trace, "grad." + BIAS)


def bias_decays(trace: Any) -> bool:
    """That bias decays (only under `decay: all`)."""
    return decays(trace, BIAS)


def bias_move(trace: Any) -> float:
    """How far that entry moved, θ' − θ."""
    return moved(trace, BIAS, bias_at(trace))


def bias_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return bias_move(trace) / opt.lr(trace)


# -- the key bias -----------------------------------------------------------------------------------------------------
def keys_from(trace: Any) -> int:
    """The first entry of the key block of the packed bias (d_model)."""
    return int(trace.config["model"]["d_model"])


def keys_to(trace: Any) -> int:
    """The last entry of the key block (2 d_model − 1)."""
    return 2 * keys_from(trace) - 1


def key_at(trace: Any) -> int:
    """The entry of the key block with the largest |gradient|."""
    C = keys_from(trace)
    return C + int(np.abs(np.asarray(trace["grad." + KEY_BIAS])[C:2 * C]).argmax())


def key_grad(trace: Any) -> float:
    """Its gradient: zero in exact arithmetic, rounding noise in floating point."""
    return float(trace["grad." + KEY_BIAS][key_at(trace)])


def key_seen(trace: Any) -> float:
    """The size of the gradient the optimizer sees there (with the L2 term, for Adam)."""
    name = ("opt.g." if opt.has_l2(trace) else "grad.") + KEY_BIAS
    return float(abs(trace[name][key_at(trace)]))


def key_rounding(trace: Any) -> str:
    """What floating point made of that gradient, for "in floating point it is ...": the rounding left over from the
    sum, or exactly 0."""
    n = key_terms(trace)
    if key_grad(trace) != 0:
        return f"{sci(key_grad(trace))}, the rounding left over when {n} numbers that should cancel are added up"
    if n == 1:
        return "exactly $0$ too: with one position there is nothing to add up"
    return f"exactly $0$ too: the {n} numbers that should cancel do so exactly here"


def key_sgd(trace: Any) -> str:
    """What SGD does with that gradient, in a sentence."""
    if key_grad(trace) != 0:
        return "SGD moves it by $\\eta$ times that rounding noise: nothing you could see."
    if key_seen(trace) != 0:
        return "Its loss gradient is exactly zero, so only the L2 term $\\lambda\\theta$ moves it."
    return ("With a gradient of exactly zero, and no L2 term (the weight is zero or does not decay), SGD does not "
            "move it.")


def key_decays(trace: Any) -> bool:
    """The packed bias decays (only under `decay: all`)."""
    return decays(trace, KEY_BIAS)


def key_move(trace: Any) -> float:
    """How far that entry moved, θ' − θ."""
    return moved(trace, KEY_BIAS, key_at(trace))


def key_terms(trace: Any) -> int:
    """How many numbers are added up into that gradient: one per position of every text."""
    ids = np.asarray(trace["input_ids"])
    return int(ids.shape[1] * ids.shape[0])


# -- a row of the position table that no text reaches ----------------------------------------------------------------
def table_rows(trace: Any) -> int:
    """The rows of the position table (`n_positions`)."""
    return int(trace.config["model"]["n_positions"])


def unused_row(trace: Any) -> int | None:
    """The first row of the position table no text reaches (None if the longest text fills the table)."""
    T = int(np.asarray(trace["input_ids"]).shape[1])
    return T if T < table_rows(trace) else None


def wpe_decays(trace: Any) -> bool:
    """The position table decays."""
    return decays(trace, "wpe")


def unused_move(trace: Any) -> float:
    """How far the element in column 0 of that row moved, θ' − θ."""
    return moved(trace, "wpe", (unused_row(trace), 0))


def unused_move_lr(trace: Any) -> float:
    """The same, in units of η."""
    return unused_move(trace) / opt.lr(trace)


def unused_share(trace: Any) -> float:
    """Its size, |Δθ/η|: the share of a full step η that moved it."""
    return abs(unused_move_lr(trace))


# -- every tensor -----------------------------------------------------------------------------------------------------
def mean_grad(trace: Any) -> float:
    """The mean |gradient| over every weight of the model."""
    total = 0
    for t in opt.tensors(trace):
        total = total + t.mean_grad * t.size
    return total / opt.weights(trace)


def mean_v(trace: Any) -> float:
    """The second moment v = (1 − β₂) g² of a gradient of that mean size."""
    g = mean_grad(trace)
    return (1 - trace.config["optimizer"]["betas"][1]) * g * g


def tensor_summary(trace: Any, name: str) -> str:
    """How one tensor moved, after its shape under its picture: whether it decays, how many of its weights moved by
    about η, its largest and mean change in units of η, and how many moved with their loss gradient."""
    t = opt.tensor(trace, name)
    text = (f"{'decays' if t.decays else 'no decay'}. {t.near} of its {counted(t.size, 'weight')} moved by an amount "
            f"within 1% of $\\eta$; the largest change is {fixed(t.max_change_lr, 3)} $\\eta$ and the mean "
            f"{fixed(t.mean_change_lr, 3)} $\\eta$.")
    if t.along:
        text += (f" {t.along} of its weights moved with their loss gradient, pulled towards zero by the weight decay "
                 "(see [which way each weight moved](13-optimizer.md#which-way-each-weight-moved)).")
    return text


def tensor_brief(trace: Any, name: str) -> str:
    """How one tensor moved, as a llama run's update page says it under the tensor's shape: whether it decays, how
    many of its weights moved by about η, its largest and mean change in units of η (the line breaks are the page's
    own)."""
    t = opt.tensor(trace, name)
    return (f"{'decays' if t.decays else 'no decay'}. {t.near} of its {t.size} weights moved by an\n"
            f"amount within 1% of $\\eta$; the largest change is {fixed(t.max_change_lr, 3)} $\\eta$ and the mean\n"
            f"{fixed(t.mean_change_lr, 3)} $\\eta$.")


def groups(trace: Any) -> list[tuple[str, list[opt.Tensor]]]:
    """The tensors under the picture headings: the embeddings, each block, the final LayerNorm, the output layer."""
    out: list[tuple[str, list[opt.Tensor]]] = []
    for name in parameters(trace):
        if name in ("wte", "wpe"):
            heading = "The embeddings"
        elif name.startswith("ln_f."):
            heading = "The final LayerNorm"
        elif name == "lm_head.weight":
            heading = "The output layer"
        else:
            heading = "Block " + name[1:].split(".", 1)[0]
        if not out or out[-1][0] != heading:
            out.append((heading, []))
        out[-1][1].append(opt.tensor(trace, name))
    return out


# -- what the page says about the worked elements, as this optimizer makes it -----------------------------------------
def stages(trace: Any) -> str:
    """The stages of an update in the order the optimizer computes them, for a sentence: the gradient, the L2 term
    (Adam, SGD), the moments (Adam-like) or the momentum buffer, and the new weight."""
    out = "the gradient, "
    if opt.name(trace) != "adamw":
        out += "the gradient with the L2 term\n$g = \\nabla\\theta + \\lambda\\theta$, "
    if opt.adam_like(trace):
        out += "the moments $m$ and $v$, their bias-corrected\n$\\hat m$ and $\\hat v$, "
    elif opt.momentum(trace):
        out += "the momentum buffer, "
    return out + "and the new weight"


def matrix_decay(trace: Any) -> str:
    """What AdamW's decoupled decay added to the worked matrix element's move ("" where nothing decays it)."""
    if not (opt.name(trace) == "adamw" and opt.wd(trace) > 0 and matrix_decays(trace)):
        return ""
    return (f"Of that, the decay contributed $-\\eta\\lambda\\theta$ = {sci(matrix_decay_term(trace))}: a weight\n"
            f"of size {fixed(matrix_size(trace), 3)} loses the fraction $\\eta\\lambda = "
            f"{tex_number(opt.decay_rate(trace))}$ of itself, which\nis why $|\\Delta\\theta/\\eta|$ differs from 1 "
            f"by {fixed(matrix_off(trace), 4)}.")


def key_step(trace: Any) -> Markup:
    """What the optimizer does with the key bias's gradient (zero, or rounding noise): no step, a step of about
    η|g|/ε (Adam-like: ε sets the smallest gradient it takes seriously), or SGD's."""
    if not opt.adam_like(trace):
        return Markup(key_sgd(trace))
    adam = opt.name(trace) == "adam"
    if key_seen(trace) == 0:
        moves = ("only the decay moves it" if opt.name(trace) == "adamw" and key_decays(trace) and opt.wd(trace) > 0
                 else "it does not move at all")
        return Markup(f"Its gradient{' (with the L2 term)' if adam else ''} is exactly zero, so $\\hat m = 0$ and the "
                      f"step is zero;\n{moves}.")
    out = ("Here Adam's \"every weight moves by about $\\eta$\" breaks down, and it should: $\\hat m/(\\sqrt{\\hat v}"
           "+\\epsilon) =\ng/(|g|+\\epsilon)$, and with $|g|$ = " + sci(key_seen(trace)) + ", far below $\\epsilon = "
           + tex_number(opt.eps(trace)) + "$ the step is about\n$\\eta\\,|g|/\\epsilon$ instead of $\\eta$. So "
           "$\\epsilon$ is not only a guard against dividing by zero: it sets the\nsmallest gradient that Adam takes "
           "seriously.")
    if adam and opt.wd(trace) > 0 and key_decays(trace):
        out += ("\n(Under `decay: all` the L2 term $\\lambda\\theta$ is part of $g$; while the key bias is still "
                "exactly zero, as it is at\ninitialisation, the term is zero too.)")
    return Markup(out)


def unused_step(trace: Any) -> Markup:
    """What moves the unused row of the position table, whose loss gradient is 0: nothing, AdamW's decay (a small
    shrink), Adam's L2 term (a full step of η towards zero) or SGD's (a shrink)."""
    if not wpe_decays(trace) or opt.wd(trace) == 0:
        return Markup(f"Without weight decay on it, nothing moves it: the change is {sci(unused_move(trace))}.")
    if opt.name(trace) == "adamw":
        return Markup(f"Only the decoupled decay moves it: $\\Delta\\theta = -\\eta\\lambda\\theta$ = "
                      f"{sci(unused_move(trace))}, a shrink by the fraction\n$\\eta\\lambda = "
                      f"{tex_number(opt.decay_rate(trace))}$ towards zero, {sci(unused_share(trace))} of $\\eta$.")
    if opt.name(trace) == "adam":
        return Markup(
            "Its whole $g$ is the L2 term $\\lambda\\theta$, and Adam treats that like any other gradient: divided by "
            "its own size\nit becomes about $\\operatorname{sign}(\\theta)$, so the weight moves by almost a full "
            f"$\\eta$ towards zero\n($\\Delta\\theta/\\eta = {fixed(unused_move_lr(trace), 4, True)}$). This is "
            "the oddity of L2 decay inside Adam that AdamW's\ndecoupled decay removes: an unused weight is pulled to "
            "zero as fast as a used one is trained.")
    return Markup("Its whole $g$ is the L2 term $\\lambda\\theta$, so SGD shrinks it by the fraction "
                  f"$\\eta\\lambda$:\n$\\Delta\\theta$ = {sci(unused_move(trace))}.")


def tiny_moments(trace: Any) -> str:
    """How small the second moments are at step 1 (an Adam-like optimizer; "" for SGD): v of a gradient of the
    average size."""
    if not opt.adam_like(trace):
        return ""
    return (" The second moments\nare the most affected: $v = (1 - \\beta_2)\\,g^2$ with $1 - \\beta_2 = "
            f"{tex_number(opt.second_correction(trace))}$, so a gradient\nof the average size in this step, "
            f"{fixed(mean_grad(trace))}, has $v$ = {sci(mean_v(trace))}.")
