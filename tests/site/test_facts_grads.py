"""The backward pages' facts (site_build/facts/grads.py, dlogits.py, dffn.py, dattn.py, dembed.py), checked against
what the maths says or against a second, independent computation, on runs with two texts of different lengths
(so with padding, repeated words and words never read), with one block and with three: the backward pages work
through the last block, the first the backward pass meets."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build import format as fmt
from site_build.facts import dattn, dembed, dffn, dlogits, grads


@pytest.fixture(scope="module", params=[1, 3], ids=["one block", "three blocks"])
def trace(request: pytest.FixtureRequest):
    cfg = config_from_dict({"seed": 5, "model": {"d_model": 8, "n_heads": 2, "d_ff": 16, "n_layers": request.param,
                                                 "n_positions": 12},
                            "data": {"texts": ["the cat", "the dog ran on the mat"]}, "train_steps": 0})
    return engine.run(cfg)


def last(trace) -> int:
    """The block the backward pages work through: the last, worked out here from the config."""
    return trace.config["model"]["n_layers"] - 1


def at_last(trace, name: str) -> np.ndarray:
    """Record `name` of the last block, `L#` in the name standing for its number."""
    return np.asarray(trace[name.replace("L#", f"L{last(trace)}")], dtype=float)


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
    u = at_last(trace, "L#.mlp.fc")[0]
    flips = (at_last(trace, "grad.L#.mlp.fc")[0] * at_last(trace, "grad.L#.mlp.gelu")[0]) < 0
    assert dffn.flips(trace) == int(flips.sum())
    assert dffn.entries(trace) == grads.real(trace) * u.shape[-1]
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


def test_the_worked_hidden_unit_is_the_largest_gradient_entry_of_the_last_block(trace):
    g = at_last(trace, "grad.L#.mlp.gelu")[0][grads.row(trace)]
    assert abs(g[dffn.unit(trace)]) == np.abs(g).max() > 0


def test_the_attention_facts_are_those_of_the_last_block(trace):
    """dattn's figures, worked out again with NumPy from the last block's records."""
    g, w = at_last(trace, "grad.L#.resid_1")[0], at_last(trace, "L#.attn.c_proj.weight")
    right = at_last(trace, "grad.L#.attn.merged")[0]
    assert np.allclose(g @ w.T, right, atol=1e-15)
    wrong = g @ w
    assert dattn.transpose_error(trace) == pytest.approx(np.linalg.norm(wrong - right) / np.linalg.norm(right) * 100)
    weights, grad_weights = at_last(trace, "L#.attn.weights")[0], at_last(trace, "grad.L#.attn.weights")[0]
    assert dattn.above(trace) == int(((grad_weights != 0) & (weights == 0)).sum()) > 0
    masked = at_last(trace, "grad.L#.attn.masked")
    assert dattn.masked_row_sum(trace) == pytest.approx(np.abs(masked.sum(axis=-1)).max(), abs=1e-18)
    assert dattn.mask_changes_nothing(trace) == bool((at_last(trace, "grad.L#.attn.scaled") == masked).all())
    bias, c = at_last(trace, "grad.L#.attn.c_attn.bias"), grads.d_model(trace)
    q, k, v = bias[:c], bias[c:2 * c], bias[2 * c:]
    assert dattn.key_bias_max(trace) == np.abs(k).max()
    assert (dattn.query_bias_index(trace), dattn.key_bias_index(trace), dattn.value_bias_index(trace)) == \
        (int(np.abs(q).argmax()), c + int(np.abs(k).argmax()), 2 * c + int(np.abs(v).argmax()))
    assert (dattn.query_entries(trace), dattn.value_entries(trace)) == (f"0 to {c - 1}", f"{2 * c} to {3 * c - 1}")


def test_the_walked_block_is_the_last_and_its_input_is_the_block_below(trace):
    """The backward pages' block is the last; the gradient of its input X is the embeddings' under one block, else
    the output's of the block below, the sum of the residual's share and the one through ln_1."""
    assert grads.walked(trace) == last(trace) == grads.last(trace)
    assert grads.walked_name(trace, "grad.L{block}.mlp.fc") == f"grad.L{last(trace)}.mlp.fc"
    assert grads.lower_layers(trace) == list(range(last(trace) - 1, -1, -1))
    below = "embed.out" if last(trace) == 0 else f"L{last(trace) - 1}.resid_2"
    assert (grads.input_grad(trace), grads.input_via_ln(trace)) == (f"grad.{below}", f"grad.{below}.via_ln")
    via = trace.record(grads.input_via_ln(trace))
    assert via.inputs[0] == f"grad.L{last(trace)}.ln_1.xhat"  # through the walked block's ln_1
    total = np.asarray(trace[grads.input_via_ln(trace)]) + at_last(trace, "grad.L#.resid_1")
    assert np.allclose(np.asarray(trace[grads.input_grad(trace)]), total, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("layers", "lower", "order"), [
    (2, "block 0 goes", "block 1 first, then block 0"),
    (3, "blocks 1 and 0 go", "block 2, then block 1, then block 0"),
    (5, "blocks 3 down to 0 go", "block 4 first, then each block below it down to block 0"),
])
def test_the_blocks_below_the_last_are_named_in_backward_order(layers, lower, order):
    """The backward pages work through the last block and name the others in the order the backward pass takes
    them, down to block 0."""
    from types import SimpleNamespace

    trace = SimpleNamespace(config={"model": {"n_layers": layers}})
    assert grads.walked(trace) == layers - 1
    assert grads.lower_blocks_after(trace) == \
        f"{lower} through exactly the same steps after it, with {'its' if layers == 2 else 'their'} own numbers"
    assert grads.lower_layers(trace) == list(range(layers - 2, -1, -1))
    assert grads.backward_order(trace) == order


@pytest.mark.parametrize("raw", [
    {"train_steps": 1},
    {"data": {"texts": ["the cat", "the dog ran on the mat"]}, "model": {"n_positions": 9},
     "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0}, "train_steps": 1},
    {"model": {"n_positions": 7}, "optimizer": {"name": "adam", "weight_decay": 0.05}, "train_steps": 1},
], ids=["default", "two texts, sgd without decay", "adam, a full table"])
def test_the_sentences_follow_the_batch_the_table_and_the_optimizer(raw):
    """The embedding and backward pages' config sentences (facts instead of if/else in the page) say what the
    config and the trace say: the texts summed, the rows no text reaches and what the step does to them, and
    whether the largest gradient means the largest step."""
    t = engine.run(config_from_dict(raw))
    n = len(t.labels["inputs"])
    for sentence in (dembed.batch_note(t), grads.batch_tables(t), grads.batch_heads(t)):
        assert (sentence == "") == (n == 1)
        assert n == 1 or f"The batch has {'two' if n == 2 else n} texts" in sentence
    assert (f"sum over the {n} texts" in dembed.wpe_row_sum(t)) == (n > 1)
    unused = t.config["model"]["n_positions"] - np.shape(t["input_ids"])[1]
    zero = unused > 0 and not np.asarray(t["grad.wpe"])[-unused:].any()
    fate = dembed.unused_rows_fate(t)
    assert (fate != "") == zero
    decays = t.config["optimizer"]["weight_decay"] > 0
    assert not zero or ((f"those {unused} rows" if unused > 1 else "that row") in fate
                        and ("decay alone" in fate) == decays)
    assert ("plain SGD" in dembed.steepest_step(t)) == (t.config["optimizer"]["name"] == "sgd")
    assert t.config["optimizer"]["name"] == "sgd" or {"adam": "Adam", "adamw": "AdamW"}[t.config["optimizer"]["name"]] \
        in dembed.steepest_step(t)
