"""The training run (the training-run page): the loss step by step, what the trained model writes, where it looks,
and how likely it finds every right next word, before and after `train_steps` steps."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from markupsafe import Markup

from site_build import format as fmt
from site_build.charts.teaching import generation_reference
from site_build.facts import opt
from site_build.facts.run import llama
from site_build.format import fixed, general
from site_build.macros.optimizer import TORCH_NAMES
from site_build.macros.text import and_list, counted, text_name

LOSS_STEPS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # the loss table's rows, up to the last


# -- the run's sizes --------------------------------------------------------------------------------------------------
def steps(trace: Any) -> int:
    """How many steps the training run takes (`train_steps`; 0: no training at all)."""
    return int(trace.config["train_steps"])


def texts(trace: Any) -> int:
    """How many texts the batch holds."""
    return int(np.asarray(trace["input_ids"]).shape[0])


def positions(trace: Any) -> int:
    """The positions of the batch: the length of the longest text."""
    return int(np.asarray(trace["input_ids"]).shape[1])


def blocks(trace: Any) -> int:
    """How many transformer blocks the model has."""
    return int(trace.config["model"]["n_layers"])


def targets(trace: Any) -> int:
    """How many targets (real next words, padding left out) the batch has."""
    return int((np.asarray(trace["targets"]) >= 0).sum())


def can_memorise(trace: Any) -> bool:
    """The model has more than ten weights for every target: far more than it needs to learn its texts by heart."""
    return opt.weights(trace) > 10 * targets(trace)


def last(trace: Any) -> int:
    """The last real position of text 1."""
    return int((np.asarray(trace["targets"][0]) >= 0).sum()) - 1


def carried(trace: Any) -> str:
    """What the optimizer carries from one step to the next, as the page says it."""
    opt = trace.config["optimizer"]
    if opt["name"] in ("adamw", "adam"):
        return f"with {TORCH_NAMES[opt['name']]}'s running averages $m$ and $v$ carried from one step to the next"
    if opt["momentum"]:
        return "with SGD's momentum buffer carried from one step to the next"
    return "with plain SGD steps (nothing is carried from one step to the next)"


# -- the loss, step by step -------------------------------------------------------------------------------------------
def _loss(trace: Any) -> np.ndarray:
    return np.asarray(trace["train.loss"])


def loss_rows(trace: Any) -> list[tuple[int, float | None]]:
    """The loss table's steps (0, 1, 2, 3, 5, 10, ... and the last), each with its change (None for step 0)."""
    K, L = steps(trace), _loss(trace)
    picks = [k for k in LOSS_STEPS if k <= K]
    if K not in picks:
        picks.append(K)
    return [(k, float(L[k] - L[k - 1]) if k > 0 else None) for k in picks]


def loss_change(trace: Any) -> str:
    """The last loss against the first: `, 12 times lower`, `, 35.2% lower`, `: it went *up*, 3.1% higher`,
    `: all the way to zero` or ""."""
    L = _loss(trace)
    first, end = float(L[0]), float(L[steps(trace)])
    if end == 0 < first:  # a large learning rate on a short text: every right word has probability 1 in float64
        return ": all the way to zero, every right word predicted with probability 1 to the last bit"
    if end < first / 10:
        return f", {fixed(first / end, 0)} times lower"
    if end < first:
        return f", {fixed(100 * (1 - end / first), 1)}% lower"
    if end > first:
        return f": it went *up*, {fixed(100 * (end / first - 1), 1)}% higher"
    return ""


def _first_step(trace: Any, fraction: int) -> int | None:
    L = _loss(trace)
    return next((k for k in range(1, steps(trace) + 1) if L[k] <= L[0] / fraction), None)


def half_step(trace: Any) -> int | None:
    """The first step after which the loss is at most half the initial loss (None if it never is)."""
    return _first_step(trace, 2)


def tenth_step(trace: Any) -> int | None:
    """The first step after which the loss is at most a tenth of the initial loss (None if it never is)."""
    return _first_step(trace, 10)


def rises(trace: Any) -> int:
    """On how many steps the loss went up rather than down."""
    L = _loss(trace)
    return sum(1 for k in range(1, steps(trace) + 1) if L[k] > L[k - 1])


def tenth(trace: Any) -> int:
    """A tenth of the run, in whole steps: the stretch whose start and end the curve's shape compares."""
    return steps(trace) // 10


