"""What the backward pages place in one line where they used to loop or branch (issue 24: pages read as prose): the
sentences of site_build/facts/dlogits.py, dattn.py and llama_bwd.py, each checked against the trace with NumPy, on
runs that take each branch."""

from __future__ import annotations

import re

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from site_build.facts import dattn, dlogits, grads, llama_bwd


def run(model: dict | None = None, texts: list[str] | None = None):
    return engine.run(config_from_dict({"seed": 5, "model": {"d_model": 8, "n_heads": 2, "d_ff": 16, **(model or {})},
                                        "data": {"texts": texts or ["the cat", "the dog ran on the mat"]},
                                        "train_steps": 0}))


RUNS = {
    "padding, tied": {},
    "three blocks, untied": {"model": {"n_layers": 3, "tie_embeddings": False}},
    "every input read twice": {"texts": ["a b a", "b a b"]},
    "every absent word a target": {"model": {"vocab": ["<pad>", "<bos>", "a", "b", "c"]}, "texts": ["a b c", "a b"]},
}


@pytest.fixture(scope="module", params=list(RUNS))
def trace(request: pytest.FixtureRequest):
    return run(**RUNS[request.param])


# -- dlogits' sentences --------------------------------------------------------------------------------------------
def test_the_batch_note_counts_the_texts_of_the_batch(trace):
    n = np.asarray(trace["input_ids"]).shape[0]
    text = dlogits.batch_note(trace)
    assert (text == "") == (n == 1)
    if n > 1:
        words = ["", "one", "two", "three", "four"]
        assert text.startswith(f"\nThere are {words[n]} texts in this batch; the tables show text 1.")


# -- dattn's sentences -----------------------------------------------------------------------------------------------
def test_the_block_note_names_the_last_block_and_the_ones_below(trace):
    layers = trace.config["model"]["n_layers"]
    text = dattn.block_note(trace)
    if layers == 1:
        assert text == ""
    else:
        assert text.startswith(f"With three blocks, this is block {layers - 1}, the last; blocks 1 and 0 go through")


@pytest.mark.parametrize("texts", [["the cat sat on the mat"], ["cat"]], ids=["six positions", "one position"])
def test_the_masked_keys_are_those_whose_weight_the_worked_query_gives_zero(texts):
    trace = run(texts=texts)
    query = grads.query(trace)
    weights = np.asarray(trace[f"L{trace.config['model']['n_layers'] - 1}.attn.weights"])[0, 0, query]
    hidden = np.flatnonzero(weights == 0).tolist()
    text = dattn.masked_keys(trace)
    if not hidden:
        assert text == ""
        return
    keys = re.search(r"masked keys? (\d+)(?: to (\d+))? are all", text)
    first, last = int(keys[1]), int(keys[2] or keys[1])
    assert list(range(first, last + 1)) == hidden
    assert text.endswith(f"because {'its' if len(hidden) == 1 else 'their'} weight is zero.\n")


# -- llama_bwd's sentences ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [(4, 2), (4, 1), (2, 2)], ids=["two groups", "one group", "no grouping"])
def test_the_listed_groups_are_the_query_heads_that_read_each_key_value_head(heads):
    n_heads, n_kv = heads
    trace = engine.run(config_from_dict({"model": {"arch": "llama", "n_heads": n_heads, "n_kv_heads": n_kv},
                                         "train_steps": 0}))
    k, k_rep = np.asarray(trace["L0.attn.k"]), np.asarray(trace["L0.attn.k_rep"])
    parts = llama_bwd.kv_groups(trace).split("; ")
    assert len(parts) == n_kv
    for g, part in enumerate(parts):
        found = re.fullmatch(r"key/value head (\d+) to query\nheads (.*)", part)
        assert found and int(found[1]) == g
        listed = [int(h) for h in re.split(r", | and ", found[2])]
        assert listed == [h for h in range(n_heads) if np.array_equal(k_rep[:, h], k[:, g])]
