"""The output layer and the loss: the entry the page works through, the best and worst predicted targets of the first
text, and the figures that compare the loss with a uniform guess."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from site_build.facts.run import B, C, N, T, V, checkpoint, init_std, n0
from site_build.macros.text import exp_of, log_of


def row(trace: Any) -> int:
    """The position worked through: the second, or the first if the first text has a single real one."""
    return min(1, n0(trace) - 1)


def col(trace: Any) -> int:
    """The dimension of ln_f worked in full: the fourth, or the last if C is smaller."""
    return min(3, C(trace) - 1)


def target(trace: Any) -> int:
    """The id of the right next word at the worked position."""
    return int(trace["targets"][0, row(trace)])


def target_word(trace: Any) -> str:
    """The right next word at the worked position."""
    return trace.labels["vocab"][target(trace)]


def best(trace: Any) -> int:
    """The position of the first text whose right word gets the highest probability (the first, on a tie)."""
    return int(trace["loss.target_prob"][0, :n0(trace)].argmax())


def worst(trace: Any) -> int:
    """The position of the first text whose right word gets the lowest probability (the first, on a tie)."""
    return int(trace["loss.target_prob"][0, :n0(trace)].argmin())


def best_word(trace: Any) -> str:
    """The right word at the best-predicted position."""
    return trace.labels["vocab"][int(trace["targets"][0, best(trace)])]


def worst_word(trace: Any) -> str:
    """The right word at the worst-predicted position."""
    return trace.labels["vocab"][int(trace["targets"][0, worst(trace)])]


def favourite(trace: Any) -> int:
    """The id of the word the model finds likeliest at the best-predicted position."""
    return int(trace["probs"][0, best(trace)].argmax())


def favourite_word(trace: Any) -> str:
    """That word."""
    return trace.labels["vocab"][favourite(trace)]


def best_is_favourite(trace: Any) -> bool:
    """Whether the right word at the best-predicted position is also the likeliest of all."""
    return favourite(trace) == int(trace["targets"][0, best(trace)])


def uniform(trace: Any) -> float:
    """The probability a uniform guess gives every word, 1/n_vocab."""
    return 1 / V(trace)


def mean_prob(trace: Any) -> float:
    """The mean probability the model gives the right word, over the real targets of the batch."""
    return float(trace["loss.target_prob"].sum() / N(trace))


def loss(trace: Any) -> float:
    """The loss of the step."""
    return float(trace["loss"])


def log_vocab(trace: Any) -> float:
    """log n_vocab: the loss of a uniform guess."""
    return log_of(V(trace))


def perplexity(trace: Any) -> float:
    """e to the loss: how many equally likely words a model with this loss would choose between."""
    return exp_of(trace["loss"])


def worse_than_uniform(trace: Any) -> bool:
    """Whether the perplexity is above the vocabulary size (worse than a uniform guess)."""
    return perplexity(trace) > V(trace)


def geometric_mean(trace: Any) -> float:
    """e to minus the loss: the geometric mean of the probabilities of the right words."""
    return exp_of(-trace["loss"])


def spread(trace: Any) -> float:
    """The standard deviation of the logits of one position around their mean, over the first text's real
    positions."""
    lg = trace["logits"][0][:n0(trace)]
    return float((((lg - lg.mean(axis=-1, keepdims=True)) ** 2).mean()) ** (1 / 2))


def expected_loss(trace: Any) -> float:
    """log n_vocab + σ²/2: the average loss of a target unrelated to random logits of spread σ."""
    s = spread(trace)
    return log_vocab(trace) + s * s / 2


def expected_close(trace: Any) -> bool:
    """Whether that estimate is within 0.1 of the loss."""
    return abs(expected_loss(trace) - loss(trace)) <= 1 / 10


def init_logit_spread(trace: Any) -> float:
    """init_std · √C: the spread of a logit at initialisation."""
    return init_std(trace) * C(trace) ** (1 / 2)


def out_entries(trace: Any) -> Markup:
    """Where an untied output layer's entries come from, as the sentence before its table says it."""
    if checkpoint(trace):
        return Markup("Its entries at the start are the checkpoint's:")
    return Markup("Its entries are random at the start, drawn like those of $W_{te}$ (after every other weight, so "
                  "the others are\nthose of the tied model with the same seed):")


def targets_note(trace: Any) -> Markup:
    """What N, the number the loss divides by, counts: the batch's real targets (padding left out), or, for one
    unpadded text, every position."""
    if B(trace) > 1 or N(trace) < T(trace):
        return Markup(f"$N = {N(trace)}$ is the number of real targets in the batch; padded positions (target −100) "
                      "count\nneither in the sum nor in $N$.")
    return Markup(f"Here $N = {N(trace)}$, the number of target positions.")