def early_fall(trace: Any) -> float:
    """How much the first tenth of the run lowered the loss (negative if it raised it)."""
    L = _loss(trace)
    return float(L[0] - L[tenth(trace)])


def late_fall(trace: Any) -> float:
    """How much the last tenth of the run lowered the loss (negative if it raised it)."""
    L, K = _loss(trace), steps(trace)
    return float(L[K - tenth(trace)] - L[K])


def early_by(trace: Any) -> str:
    """The first tenth's change of the loss, as the page says it: `0.512`, or `0.012 (upwards)`."""
    early = early_fall(trace)
    return fixed(abs(early), 3) + ("" if early > 0 else " (upwards)")


def late_by(trace: Any) -> str:
    """The last tenth's change of the loss, as the page says it: `0.012`, `less than a thousandth`, `(upwards)`."""
    late = late_fall(trace)
    size = fixed(abs(late), 3) if abs(late) >= 1 / 1000 else "less than a thousandth"
    return size + ("" if late >= 0 else " (upwards)")


def flattens(trace: Any) -> bool:
    """The curve flattened: the first tenth of the run lowered the loss, and more than the last tenth did."""
    early, late = early_fall(trace), late_fall(trace)
    return early > late and early > 0


# -- what the model writes --------------------------------------------------------------------------------------------
def start_word(trace: Any) -> str:
    """The token greedy decoding starts from: the first input of text 1 (`<bos>`)."""
    return trace.labels["inputs"][0][0]


def generated(trace: Any) -> int:
    """How many words greedy decoding writes."""
    return len(trace["train.generate.before"])


def reference(trace: Any) -> int:
    """The text (batch index) the greedy text is compared with: the one the trained model's text agrees with most."""
    return generation_reference(trace)


def _reference_words(trace: Any) -> list[str]:
    b = reference(trace)
    valid = np.asarray(trace["targets"])[b] >= 0
    return [w for w, ok in zip(trace.labels["targets"][b], valid) if ok]


def _written(trace: Any, name: str) -> list[str]:
    vocab = trace.labels["vocab"]
    return [vocab[int(i)] for i in np.asarray(trace[name])]


def generation_rows(trace: Any) -> list[tuple[int, str, str, str | None]]:
    """The greedy-text table: each word's index, initial and trained words, the reference's word (None past it)."""
    before, after = _written(trace, "train.generate.before"), _written(trace, "train.generate.after")
    ref = _reference_words(trace)
    return [(j, before[j], after[j], ref[j] if j < len(ref) else None) for j in range(len(before))]


def compared(trace: Any) -> int:
    """How many written words have a word of the reference text to compare with."""
    return min(len(_reference_words(trace)), generated(trace))


def _hits(trace: Any, name: str) -> int:
    ref = _reference_words(trace)
    return sum(1 for j, w in enumerate(_written(trace, name)[:compared(trace)]) if w == ref[j])


def hits_before(trace: Any) -> int:
    """How many words the initial weights write as in the reference text, position by position."""
    return _hits(trace, "train.generate.before")


def hits_after(trace: Any) -> int:
    """How many words the trained weights write as in the reference text, position by position."""
    return _hits(trace, "train.generate.after")


def learned_text(trace: Any) -> bool:
    """The trained model writes the reference text word for word, and the initial one did not."""
    return hits_after(trace) == compared(trace) and hits_before(trace) < compared(trace)


# -- where the model looks --------------------------------------------------------------------------------------------
def _mean_peak(trace: Any, name: str) -> float:
    A = np.asarray(trace[name])[0]
    heads, n = A.shape[0], last(trace) + 1
    total = 0
    for h in range(heads):
        for q in range(n):
            total = total + A[h][q].max()
    return float(total / (heads * n))


def peak_before(trace: Any) -> float:
    """A row's largest attention weight, initial weights, mean over block 0's heads and the positions of text 1."""
    return _mean_peak(trace, "L0.attn.weights")


def peak_after(trace: Any) -> float:
    """The same average with the trained weights."""
    return _mean_peak(trace, "train.L0.attn.weights.after")


def attention_folds(trace: Any) -> list[tuple[int, list[int]]]:
    """The trained attention's fold-outs: each block with its heads to show (block 0 without head 0, shown above)."""
    heads = int(trace.config["model"]["n_heads"])
    folds = [(layer, list(range(1 if layer == 0 else 0, heads))) for layer in range(blocks(trace))]
    return [(layer, hs) for layer, hs in folds if hs]


