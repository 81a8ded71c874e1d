"""The training run (the training-run page): the loss step by step, what the trained model writes, where it looks,
and how likely it finds every right next word, before and after `train_steps` steps."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from site_build.charts.teaching import generation_reference
from site_build.facts import opt
from site_build.format import fixed
from site_build.macros.optimizer import TORCH_NAMES
from site_build.macros.text import text_name

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
    """The last loss against the first: `, 12 times lower`, `, 35.2% lower`, `: it went *up*, 3.1% higher` or ""."""
    L = _loss(trace)
    first, end = float(L[0]), float(L[steps(trace)])
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
