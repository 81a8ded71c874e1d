"""One row read aloud: what a worked row of a table says, in a sentence that names its tokens.

A page shows a row as numbers (a softmax row, a row of probabilities, a LayerNorm row, a row of the loss gradient);
these facts say what the row means: `{{ aloud.attention }}` gives "In head 0, “the” at position 5 looks most at
…". Each sentence has a fact behind it that a test checks against NumPy (`attention_keys`, `favourites`, ...), and
the sentence writes its numbers to two significant digits, its words escaped for the page.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from markupsafe import Markup

from site_build import format as fmt
from site_build.facts import attn, grads, ln, logits
from site_build.macros.text import counted, number_word, ordinal

SHOWN = 3  # a sentence names at most this many keys or words, the largest first


def _n(x: Any) -> str:
    """A number read aloud: two significant digits, a real minus sign (0.27, 0.061, −0.15)."""
    return fmt.sig(float(x), 2)


def _input(trace: Any, t: int) -> Markup:
    """The input token at position t of the first text, quoted."""
    return Markup("“{}”").format(fmt.html_words(trace.labels["inputs"][0][t]))


def _word(trace: Any, v: int) -> Markup:
    """Vocabulary word v, quoted."""
    return Markup("“{}”").format(fmt.html_words(trace.labels["vocab"][v]))


def _listed(parts: list[Markup]) -> Markup:
    """`a`, `a and b`, `a, b and c`."""
    if len(parts) == 1:
        return parts[0]
    return Markup(", ").join(parts[:-1]) + Markup(" and ") + parts[-1]


def _largest_first(values: Any) -> list[int]:
    """The indices of a row, largest value first (the lower index first on a tie)."""
    return [int(i) for i in np.argsort(-np.asarray(values), kind="stable")]


# -- attention: the worked query of head 0 ---------------------------------------------------------------------
class Key(NamedTuple):
    """A key position the worked query sees, with its weight."""

    s: int
    weight: float


def attention_keys(trace: Any) -> list[Key]:
    """The keys the attention page's worked query (head 0) can see, largest weight first."""
    t = attn.row(trace)
    row = trace["L0.attn.weights"][0, 0, t, :t + 1]
    return [Key(s, float(row[s])) for s in _largest_first(row)]


def attention(trace: Any) -> Markup:
    """Where the worked query of head 0 looks, in words: the keys of largest weight, what the others share, and
    what a uniform row would give each."""
    t, keys = attn.row(trace), attention_keys(trace)
    me = _input(trace, t)
    if t == 0:
        return Markup("{} at position 0 sees only itself, so its one weight is 1 whatever its score.").format(me)

    def name(k: Key) -> Markup:
        where = Markup("itself") if k.s == t else Markup("{} at position {}").format(_input(trace, k.s), k.s)
        return Markup("{} ({})").format(where, _n(k.weight))

    shown, rest = keys[:SHOWN], keys[SHOWN:]
    if len(shown) == 2:
        looks = Markup("looks more at {} than at {}").format(name(shown[0]), name(shown[1]))
    else:
        looks = Markup("looks most at {}, then {}").format(
            name(shown[0]), _listed([Markup("at {}").format(name(k)) for k in shown[1:]]))
    share = sum(k.weight for k in rest)
    if len(rest) == 1:
        tail = Markup("; the one other position gets {}").format(_n(share))
    elif rest:
        tail = Markup("; the other {} positions share the remaining {}").format(number_word(len(rest)), _n(share))
    else:
        tail = Markup("")
    uniform = Markup(" A uniform row would give each of its {} {}.").format(counted(t + 1, "position"), _n(1 / (t + 1)))
    return Markup("In head 0, {} at position {} {}{}.").format(me, t, looks, tail) + uniform


# -- the output: the next-word probabilities of the worked position ------------------------------------------------
class Word(NamedTuple):
    """A vocabulary word with its probability at the worked position."""

    v: int
    p: float


def favourites(trace: Any) -> list[Word]:
    """The words the model finds likeliest at the output page's worked position, largest first (at most three)."""
    row = trace["probs"][0, logits.row(trace)]
    return [Word(v, float(row[v])) for v in _largest_first(row)[:SHOWN]]


def target_rank(trace: Any) -> int:
    """Where the right next word stands among the worked position's probabilities: 1 for the likeliest."""
    return 1 + _largest_first(trace["probs"][0, logits.row(trace)]).index(logits.target(trace))