# -- the right next word, before and after ---------------------------------------------------------------------------
class Place(NamedTuple):
    """One target of the batch: text `b`, position `t`, the words up to it, its target, and, over every place where
    the same prefix occurs, how many (`same`) and how many of them go on with the same target (`hit`)."""

    b: int
    t: int
    prefix: list[str]
    target: str
    hit: int
    same: int


def places(trace: Any) -> list[Place]:
    """Every target of the batch, text by text, with how often its prefix goes on with it."""
    ins, tgs = trace.labels["inputs"], trace.labels["targets"]
    valid = np.asarray(trace["targets"]) >= 0
    B, T = valid.shape
    out = []
    for b in range(B):
        for t in range(T):
            if not valid[b][t]:
                continue
            prefix = ins[b][:t + 1]
            same = [b2 for b2 in range(B) if valid[b2][t] and ins[b2][:t + 1] == prefix]
            hit = sum(1 for b2 in same if tgs[b2][t] == tgs[b][t])
            out.append(Place(b, t, list(prefix), tgs[b][t], hit, len(same)))
    return out


def ambiguous(trace: Any) -> list[Place]:
    """The places whose prefix also goes on with another word somewhere: no model can be sure of their target."""
    return [p for p in places(trace) if p.hit < p.same]


def far_from_best(trace: Any) -> list[str]:
    """The positions given less than half the best possible probability: `3`, or `3 of text 2` in a batch."""
    after = np.asarray(trace["train.target_prob.after"])
    many = texts(trace) > 1
    return [str(p.t) + (" of " + text_name(p.b) if many else "") for p in places(trace)
            if after[p.b][p.t] < p.hit / p.same / 2]


def _right(trace: Any) -> np.ndarray:
    return np.asarray(trace["train.target_prob.after"])[np.asarray(trace["targets"]) >= 0]


def smallest_right(trace: Any) -> float:
    """The smallest probability the trained model gives a right next word."""
    return float(_right(trace).min())


def mean_right(trace: Any) -> float:
    """The mean probability the trained model gives the right next words."""
    return float(_right(trace).mean())


class Repeat(NamedTuple):
    """A word of text `b` that is the input at several positions (`where`) and is followed by different words there
    (`nexts`, in order)."""

    b: int
    word: str
    where: list[int]
    nexts: list[str]


def repeat(trace: Any) -> Repeat | None:
    """The first input word found twice in a text with different next words (None if there is none)."""
    ins, tgs = trace.labels["inputs"], trace.labels["targets"]
    valid = np.asarray(trace["targets"]) >= 0
    for b in range(valid.shape[0]):
        n = int(valid[b].sum())
        for t in range(valid.shape[1]):
            if not valid[b][t]:
                continue
            where = [t2 for t2, w in enumerate(ins[b][:n]) if w == ins[b][t]]
            nexts = [tgs[b][t2] for t2 in where]
            if len(where) > 1 and len({w.lower() for w in nexts}) > 1:  # case ignored, as Jinja's `unique` did
                return Repeat(b, ins[b][t], where, nexts)
    return None


# -- what the page says about the run, as this run makes it -----------------------------------------------------------
def _steps(trace: Any) -> str:
    return fmt.counted(steps(trace), "step")


def _texts_word(trace: Any) -> str:
    return "text" if texts(trace) == 1 else "texts"


def repeated(trace: Any) -> Markup:
    """What the build does with the step: repeats it `train_steps` times, or (0) only shows the starting point."""
    n = steps(trace)
    if n > 0:
        return Markup(
            f"This build repeats it {fmt.counted(n, 'time')} (`train_steps: {n}`). The run starts from the same "
            "initial\nweights as the recorded step, so its step 1 is exactly the step of the previous pages. It "
            "records the loss before\nevery step and after the last, and, at the end, what the trained model "
            "predicts, where it looks, and what it writes.")
    return Markup(
        "This build runs no training at all (`train_steps: 0`): what follows is only the starting point, the loss and "
        "the\npredictions of the initial weights, so every \"after\" on this page equals its \"before\". Set "
        "`train_steps` to see\ntraining go.")


def loss_steps(trace: Any) -> Markup:
    """Which step each loss of the table is after: the initial weights, the step the site follows, the last."""
    n = steps(trace)
    if n == 0:
        return Markup("With no steps, $\\mathcal L^{\\text{run}}_0$, the loss of the initial weights, is all there is.")
    last_one = (f", and\n$\\mathcal L^{{\\text{{run}}}}_{{{n}}}$ the loss after the last of the {_steps(trace)}"
                if n > 1 else "")
    return Markup("$\\mathcal L^{\\text{run}}_0$ is the loss of the initial weights (the forward pages),\n"
                  "$\\mathcal L^{\\text{run}}_1$ the loss after the step the site follows (the summary page)"
                  f"{last_one}.")


