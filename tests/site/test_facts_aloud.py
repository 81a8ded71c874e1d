"""The rows read aloud (site_build/facts/aloud.py) say what the trace holds: every number a sentence shows is the
NumPy value it stands for, to its two significant digits, in the order the sentence gives it, and every word it
quotes is the token at the position it names. The expected values are worked out here from the trace's inputs
(weights, probabilities, the LayerNorm input), not read from the facts."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import aloud

CONFIGS = {
    "one text with repeats": {"model": {"d_model": 8, "n_heads": 2, "d_ff": 16, "n_positions": 12},
                              "data": {"texts": ["the cat sat on the mat the cat ran"]}, "train_steps": 1},
    "a padded batch, the first text two words long": {
        "model": {"d_model": 12, "n_heads": 3, "d_ff": 8, "n_layers": 2},
        "data": {"texts": ["the dog", "the dog ran on the mat"]}, "train_steps": 1},
    "one word": {"data": {"texts": ["cat"]}, "train_steps": 1},
    "three words, one head": {"model": {"n_heads": 1}, "data": {"texts": ["dog ran"]}, "train_steps": 1},
    "vocab words that are markup": {
        "model": {"vocab": ["<pad>", "<bos>", "<eos>", "<b>", "a&b", "x_y", "$z$"], "d_model": 8, "n_heads": 2,
                  "d_ff": 16},
        "data": {"texts": ["<b> a&b x_y $z$ <b>"]}, "train_steps": 1},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def plain(markup: object) -> str:
    """The sentence as a reader sees it: entities decoded, a real minus as '-'."""
    return html.unescape(str(markup)).replace("\u2212", "-")


def decimals(sentence: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", sentence)]


def quoted(sentence: str) -> list[str]:
    return re.findall(r"“([^”]*)”", sentence)


def shows(shown: float, x: float) -> bool:
    """Whether `shown` is x to two significant digits (or a third, where rounding reached the next power of ten)."""
    if x == 0:
        return shown == 0
    return abs(shown - x) <= 0.5 * 10 ** (math.floor(math.log10(abs(x))) - 1) * (1 + 1e-9)


def assert_shows(sentence: str, expected: list[float]) -> None:
    got = decimals(sentence)
    assert len(got) == len(expected), (sentence, expected)
    for g, x in zip(got, expected, strict=True):
        assert shows(g, x), f"{g} stands for {x} in: {sentence}"


def real(trace) -> int:
    return int((np.asarray(trace["targets"][0]) >= 0).sum())


def largest_first(values) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def test_attention_reads_the_worked_query(trace) -> None:
    t = real(trace) - 1  # the attention page's query: the last real position of the first text
    words = trace.labels["inputs"][0]
    q, k = trace["L0.attn.q"][0, 0], trace["L0.attn.k"][0, 0]
    scores = q[t] @ k[:t + 1].T / math.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    assert [key.s for key in aloud.attention_keys(trace)] == largest_first(weights)
    assert [key.weight for key in aloud.attention_keys(trace)] == pytest.approx(sorted(weights, reverse=True))
    sentence = plain(aloud.attention(trace))
    if t == 0:
        assert sentence.startswith(f"“{words[0]}” at position 0 sees only itself") and not decimals(sentence)
        return
    order = largest_first(weights)
    top, rest = order[:3], order[3:]
    expected = [weights[s] for s in top] + ([weights[rest].sum()] if rest else []) + [1 / (t + 1)]
    assert_shows(sentence, expected)
    named = [(w, int(s)) for w, s in re.findall(r"“([^”]*)” at position (\d+)", sentence)]
    assert named[0] == (words[t], t)  # the query itself
    assert named[1:] == [(words[s], s) for s in top if s != t]  # the keys, largest weight first
    assert ("itself" in sentence) == (t in top)
    tail = {0: "", 1: "; the one other position gets"}.get(len(rest), " positions share the remaining")
    assert tail in sentence and (rest or "the other" not in sentence)


def test_probabilities_read_the_worked_position(trace) -> None:
    t = min(1, real(trace) - 1)  # the output page's worked position
    y = int(trace["targets"][0, t])
    logits = trace["logits"][0, t]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    vocab = trace.labels["vocab"]
    order = largest_first(p)
    rank = order.index(y) + 1
    assert aloud.target_rank(trace) == rank
    assert [w.v for w in aloud.favourites(trace)] == order[:3]
    sentence = plain(aloud.probabilities(trace))
    assert quoted(sentence) == [trace.labels["inputs"][0][t]] + [vocab[v] for v in order[:3]] + [vocab[y]]
    assert_shows(sentence, [p[v] for v in order[:3]] + ([p[y]] if rank > 3 else []))
    if rank == 1:
        assert "is its favourite" in sentence
    elif rank > 3:
        assert ("the smallest of" if rank == len(vocab) else "largest of") in sentence
        assert f"of the {len(vocab)} probabilities" in sentence


def test_layernorm_reads_the_worked_row(trace) -> None:
    r = min(2, real(trace) - 1)  # the LayerNorm page's row
    x = np.asarray(trace["embed.out"][0, r])
    eps = trace.record("L0.ln_1.xhat").meta["eps"]
    mu, sd = x.mean(), math.sqrt(((x - x.mean()) ** 2).mean() + eps)
    hi, lo = int(np.argmax(x)), int(np.argmin(x))
    z_hi, z_lo = (x[hi] - mu) / sd, (x[lo] - mu) / sd
    assert z_hi == pytest.approx(trace["L0.ln_1.xhat"][0, r, hi]) and z_hi > 0 > z_lo
    sentence = plain(aloud.layernorm(trace))
    assert sentence.startswith(f"Row {r} (“{trace.labels['inputs'][0][r]}”)")
    assert [int(c) for c in re.findall(r"dimension (\d+)", sentence)] == [hi, lo]
    assert_shows(sentence, [mu, sd, x[hi], z_hi, z_hi, x[lo], -z_lo, z_lo])


def test_loss_gradient_reads_the_first_row(trace) -> None:
    y = int(trace["targets"][0, 0])
    n = int((np.asarray(trace["targets"]) >= 0).sum())
    p = trace["probs"][0, 0]
    gradient = (p - np.eye(len(p))[y]) / n
    assert gradient == pytest.approx(trace["grad.logits"][0, 0])
    wrong = [v for v in largest_first(p) if v != y][:3]
    sentence = plain(aloud.loss_gradient(trace))
    vocab = trace.labels["vocab"]
    assert quoted(sentence) == [trace.labels["inputs"][0][0], vocab[y]] + [vocab[v] for v in wrong]
    assert f"− 1)/{n} = ".replace("−", "-") in sentence
    assert_shows(sentence, [p[y], p[y], gradient[y]] + [gradient[v] for v in wrong])
    assert gradient[y] < 0 and all(gradient[v] >= 0 for v in range(len(p)) if v != y)  # "the only negative one"


def test_the_reading_can_fail() -> None:
    assert shows(0.27, 0.2731) and shows(0.040, 0.0397) and shows(1.8, 1.76)
    assert not shows(0.28, 0.2731) and not shows(0.04, 0.0349) and not shows(-0.27, 0.2731)
    with pytest.raises(AssertionError):
        assert_shows("a weight of 0.27 and 0.20", [0.2731, 0.21])