def probabilities(trace: Any) -> Markup:
    """What the model predicts after the worked position's input, in words: its favourites and the right word."""
    t, y = logits.row(trace), logits.target(trace)
    favs, rank = favourites(trace), target_rank(trace)
    listed = _listed([Markup("{} ({})").format(_word(trace, w.v), _n(w.p)) for w in favs])
    right = _word(trace, y)
    if rank == 1:
        verdict = Markup("and the right word, {}, is its favourite").format(right)
    elif rank <= len(favs):
        verdict = Markup("and the right word, {}, is the {} of them").format(right, ordinal(rank))
    else:
        p, n = float(trace["probs"][0, t, y]), len(trace.labels["vocab"])
        place = "smallest" if rank == n else f"{ordinal(rank)} largest"
        verdict = Markup("while the right word, {}, gets {}, the {} of the {} probabilities").format(
            right, _n(p), place, n)
    return Markup("After {} at position {}, the model's {} for the next word are {}, {}.").format(
        _input(trace, t), t, counted(len(favs), "favourite"), listed, verdict)


# -- LayerNorm: the worked row of ln_1 -----------------------------------------------------------------------------
class Extreme(NamedTuple):
    """An element of the worked LayerNorm row: its dimension, its value coming in and its normalised value."""

    c: int
    x: float
    xhat: float


def layernorm_extremes(trace: Any) -> tuple[Extreme, Extreme]:
    """The largest and the smallest element of the worked row of ln_1's input (the lower dimension on a tie)."""
    r = ln.row(trace)
    x = np.asarray(trace[trace.record("L0.ln_1.mean").inputs[0]][0, r])
    xhat = trace["L0.ln_1.xhat"][0, r]
    hi, lo = int(x.argmax()), int(x.argmin())
    return Extreme(hi, float(x[hi]), float(xhat[hi])), Extreme(lo, float(x[lo]), float(xhat[lo]))


def layernorm(trace: Any) -> Markup:
    """The worked LayerNorm row in words: its mean and spread, and where its largest and smallest numbers land."""
    r = ln.row(trace)
    me = _input(trace, r)
    hi, lo = layernorm_extremes(trace)
    return Markup("Row {} ({}) comes in with mean {} and standard deviation {}. Its largest number, {} (dimension "
                  "{}), lies {} standard deviations above the mean, so normalising turns it into {}; its smallest, "
                  "{} (dimension {}), lies {} below and becomes {}.").format(
        r, me, _n(ln.mu(trace)), _n(ln.sd(trace)), _n(hi.x), hi.c, _n(hi.xhat), _n(hi.xhat), _n(lo.x), lo.c,
        _n(-lo.xhat), _n(lo.xhat))


# -- the loss gradient: the first row ------------------------------------------------------------------------------
def rivals(trace: Any) -> list[Word]:
    """The wrong words of largest probability at the first position (at most three), largest first."""
    row, y = trace["probs"][0, 0], int(trace["targets"][0, 0])
    return [Word(v, float(row[v])) for v in _largest_first(row) if v != y][:SHOWN]


def loss_gradient(trace: Any) -> Markup:
    """The first row of the loss gradient in words: the push up on the right word and the pushes down on the wrong
    words the model believed most."""
    y, n = int(trace["targets"][0, 0]), grads.targets(trace)
    p, g = float(trace["probs"][0, 0, y]), trace["grad.logits"][0, 0]
    wrong = rivals(trace)
    head = Markup("At position 0 the input is {} and the right next word is {}, to which the model gave {}. Its "
                  "entry, ({} − 1)/{} = {}, is the only negative one in the row: a step against the gradient raises "
                  "that logit and lowers every other.").format(_input(trace, 0), _word(trace, y), _n(p), _n(p), n,
                                                                _n(g[y]))
    if not wrong:
        return head
    words = _listed([_word(trace, w.v) for w in wrong])
    entries = _listed([Markup(_n(g[w.v])) for w in wrong])
    if len(wrong) == 1:
        return head + Markup(" The wrong word, {}, gets {}.").format(words, entries)
    return head + Markup(" The wrong words the model believed most, {}, get the largest positive entries ({}), so "
                         "they are lowered the most.").format(words, entries)