def course(trace: Any) -> Markup:
    """How the loss fell over the run: by which step it halved and fell to a tenth, and on how many steps it rose."""
    halved = ""
    if half_step(trace):
        tenth_by = f" and fell to a tenth by step {tenth_step(trace)}" if tenth_step(trace) else ""
        halved = f"It halved by step {half_step(trace)}{tenth_by}."
    if rises(trace):
        ups = (f"On {rises(trace)} of the {_steps(trace)} the loss went *up* rather than down: a step of fixed size "
               "can\novershoot a valley.")
    elif steps(trace) > 1:
        ups = "It fell at every single step."
    else:
        ups = ""
    return Markup(f"{halved} \n{ups}")


def why_flat(trace: Any) -> Markup:
    """Why the late steps lowered the loss less than the early ones (by optimizer), or that they did not."""
    if not flattens(trace):
        return Markup(
            "Here the curve did not flatten at the end: the late steps lowered the loss as much as the early ones. The "
            "learning\nrate, or the number of steps, is small for this model: it has not yet reached the part of "
            "training where the\ngradients shrink.")
    texts_word = "text" if texts(trace) == 1 else "texts"
    lead = ("The early steps do most of the work. At the start every weight is far from where the data wants it, the "
            "gradients\nare large and point the same way from one step to the next, so each step pays off. As the "
            f"model fits the\n{texts_word}, the gradients shrink.\n")
    if opt.adam_like(trace):
        return Markup(
            lead + f"For {TORCH_NAMES.get(opt.name(trace), opt.name(trace))} that shrinks the steps for a reason that "
            "has nothing to do with noise: the step is\n$\\eta\\,\\hat m/\\sqrt{\\hat v}$, $\\hat m$ follows the "
            "gradient within about "
            f"$1/(1-\\beta_1) =\n{general(opt.memory1(trace), 6)}$ steps, but $\\sqrt{{\\hat v}}$ averages the squared "
            f"gradients\nover about $1/(1-\\beta_2) = {general(opt.memory2(trace), 6)}$ steps, so it still remembers\n"
            "the large gradients of the beginning. The ratio falls below 1 and the steps fall below $\\eta$, which is "
            "what\nflattens the curve; gradients that flip sign from step to step shrink $\\hat m$ further. (This is "
            "the other half of\n[the optimizer page](13-optimizer.md)'s story: only the first step moves almost every "
            "weight by about $\\eta$.)")
    running = " (or its running sum)" if opt.momentum(trace) else ""
    return Markup(lead + f"For SGD the step is $\\eta$ times the gradient{running}, so a smaller gradient is\n"
                  "directly a smaller step, and the curve flattens.")


def capacity(trace: Any) -> Markup:
    """Whether the model has far more weights than targets (it can learn its texts by heart) or is small for them."""
    n = fmt.counted(targets(trace), "target")
    if can_memorise(trace):
        return Markup(
            f"With {n} to fit and {opt.weights(trace)} weights, the model has far more weights than\ntargets, so "
            f"it can memorise the {_texts_word(trace)}: the loss can approach its lowest possible\nvalue.")
    return Markup(f"With {opt.weights(trace)} weights for {n}, this model is small for its data, and the loss may\n"
                  "level off above its lowest possible value.")


def written(trace: Any) -> Markup:
    """How many words greedy decoding writes, and why fewer than the positions when the model is big."""
    n = fmt.counted(generated(trace), "word")
    if generated(trace) < positions(trace):
        return Markup(f"{n} here (not {positions(trace)}: each word reads every one of the model's\n"
                      f"{opt.weights(trace)} weights once, so a model this big writes a shorter text)")
    return Markup(f"{n} here")


