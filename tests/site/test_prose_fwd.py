"""The forward pages' block macros (site_build/sections/forward.py), which place what a page used to build with a loop:
the tables and listings they write hold the trace's numbers, worked out here with NumPy from the records (the
embeddings, the masked scores, the attention weights, the config's heads), not read from the facts the macros use."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

import engine
import site_build.sections  # noqa: F401 - registers the blocks that read the facts
from engine.config import config_from_dict
from site_build.format import html_words
from site_build.macros import MacroError, PageContext, page_globals
from site_build.mathslots import MathSlots

WORDS = [f"w{i}" for i in range(70)]
CONFIGS = {
    "gpt-2, one short text": {"model": {"d_model": 8, "n_heads": 2, "d_ff": 32, "n_positions": 12},
                              "data": {"texts": ["the cat sat on the mat"]}, "train_steps": 0},
    "gpt-2, a padded batch, wide rows, a long text, a big vocabulary": {
        "model": {"d_model": 24, "n_heads": 3, "d_ff": 8, "n_positions": 24,
                  "vocab": ["<pad>", "<bos>", "<eos>", *WORDS]},
        "data": {"texts": [" ".join(WORDS[:20]), "w3 w4"]}, "train_steps": 0},
    "llama, grouped heads, wide rows, a shorter text 1": {
        "model": {"arch": "llama", "d_model": 32, "n_heads": 4, "n_kv_heads": 2, "d_ff": 16, "n_positions": 12},
        "data": {"texts": ["the dog", "the cat sat on the mat"]}, "train_steps": 0},  # text 1 the shorter
    "llama, one word": {"model": {"arch": "llama", "d_model": 8, "n_heads": 2, "d_ff": 16},
                        "data": {"texts": ["cat"]}, "train_steps": 0},
}
NUMBER = r"-?\d+\.\d+"


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def macros_for(trace) -> SimpleNamespace:
    ctx = PageContext(trace, MathSlots())
    return SimpleNamespace(ctx=ctx, **page_globals(ctx))


def real(trace, b: int = 0) -> int:
    """The real (not padded) positions of text b."""
    return int((np.asarray(trace["targets"][b]) >= 0).sum())


def table_rows(md: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (after the header and the alignment row)."""
    rows = [line for line in md.split("\n") if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def aligned_rows(tex: str) -> list[str]:
    r"""The rows of a `$$ \begin{aligned} ... $$` listing, checked for its frame and its `\\` between rows."""
    assert tex.startswith("$$\n\\begin{aligned}\n") and tex.endswith("\\end{aligned}\n$$")
    rows = tex.split("\n")[2:-2]
    assert all(r.endswith(" \\\\") for r in rows[:-1]) and rows[-1].endswith(" ")
    return [r.removesuffix(" \\\\").strip() for r in rows]


def listed_indices(n: int, keep: list[int]) -> list[int | None]:
    """What a listing writes out: all of n up to 16, else the first and last 3 and `keep`, None for each gap."""
    if n <= 16:
        return list(range(n))
    picked = sorted({0, 1, 2, n - 3, n - 2, n - 1, *keep})
    out: list[int | None] = []
    for k, i in enumerate(picked):
        if k and i != picked[k - 1] + 1:
            out.append(None)
        out.append(i)
    return out


def test_every_head_places_every_records_head_in_turn(trace) -> None:
    m = trace.config["model"]
    names = ["L0.attn.k_heads", "L0.attn.v"] if m.get("arch") == "llama" else ["L0.attn.q", "L0.attn.k", "L0.attn.v"]
    heads = m["n_kv_heads"] if m.get("arch") == "llama" else m["n_heads"]
    page = macros_for(trace)
    html = str(page.every_head(names, titled=True))
    # outside a page each matrix is its HTML: its record and head, in the order a loop over the heads would place them
    placed = re.findall(r'<table class="matrix" data-record="([^"]+)" data-at="0,(\d+)"', html)
    assert placed == [(name, str(h)) for h in range(heads) for name in names]
    assert re.findall(r"^### Head (\d+)$", html, re.M) == [str(h) for h in range(heads)]
    assert "### Head" not in str(macros_for(trace).every_head(names))
    assert set(names) <= page.ctx.shown
    with pytest.raises(MacroError, match="has no heads axis"):
        macros_for(trace).every_head(["L0.attn.k", "embed.out"])
    with pytest.raises(MacroError, match="give a record name or a list"):
        macros_for(trace).every_head([])
    if m.get("arch") == "llama" and m["n_kv_heads"] != m["n_heads"]:
        with pytest.raises(MacroError, match="different numbers of heads"):
            macros_for(trace).every_head(["L0.attn.q", "L0.attn.k"])


def test_vocab_table_lists_the_vocabulary_by_id(trace) -> None:
    vocab = trace.labels["vocab"]
    rows = table_rows(str(macros_for(trace).vocab_table()))
    ids = list(range(len(vocab))) if len(vocab) <= 64 else [*range(24), None, *range(len(vocab) - 8, len(vocab))]
    assert len(rows) == len(ids)
    for (i, word), want in zip(rows, ids):
        assert (i, word) == (("⋮", "⋮") if want is None else (str(want), str(html_words(vocab[want]))))


def test_position_tables_hold_each_texts_inputs_and_targets(trace) -> None:
    md = str(macros_for(trace).position_tables())
    ids, targets, labels = np.asarray(trace["input_ids"]), np.asarray(trace["targets"]), trace.labels
    texts = ids.shape[0]
    assert re.findall(r"^\*\*(Text \d+):\*\*$", md, re.M) == ([f"Text {b + 1}" for b in range(texts)] if texts > 1
                                                              else [])
    tables = md.split("| position $t$")[1:]
    assert len(tables) == texts
    for b, table in enumerate(tables):
        rows = table_rows("| position" + table)
        assert [int(r[0]) for r in rows] == list(range(ids.shape[1]))
        assert [int(r[2]) for r in rows] == ids[b].tolist() and [int(r[4]) for r in rows] == targets[b].tolist()
        assert [r[1] for r in rows] == [str(html_words(w)) for w in labels["inputs"][b]]
        assert [r[3] for r in rows] == [str(html_words(w)) for w in labels["targets"][b]]
        # the next input is the target: the shift by one place the page explains
        assert ids[b, 1:real(trace, b)].tolist() == targets[b, :real(trace, b) - 1].tolist()


def test_norm_rows_work_the_row_out_with_numpy(trace) -> None:
    m = trace.config["model"]
    r = min(2, real(trace) - 1)  # the third position, or the last real one
    x = np.asarray(trace["embed.out"][0, r], dtype=float)  # what block 0's ln_1 normalises
    if m.get("arch") == "llama":
        under, mu = np.sqrt((x * x).mean() + m["norm_eps"]), 0.0
    else:
        under, mu = np.sqrt(x.var() + 1e-5), x.mean()
    rows = aligned_rows(str(macros_for(trace).norm_rows()))
    c = min(3, x.size - 1)
    assert [None if row == r"&\;\;\vdots" else int(re.match(rf"\\hat x_{{ {r},(\d+) }}", row)[1]) for row in rows] \
        == listed_indices(x.size, [c])
    for row in rows:
        if row.startswith(r"\hat"):
            j = int(re.match(rf"\\hat x_{{ {r},(\d+) }}", row)[1])
            numbers = [float(v) for v in re.findall(NUMBER, row.split("&=")[1])]
            expected = [x[j], under, (x[j] - mu) / under] if m.get("arch") == "llama" else \
                [x[j], mu, under, (x[j] - mu) / under]
            assert numbers == pytest.approx(expected, abs=6e-5)


def test_softmax_rows_work_the_row_out_with_numpy(trace) -> None:
    t = real(trace) - 1  # the query that sees every real position
    key = min(1, t)
    s = np.asarray(trace["L0.attn.masked"][0, 0, t], dtype=float)
    e = np.exp(s - s[:t + 1].max())
    weights = e / e.sum()
    assert weights == pytest.approx(np.asarray(trace["L0.attn.weights"][0, 0, t]), abs=1e-9)
    rows = aligned_rows(str(macros_for(trace).softmax_rows()))
    listed = [None if row == r"&\;\;\vdots" else int(re.match(rf"A_{{ {t},(\d+) }}", row)[1]) for row in rows]
    assert listed == listed_indices(s.size, [key, t])
    for j, row in zip(listed, rows):
        if j is None:
            continue
        if j > t:  # a masked key
            assert row.endswith(rf"\frac{{e^{{-\infty}}}}{{ {e.sum():.4f} }} = 0")
            continue
        numbers = [float(v) for v in re.findall(NUMBER, row.split("&=")[1])]
        assert numbers == pytest.approx([s[j], s[:t + 1].max(), e.sum(), e[j], e.sum(), weights[j]], abs=6e-5)


def test_strongest_keys_names_each_heads_largest_weight(trace) -> None:
    page = macros_for(trace)
    md = str(page.strongest_keys())
    A = np.asarray(trace["L0.attn.weights"][0], dtype=float)
    heads = A.shape[0]
    header = md.split("\n")[0]
    assert re.findall(r"head (\d+): strongest key \(weight\)", header) == [str(h) for h in range(heads)]
    rows = table_rows(md)
    assert len(rows) == real(trace)
    words = trace.labels["inputs"][0]
    for q, row in enumerate(rows):
        assert row[0] == f"{q} “{html_words(words[q])}”"
        for h, cell in enumerate(row[1:]):
            k = int(A[h, q].argmax())
            assert cell.startswith(f"{k} “{html_words(words[k])}” (")
            assert f'data-at="0,{h},{q},{k}"' in cell and f"{A[h, q, k]:.2f}" in cell
    assert "L0.attn.weights" in page.ctx.shown


def test_kv_groups_give_each_key_value_head_its_query_heads(trace) -> None:
    m = trace.config["model"]
    if m.get("arch") != "llama":
        pytest.skip("key/value heads are a Llama run's")
    r = m["n_heads"] // m["n_kv_heads"]
    rows = table_rows(str(macros_for(trace).kv_groups()))
    assert [int(g) for g, _ in rows] == list(range(m["n_kv_heads"]))
    for g, heads in rows:
        read = [h for h in range(m["n_heads"]) if h // r == int(g)]  # Hugging Face's repeat_kv
        assert [int(h) for h in re.split(r", | and ", heads)] == read


# -- the facts that state a config's variant of a sentence ------------------------------------------------------------
def test_targets_note_counts_the_real_targets(trace) -> None:
    from site_build.facts import logits

    targets = np.asarray(trace["targets"])
    n = int((targets >= 0).sum())
    note = str(logits.targets_note(trace))
    assert f"$N = {n}$" in note
    assert ("padded positions" in note) == (targets.shape[0] > 1 or n < targets.shape[1])


def test_out_entries_says_where_the_output_layer_starts(trace) -> None:
    from site_build.facts import logits

    assert str(logits.out_entries(trace)).startswith("Its entries are random at the start")  # no checkpoint here


@pytest.mark.parametrize("layers", [2, 3])
def test_other_blocks_lead_names_the_other_blocks(layers: int) -> None:
    from site_build.facts import ln

    for model, own in (({}, "$\\gamma$ and $\\delta$"), ({"arch": "llama"}, "$\\gamma$;")):
        trace = engine.run(config_from_dict({"model": {**model, "d_model": 8, "n_heads": 2, "n_layers": layers},
                                             "data": {"texts": ["the cat"]}, "train_steps": 0}))
        lead = ln.other_blocks_lead(trace)
        assert lead.startswith("Block 1 normalises" if layers == 2 else f"Blocks 1 to {layers - 1} normalise")
        assert own in lead


def test_share_compares_the_feed_forward_weights_with_attentions(trace) -> None:
    from site_build.facts import ffn

    if trace.config["model"].get("arch") == "llama":
        pytest.skip("the GPT-2 page's sentence")
    size = {r.name: int(np.asarray(trace[r.name]).size) for r in trace.records if r.op == "param"}
    mlp = sum(v for k, v in size.items() if k.startswith("L0.mlp."))
    att = sum(v for k, v in size.items() if k.startswith("L0.attn."))
    share = str(ffn.share(trace))
    if mlp > att:
        assert share.startswith("it holds more") and f"({mlp} here, against {att} for attention)" in share
    else:
        assert share.startswith("in GPT-2") and f"it has {mlp}," in share and share.endswith(f"attention's {att}.")


# -- the clauses that replaced the loops inside sentences -------------------------------------------------------------
def test_a_cut_listing_names_what_it_keeps_besides_its_ends(trace):
    """ln.listing_extra and attn.listing_extra name exactly the elements a cut listing keeps between its ends (the
    worked element; for attention the worked key and the last visible position), and nothing for a whole one."""
    from site_build.facts import attn, ln

    C, T = trace.config["model"]["d_model"], int(np.shape(trace["input_ids"])[1])
    kept = [k for k in ln.listing(trace) if k is not None and 3 <= k < C - 3] if C > 16 else []
    assert ln.listing_extra(trace) == "".join(f" and element {k}, worked through above" for k in kept)
    clause = r", entry (\d+)( \(worked above\)| \(the last position \d+ can see\))?"
    said = re.findall(clause, attn.listing_extra(trace))
    middle = [k for k in attn.listing(trace) if k is not None and 3 <= k < T - 3] if T > 16 else []
    assert [int(k) for k, _ in said] == middle
    for k, note in said:
        want = " (worked above)" if int(k) == attn.key(trace) else f" (the last position {attn.row(trace)} can see)"
        assert note == (want if int(k) in (attn.key(trace), attn.row(trace)) else "")


def test_the_concatenation_names_every_head_after_the_first_with_its_shape(trace):
    from site_build.facts import attn

    m = trace.config["model"]
    T, D = int(np.shape(trace["input_ids"])[1]), m["d_model"] // m["n_heads"]
    heads = re.findall(r"\\,\|\\,\\underbrace\{Z_\{ (\d+) \}\}_\{ (\d+)\\times(\d+) \}", attn.other_heads_tex(trace))
    assert [(int(h), int(t), int(d)) for h, t, d in heads] == [(h, T, D) for h in range(1, m["n_heads"])]


def test_a_quoted_word_list_quotes_and_isolates_each_text():
    from site_build.macros.text import word_list

    texts = ["the <b>cat</b>", "a\u202eb", "x"]
    assert str(word_list(texts, ", ", quoted=True)) == ", ".join(f"“{html_words(t)}”" for t in texts)
    listed = str(word_list(texts, ", ", quoted=True))
    assert "<bdi>" in listed and "<b>" not in listed
