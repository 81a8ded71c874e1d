"""What the backward pages place in one line where they used to loop or branch (issue 24: pages read as prose): the
gradient table (site_build/sections/backward.py) and the sentences of site_build/facts/dembed.py and llama_bwd.py,
each checked against the trace with NumPy, on runs that take each branch."""

from __future__ import annotations

import re
from html import unescape
from types import SimpleNamespace

import numpy as np
import pytest

import engine
import site_build.sections  # noqa: F401 - registers the blocks that read the facts
from engine.config import config_from_dict
from site_build.facts import dattn, dembed, dlogits, grads, llama_bwd
from site_build.macros import PageContext, page_globals
from site_build.mathslots import MathSlots


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


def macros_for(trace) -> SimpleNamespace:
    ctx = PageContext(trace, MathSlots())
    return SimpleNamespace(ctx=ctx, **page_globals(ctx))


def ids_of(trace) -> np.ndarray:
    return np.asarray(trace["input_ids"]).ravel()


def padded(trace) -> bool:
    """Whether a text of the batch is padded (its padding positions' targets are ignored)."""
    return bool((np.asarray(trace["targets"]) < 0).any())


def quoted(text: str) -> list[str]:
    """The words a sentence quotes, unescaped."""
    return [unescape(re.sub(r"<[^>]+>", "", w)) for w in re.findall(r'"([^"]*)"', str(text))]


def input_side(trace) -> np.ndarray:
    """The token table's gradient from the input side: its own record when tied, all of grad.wte when not."""
    return np.asarray(trace["grad.wte.from_embed" if "grad.wte.from_embed" in trace else "grad.wte"])


# -- gradient_table --------------------------------------------------------------------------------------------------
def test_the_gradient_table_has_a_row_per_parameter_with_its_shape_norm_and_largest_entry(trace):
    m = macros_for(trace)
    lines = str(m.gradient_table()).split("\n")
    assert lines[:2] == ["| parameter | shape | norm of the gradient | largest entry in size |",
                         "|:---|:---|---:|---:|"]
    grads = [names["grad"] for names in trace.index.values() if isinstance(names, dict)]
    assert len(lines) == 2 + len(grads) and len(grads) > 10
    for line, name in zip(lines[2:], grads):
        cells = [c.strip() for c in line.strip("|").split("|")]
        g = np.asarray(trace[name], dtype=float)
        assert cells[0] == f"`{name}`"
        sizes, axes = re.fullmatch(r"(.*) \((.*)\)", unescape(cells[1])).groups()
        assert [int(n) for n in sizes.split(" × ")] == list(g.shape)
        assert axes.split(" × ") == list(trace.record(name).axes)
        assert float(cells[2]) == pytest.approx(np.sqrt((g * g).sum()), abs=5e-5)
        assert float(cells[3]) == pytest.approx(np.abs(g).max(), abs=5e-5)
    assert not m.ctx.shown  # norms, not entries: the table shows no record's numbers, as the loop did not


def test_the_gradient_table_fills_the_page_block_on_a_backward_page(trace):
    """Through a page of `block: last` the macro takes no record names, so it is the same table."""
    ctx = PageContext(trace, MathSlots(), block="last")
    assert str(page_globals(ctx)["gradient_table"]()) == str(macros_for(trace).gradient_table())


# -- dembed's sentences ---------------------------------------------------------------------------------------------
def test_the_silent_rows_are_the_repeated_words_whose_input_row_is_zero(trace):
    counts = np.bincount(ids_of(trace), minlength=len(trace.labels["vocab"]))
    zero = np.abs(input_side(trace)).max(axis=1) == 0
    silent = [trace.labels["vocab"][v] for v in np.flatnonzero((counts > 1) & zero)]
    text = str(dembed.silent_rows(trace))
    paragraphs = [p for p in text.split("\n\n") if p]
    assert [quoted(p) for p in paragraphs] == [[w] for w in silent]
    assert all(p.endswith("because they\ncome after it).") for p in paragraphs)
    if padded(trace) and counts[0] > 1:
        assert silent == ["<pad>"] and "<pad>" not in text  # escaped


def test_the_example_row_is_a_word_never_read_and_the_sentence_says_whether_it_is_a_target(trace):
    raw = str(dembed.example_intro(trace))
    text = unescape(raw)
    (word,) = quoted(raw)
    v = trace.labels["vocab"].index(word)
    targets = np.asarray(trace["targets"]).ravel()
    assert v not in ids_of(trace)
    if v in targets:
        assert text == f'For example, the row of "{word}":'
        assert all(a in targets for a in set(range(len(trace.labels["vocab"]))) - set(ids_of(trace).tolist()))
    else:
        assert text.startswith(f'So the row of "{word}", never an input and never a target, is pushed away')


def test_the_check_names_a_word_read_once_whose_row_is_the_row_of_its_position(trace):
    raw = str(dembed.input_rows_check(trace))
    text = unescape(raw)
    ids = ids_of(trace)
    counts = np.bincount(ids, minlength=len(trace.labels["vocab"]))
    symbol = r"\nabla W_{te}^{\text{in}}" if "grad.wte.from_embed" in trace else r"\nabla W_{te}"
    assert f"${symbol}$" in text
    if (counts == 1).any():
        (word,) = quoted(raw)
        v = trace.labels["vocab"].index(word)
        assert counts[v] == 1
        grad_x = np.asarray(trace["grad.embed.out"]).reshape(ids.size, -1)
        assert np.array_equal(input_side(trace)[v], grad_x[int(np.flatnonzero(ids == v)[0])])
    else:
        assert text.startswith("Every input word here appears more than once") and counts[ids].min() >= 2


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