def what_it_wrote(trace: Any) -> Markup:
    """How the trained model's greedy text compares with the reference text: the same by chance (no training), the
    text word for word, or how many words agree, and why."""
    hb, ha, n = hits_before(trace), hits_after(trace), fmt.counted(compared(trace), "word")
    ref, start = text_name(reference(trace)), fmt.html_code(start_word(trace))
    if steps(trace) == 0:
        return Markup(f"Without training the two rows are the same: {hb} of the {n} agree with\n{ref}, by chance.")
    if learned_text(trace):
        more = " (and then goes on: the text is shorter than the longest)" if compared(trace) < generated(trace) else ""
        out = (f"With the initial weights the model writes what its random weights happen to favour ({hb} of\n{n} as "
               f"in {ref}); after {_steps(trace)} it writes\n{ref} word for word{more}.\nNobody told it to: it only "
               "ever learned to give the right next word a high probability at each position, and\ngreedy decoding "
               "turns that into the text.")
        if texts(trace) > 1:
            out += (f"\nStarting from {start} alone it can only write one of the {counted(texts(trace), 'text')}; the "
                    "page compares it with the one\nit comes closest to.")
        return Markup(out)
    out = f"With the initial weights, {hb} of the {n} agree with {ref}; after\n{_steps(trace)}, {ha}."
    if texts(trace) > 1:
        out += (f"\nStarting from {start} alone the model can write only one text, and this batch has "
                f"{counted(texts(trace), 'text')}: where\nthey disagree about the next word, greedy decoding "
                "follows the one the model finds likeliest.")
    elif ha < compared(trace):
        out += ("\nGreedy decoding takes the single likeliest word at each step; once it picks a wrong word, "
                "everything after it is\nconditioned on that mistake.")
    return Markup(out)


def end_weights(trace: Any) -> Markup:
    """Which weights give $p^{\\text{end}}$: those after the run's steps, or (no run) the initial ones again."""
    if steps(trace) > 0:
        return Markup(f"after {_steps(trace)}\n($p^{{\\text{{end}}}}$)")
    return Markup("at the end of the run ($p^{\\text{end}}$), which with `train_steps: 0` are the same\nnumbers again")


def learnable(trace: Any) -> Markup:
    """Whether every right next word can be learned for sure: the places whose prefix goes on with different words,
    or that none does (and a repeated word the model tells apart by the words before it and its position)."""
    amb = ambiguous(trace)
    if amb:
        places_ = "".join(
            f"after “{fmt.html_word_list(a.prefix)}” the next word is “{fmt.html_words(a.target)}” in {a.hit} of\n"
            f"the {a.same} places where that exact prefix occurs{',' if i < len(amb) - 1 else '.'}\n"
            for i, a in enumerate(amb))
        return Markup(
            "Some positions cannot be learned for sure, by any model:\n" + places_ + "A model that sees only the words "
            "so far cannot tell these places apart, so the best it can do is to split the\nprobability between the "
            "continuations; its loss cannot reach zero. That is what the \"best possible\" column\nsays.")
    out = ("Every position can be learned for sure: no prefix occurs twice with different continuations, so the best\n"
           "possible probability is 1 everywhere.")
    r = repeat(trace)
    if r:
        of = " of " + text_name(r.b) if texts(trace) > 1 else ""
        position = ("(through the rotary angles of the queries and keys, which see how far back each earlier word\nis)"
                    if llama(trace) else "(through the position embedding)")
        out += (f"\nThat includes the word “{fmt.html_words(r.word)}”, which appears at positions "
                f"{and_list(r.where)}{of}\nand is followed by {and_list(r.nexts, quote=True)} in\nthat order. A model "
                "that looked only at the current word could not choose between\n"
                f"{'them' if len(r.where) > 2 else 'the two'}; this one sees every earlier word (through attention) "
                f"and its position\n{position}, so the {counted(len(r.where), 'place')} look different to it.")
    return Markup(out)


def repeat_trained(trace: Any) -> bool:
    """The page gives the trained probabilities at a repeated word's places: no place is ambiguous, a word repeats
    with different next words, and the run trained."""
    return bool(steps(trace) > 0 and repeat(trace) and not ambiguous(trace))


def repeat_at(trace: Any) -> list[tuple[int, int]]:
    """The places (text, position) of the repeated word (train.repeat), in order; [] when no word repeats."""
    r = repeat(trace)
    return [(r.b, t) for t in r.where] if r else []


def short_of_best(trace: Any) -> Markup:
    """Where the trained model is still far from the best possible probability, and that its steps were too few."""
    far = far_from_best(trace)
    n = fmt.counted(steps(trace), "step").capitalize()
    return Markup(f"The model is still far from the best possible at {'position' if len(far) == 1 else 'positions'}\n"
                  f"{and_list(far)}: it gives the right word\nless than half of the probability it could. {n} "
                  f"{'was' if steps(trace) == 1 else 'were'} not\nenough there.")
