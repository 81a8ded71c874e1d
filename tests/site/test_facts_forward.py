"""The forward pages' facts (site_build/facts: run, embed, attn, ffn, logits) agree with what they claim, checked
against the trace and against arithmetic of their own: counts add up, the positions a fact names hold the word it
names, the worked entries are real positions, and GPT-2's parameter count comes out of the model's sizes."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import attn, embed, ffn, logits, run

CONFIGS = {
    "one text": {"model": {"d_model": 8, "n_heads": 2, "d_ff": 16, "n_positions": 12},
                 "data": {"texts": ["the cat sat on the mat the cat ran"]}, "train_steps": 1},
    "a padded batch, untied, two blocks": {
        "model": {"d_model": 12, "n_heads": 3, "d_ff": 8, "n_layers": 2, "tie_embeddings": False},
        "data": {"texts": ["the dog", "the dog ran on the mat"]}, "train_steps": 1},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def test_sizes_and_counts(trace) -> None:
    m = trace.config["model"]
    C, F, V, P, L = m["d_model"], m["d_ff"], len(trace.labels["vocab"]), m["n_positions"], m["n_layers"]
    assert run.D(trace) * run.H(trace) == run.C(trace) == C
    # GPT-2's parameter count: wte, wpe, per block 4C² + 2CF + 9C + F (12C² + 13C when F = 4C), ln_f; plus the
    # output layer when untied
    expected = V * C + P * C + L * (4 * C * C + 2 * C * F + 9 * C + F) + 2 * C + (0 if run.tied(trace) else V * C)
    assert run.weights(trace) == expected
    assert run.tensors(trace) == 2 + 12 * L + 2 + (0 if run.tied(trace) else 1)
    real = [sum(1 for w in row if w != "<ignored>") for row in trace.labels["targets"]]
    assert run.N(trace) == sum(real)
    assert run.n0(trace) == real[0]
    assert run.padded(trace) == (min(real) < run.T(trace))
    # a block's weights: attention's, the feed-forward network's and its two LayerNorms' γ and δ
    block = sum(trace[r.name].size for r in trace.records if r.op == "param" and r.name.startswith("L0."))
    assert ffn.params(trace) + ffn.attn_params(trace) + 4 * C == block


def test_repeated_tokens(trace) -> None:
    words = trace.labels["inputs"][0][:run.n0(trace)]
    reps = embed.repeats(trace)
    assert [r.word for r in reps] == list(dict.fromkeys(w for w in words if words.count(w) > 1))
    for r in reps:
        assert r.count == len(r.positions) == words.count(r.word) >= 2
        assert all(words[t] == r.word for t in r.positions)


def test_inputs_and_targets(trace) -> None:
    for b in range(run.B(trace)):
        pairs = embed.pairs(trace, b)
        assert [p.t for p in pairs] == list(range(run.T(trace)))
        for p, q in zip(pairs, pairs[1:]):
            if q.target_id >= 0:  # the target at t is the input at t + 1
                assert p.target == q.input and p.target_id == q.input_id
    rows = embed.vocab_rows(trace)
    assert len(rows) == embed.vocab_shown(trace) + embed.vocab_cut(trace)
    assert embed.unused(trace) + run.T(trace) == run.P(trace)


def test_worked_entries_are_real_positions(trace) -> None:
    n = run.n0(trace)
    for fact in (embed.row, attn.qkv_row, attn.row, attn.key, attn.out_row, ffn.row, logits.row):
        assert 0 <= fact(trace) < n
    assert logits.target(trace) == int(trace["targets"][0, logits.row(trace)]) >= 0


def test_softmax_row_adds_up(trace) -> None:
    entries = [e for e in attn.softmax_row(trace) if e is not None]
    assert all(e.weight == 0 for e in entries if not e.visible)
    visible = [e for e in entries if e.visible]
    assert len(visible) == attn.row(trace) + 1  # the last real position sees every real one before it
    assert max(e.exp for e in visible) == pytest.approx(1)  # the largest score minus m: e⁰
    assert sum(e.weight for e in entries) == pytest.approx(attn.weights_total(trace)) == pytest.approx(1)


def test_best_and_worst_targets(trace) -> None:
    tp = trace["loss.target_prob"][0, :run.n0(trace)]
    assert tp[logits.best(trace)] == tp.max() and tp[logits.worst(trace)] == tp.min()
    assert logits.favourite(trace) == int(np.argmax(trace["probs"][0, logits.best(trace)]))


def test_gelu_counts_add_up(trace) -> None:
    u = trace["L0.mlp.fc"][0, :run.n0(trace)]
    assert ffn.entries(trace) == u.size
    assert ffn.negatives(trace) + ffn.positives(trace) + int((u == 0).sum()) == ffn.entries(trace)
    j = ffn.squashed(trace)
    assert j is None or (u[ffn.row(trace), j] < 0 and j != ffn.gelu_unit(trace))


@pytest.mark.parametrize("seed", [1, 2])  # seed 2: the unit worked in full has a negative input
def test_the_gelu_examples_are_labelled_by_the_sign_of_their_input(seed) -> None:
    """The first GELU example has a non-negative input whenever the row has one, and the page calls it negative
    exactly when it is; the second example ("and one with a negative input") is the row's first negative input."""
    trace = engine.run(config_from_dict({"seed": seed, "model": {"d_model": 8, "n_heads": 2, "d_ff": 16},
                                         "train_steps": 0}))
    u = np.asarray(trace["L0.mlp.fc"][0, ffn.row(trace)])
    first, second = u[ffn.gelu_unit(trace)], ffn.squashed(trace)
    assert (first >= 0) == bool((u >= 0).any())
    assert ("negative" in ffn.gelu_example(trace)) == (first < 0)
    negatives = np.flatnonzero(u < 0)
    if first >= 0 and negatives.size:
        assert second == negatives[0] and "positive" in ffn.gelu_example(trace)
    else:
        assert second is None


