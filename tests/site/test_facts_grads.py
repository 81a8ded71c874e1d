"""The backward pages' facts (site_build/facts/grads.py, dlogits.py, dffn.py, dattn.py, dembed.py), checked against
what the maths says or against a second, independent computation, on a run with two texts of different lengths
(so with padding, repeated words and words never read)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build import format as fmt
from site_build.facts import dattn, dembed, dffn, dlogits, grads


@pytest.fixture(scope="module")
def trace():
    cfg = config_from_dict({"seed": 5, "model": {"d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": 1,
                                                 "n_positions": 12},
                            "data": {"texts": ["the cat", "the dog ran on the mat"]}, "train_steps": 0})
    return engine.run(cfg)


def test_the_weakest_position_is_a_real_one_whose_target_got_the_least_probability(trace):
    real = np.asarray(trace["targets"][0]) >= 0
    probs = np.asarray(trace["loss.target_prob"][0])
    t = dlogits.weakest(trace)
    assert real[t]
    assert probs[t] == probs[real].min()


def test_the_rows_that_the_algebra_says_add_up_to_zero_do_so_up_to_rounding(trace):
    assert dlogits.largest_row_sum(trace) < 1e-12
    assert dlogits.ln_row_sum(trace) < 1e-12
    assert dattn.masked_row_sum(trace) < 1e-12
    assert dattn.key_bias_zero(trace) and dattn.key_bias_max(trace) < 1e-12
    assert dlogits.ln_largest(trace) > 1e-6  # the gradient itself is not zero


def test_the_negative_entries_of_the_layernorm_jacobian_are_counted_from_the_matrix_itself(trace):
    xh = np.asarray(trace["ln_f.xhat"][0][grads.row(trace)])
    c = xh.size
    jac = (np.eye(c) - 1 / c - np.outer(xh, xh) / c) * dlogits.inverse_sd(trace)
    off = ~np.eye(c, dtype=bool)
    assert dlogits.negative(trace) == int((jac[off] < 0).sum())
    assert dlogits.off_diagonal(trace) == int(off.sum())


def test_the_gradient_flips_sign_through_the_gelu_exactly_left_of_its_minimum(trace):
    u = np.asarray(trace["L0.mlp.fc"][0])
    flips = (np.asarray(trace["grad.L0.mlp.fc"][0]) * np.asarray(trace["grad.L0.mlp.gelu"][0])) < 0
    assert dffn.flips(trace) == int(flips.sum())
    assert np.all(u[flips] < -0.75)  # GELU's minimum is at u ≈ -0.7518
    if dffn.flips(trace):
        assert flips[dffn.flip_position(trace), dffn.flip_unit(trace)]
        assert not flips[:dffn.flip_position(trace)].any()


def test_the_words_of_the_embedding_page_add_up(trace):
    vocab = trace.labels["vocab"]
    ids = np.asarray(trace["input_ids"]).ravel()
    read = set(ids.tolist())
    assert dembed.absent(trace) == len(vocab) - len(read)
    assert dembed.targeted(trace) + dembed.plain(trace) == dembed.absent(trace)
    assert dembed.repeated(trace) == sum(1 for v in read if (ids == v).sum() > 1)
    assert dembed.shared_count(trace) == int((ids == dembed.shared(trace)).sum()) > 1
    # the second text is longer, so the first has padding: a padding word read twice or more whose row is zero
    rows = np.abs(np.asarray(trace[dembed.input_grad(trace)])).max(axis=1)
    for word in dembed.silent_words(trace):
        assert rows[vocab.index(word)] == 0
    assert dembed.unused(trace) == dembed.table_rows(trace) - grads.positions(trace) > 0
    assert dembed.unused_zero(trace)
    assert grads.ignored(trace) > 0 and "padding" in dlogits.padding(trace)


def test_a_list_of_words_is_quoted_escaped_and_cut_after_twelve():
    class Words:
        labels = {"vocab": ["a", "b&c", "d"] + [f"w{i}" for i in range(20)]}

    amp = fmt.html_words("b&c")
    assert str(dembed._quoted(Words, [0])) == '"a"'
    assert str(dembed._quoted(Words, [0, 1])) == f'"a" and "{amp}"'
    assert str(dembed._quoted(Words, [0, 1, 2])) == f'"a", "{amp}" and "d"'
    long = str(dembed._quoted(Words, list(range(14))))
    assert long.count('"') == 24 and long.endswith('"w8", and 2 more words')
    assert str(dembed._quoted(Words, list(range(13)))).endswith(", and 1 more word")


@pytest.mark.parametrize(("layers", "upper", "order"), [
    (2, "block 1 goes", "block 1 first, then block 0"),
    (3, "blocks 2 and 1 go", "block 2, then block 1, then block 0"),
    (5, "blocks 4 down to 1 go", "block 4 first, then each block below it down to block 0"),
])
def test_the_blocks_above_block_0_are_named_in_backward_order(layers, upper, order):
    """The backward pages name the blocks in the order the backward pass takes them, last block first."""
    from types import SimpleNamespace

    trace = SimpleNamespace(config={"model": {"n_layers": layers}})
    assert grads.upper_blocks_first(trace).startswith(upper + " through exactly the same steps")
    assert grads.upper_blocks_first(trace).endswith("before block 0 does")
    assert grads.backward_order(trace) == order