def test_the_inputs_are_counted_per_text(trace) -> None:
    """'the 6 input tokens of each of the two texts' only when both have 6: texts of different lengths are named
    with their own lengths and the padding."""
    real = [sum(1 for w in row if w != "<ignored>") for row in trace.labels["targets"]]
    phrase = run.inputs_phrase(trace)
    if len(real) == 1:
        assert phrase == f"the {real[0]} input tokens"
    elif len(set(real)) == 1:
        assert phrase.startswith(f"the {real[0]} input tokens of each of the ")
    else:
        assert " and ".join(map(str, real)) in phrase and f"padded to {run.T(trace)} positions" in phrase
        assert "each of" not in phrase


def test_the_embedding_page_says_how_the_texts_became_rows(trace) -> None:
    said = str(embed.tokenised(trace))
    texts = trace.config["data"]["texts"]
    assert all(f'"{t}"' in said for t in texts)
    assert ("shorter texts are\npadded with `<pad>`" in said) == run.padded(trace)
    assert bool(embed.padding_note(trace)) == run.padded(trace)
    copies = str(embed.copies(trace))
    assert copies.count("The token “") == len(embed.repeats(trace))
    for r in embed.repeats(trace):
        assert f"“{r.word}” appears at positions {', '.join(map(str, r.positions[:-1]))}" in copies
    unused = embed.unused_rows(trace)
    assert (f"Rows ${run.T(trace)}$ to ${run.P(trace) - 1}$ of $W_{{pe}}$" in unused) == (embed.unused(trace) > 1)
    assert f"all\n{run.n0(trace)} guesses" in embed.every_position(trace)


def test_a_single_word_makes_one_guess() -> None:
    trace = engine.run(config_from_dict({"data": {"texts": ["cat", "the dog"]}, "train_steps": 0}))
    said = str(embed.every_position(trace))
    assert said.startswith("Text 1 has a single word, so there is one guess to make")
    assert embed.rows_used(trace) == "The inputs are 2 tokens long, so this step uses rows $0$ to $1$:"
