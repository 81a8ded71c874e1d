"""Macro output: matrix structure, selection, elision, escaping, and error messages."""

from __future__ import annotations

import re
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import engine
import site_build.sections  # noqa: F401 - registers the blocks that read the facts
from engine.config import config_from_dict
from engine.notation import latex_escape
from site_build.format import html_text
from site_build.macros import MacroError, PageContext, page_globals
from site_build.mathslots import SLOT_RE, MathSlots


def macros_for(trace, slots: MathSlots | None = None) -> SimpleNamespace:
    """Every registered macro, bound to a fresh context of `trace` (as a page sees them), plus `ctx`."""
    ctx = PageContext(trace, slots or MathSlots())
    return SimpleNamespace(ctx=ctx, **page_globals(ctx))


def cells(html: str) -> list[str]:
    return re.findall(r"<td class=\"[pnzm][1-9]?\"[^>]*>([^<]*)</td>", html)


def test_matrix_has_caption_labels_and_every_value(small_trace):
    html = str(macros_for(small_trace).matrix("L0.ln_1.out"))
    values = small_trace["L0.ln_1.out"][0]
    assert html.startswith('<div class="matrix-wrap"><table class="matrix" data-record="L0.ln_1.out" data-at="0">')
    assert "6 × 8 (tokens × d&#95;model)" in html
    assert html.count("<tr data-i=") == values.shape[0]
    assert len(cells(html)) == values.size
    # row labels are the input tokens, in order
    rows = re.findall(r'<tr data-i="\d+"><th scope="row">([^<]*)</th>', html)
    assert rows == [str(html_text(t)) for t in small_trace.labels["inputs"][0]]
    # 4 decimals shown with a real minus sign, every value in order
    assert cells(html) == [f"{x:.4f}".replace("-", "−") for x in values.ravel()]
    # shading: sign, and |x| / max|x| in ninths; the largest entry is level 9
    big = np.unravel_index(np.argmax(np.abs(values)), values.shape)
    kind = "p" if values[big] > 0 else "n"
    assert f'<td class="{kind}9">{f"{values[big]:.4f}".replace("-", "−")}</td>' in html
    assert "title=" not in html.split("</caption>")[1]  # full precision comes from the page data, not per cell


def test_matrix_selects_head_and_batch(small_trace):
    html = str(macros_for(small_trace).matrix("L0.attn.weights", head=1))
    shown = cells(html)
    expected = small_trace["L0.attn.weights"][0, 1]
    assert shown == [f"{x:.4f}" for x in expected.ravel()]
    assert 'data-at="0,1"' in html and "head 1" in html


def test_masked_entries_show_minus_infinity(small_trace):
    html = str(macros_for(small_trace).matrix("L0.attn.masked", head=0))
    n_masked = int(np.isneginf(small_trace["L0.attn.masked"][0, 0]).sum())
    assert n_masked > 0
    assert html.count('<td class="m">−∞</td>') == n_masked


def test_matrix_elides_past_the_limit(small_trace):
    html = str(macros_for(small_trace).matrix("L0.mlp.fc", limit=4, edge=2))
    assert html.count("<tr data-i=") == 4 and '<tr class="gap">' in html
    assert [int(j) for j in re.findall(r'data-j="(\d+)"', html)] == [0, 1, 14, 15]
    assert "⋯" in html and "showing 4 × 4" in html


def test_rows_and_cols_select(small_trace):
    html = str(macros_for(small_trace).matrix("wte", rows=[3, 4], cols=range(2)))
    assert re.findall(r'<tr data-i="(\d+)">', html) == ["3", "4"]
    assert len(cells(html)) == 4


def test_vector_and_value(small_trace):
    m = macros_for(small_trace)
    vec = str(m.vector("L0.ln_1.weight"))
    assert len(cells(vec)) == 8
    value = str(m.value("L0.attn.weights", (0, 1, 2, 0)))
    x = float(small_trace["L0.attn.weights"][0, 1, 2, 0])
    assert value == (
        f'<span class="value-highlight" data-record="L0.attn.weights" data-at="0,1,2,0" '
        f'title="{x!r}">{x:.4f}</span>'
    )
    assert str(m.shape("L0.attn.q")) == "1 × 2 × 6 × 4 (batch × heads × tokens × head&#95;dim)"


def test_coverage_counts_records_shown(small_trace):
    m = macros_for(small_trace)
    m.matrix("wte")
    m.value("loss")
    m.formula("L0.attn.q")  # a formula shows no numbers
    assert m.ctx.shown == {"wte", "loss"}


def test_calc_renders_every_explain_line(small_trace):
    slots = MathSlots()
    m = macros_for(small_trace, slots)
    html = str(m.calc("L0.attn.scores", (0, 1, 2, 1)))
    lines = engine.explain(small_trace, "L0.attn.scores", (0, 1, 2, 1)).latex
    assert html.startswith('<div class="calc-step" data-record="L0.attn.scores" data-at="0,1,2,1">')
    assert html.count('<div class="calc-line">') == len(lines)
    for line, div in zip(lines, html.split('<div class="calc-line">')[1:]):
        parts = [slots.formulas[key][0] for key in SLOT_RE.findall(div)]
        assert " ".join(parts).split() == line.split()  # the whole line, typeset in one piece or two
        if " = " in line:  # its left side apart, so the rest wraps under its own start (a sum's terms)
            assert len(parts) == 2 and parts[0].endswith("=") and div.startswith('<span class="calc-lhs">')


def test_a_long_sum_wraps_between_its_terms(small_trace):
    """A long sum is one line whose terms are groups: KaTeX breaks it after a top-level + only, so a page wraps it
    onto as many lines as its width needs and never inside a term such as (-0.94) · 0.10."""
    slots = MathSlots()
    m = macros_for(small_trace, slots)
    d = small_trace.config["model"]["d_model"]
    html = str(m.calc("L0.attn.qkv", (0, 1, 3)))
    rests = [slots.formulas[key][0] for key in re.findall(r'<span class="calc-rhs">' + SLOT_RE.pattern, html)]
    sums = [r for r in rests if r.count(" + ") >= d - 1]
    assert len(sums) == 1 and r"\begin" not in sums[0] and r"\\" not in sums[0]
    terms = sums[0].rsplit(" = ", 1)[0].split(" + ")
    assert len(terms) == d + 1 and all(t.startswith("{") and t.endswith("}") for t in terms)  # d products, the bias


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.matrix("L0.attn.score", head=0),
         "unknown trace record 'L0.attn.score' (did you mean 'L0.attn.scores'?)"),
        (lambda m: m.matrix("nothing_like_it"), "unknown trace record 'nothing_like_it'"),
        (lambda m: m.matrix("L0.attn.scores"), "'L0.attn.scores' has 2 heads: pass head=0..1"),
        (lambda m: m.matrix("L0.attn.scores", head=2), "bad argument head=2 for 'L0.attn.scores': must be in 0..1"),
        (lambda m: m.matrix("wte", head=0), "'wte' has no heads axis; drop head=0"),
        (lambda m: m.matrix("loss"), "'loss' is a single number: use value('loss')"),
        (lambda m: m.matrix("wte", rows=[99]), "bad index 99 in rows= for 'wte': vocab has 0..9"),
        (lambda m: m.matrix("wte", rows="0"), "bad argument rows='0' for 'wte': give a number, a list or a range"),
        (lambda m: m.value("L0.attn.weights", (0, 0, 9, 0)),
         "bad index (0, 0, 9, 0) for 'L0.attn.weights' with shape 1 × 2 × 6 × 6 "
         "(batch × heads × tokens × keys): tokens index 9 is outside 0..5"),
        (lambda m: m.value("wte", 3),
         "bad index (3,) for 'wte' with shape 10 × 8 (vocab × d_model): needs 2 numbers"),
        (lambda m: m.calc("loss", "x"), "bad index 'x' for 'loss': give a tuple of whole numbers"),
        (lambda m: m.value("L0.attn.weights", (0, 0, 2.0, 0)),
         "bad index (0, 0, 2.0, 0) for 'L0.attn.weights': give a tuple of whole numbers"),
        (lambda m: m.value("L0.attn.weights", (0, -1, 2, 0)),
         "bad index (0, -1, 2, 0) for 'L0.attn.weights' with shape 1 × 2 × 6 × 6 "
         "(batch × heads × tokens × keys): heads index -1 is outside 0..1"),
        (lambda m: m.matrix("wte", rows=[-1]), "bad index -1 in rows= for 'wte': vocab has 0..9"),
        (lambda m: m.matrix("L0.attn.scores", head="1"),
         "bad argument head='1' for 'L0.attn.scores': must be a whole number"),
        (lambda m: m.matrix("wte", limit=10**12),
         "bad argument limit=1000000000000 for 'wte': must be in 1..999999999"),
        # jacobian: every bad row index is named with the record, the axis and the range
        (lambda m: m.jacobian("L0.attn.weights", (0, 0, 9)),
         "bad index (0, 0, 9) for 'L0.attn.weights' jacobian: tokens index 9 is outside 0..5"),
        (lambda m: m.jacobian("L0.attn.weights", (0, -1, 2)),
         "bad index (0, -1, 2) for 'L0.attn.weights' jacobian: heads index -1 is outside 0..1"),
        (lambda m: m.jacobian("ln_f.xhat", (0, 10**20)),
         "bad index (0, 100000000000000000000) for 'ln_f.xhat' jacobian: tokens index 100000000000000000000 is "
         "outside 0..5"),
        (lambda m: m.jacobian("L0.attn.weights", (0, 0, 1.5)),
         "bad index (0, 0, 1.5) for 'L0.attn.weights' jacobian: give a tuple of whole numbers, one per axis of "
         "(batch, heads, tokens)"),
        (lambda m: m.jacobian("L0.attn.weights", (0, True, 1)),
         "bad index (0, True, 1) for 'L0.attn.weights' jacobian: give a tuple of whole numbers, one per axis of "
         "(batch, heads, tokens)"),
        (lambda m: m.jacobian("probs", "2"),
         "bad index '2' for 'probs' jacobian: give a tuple of whole numbers, one per axis of (batch, tokens)"),
        (lambda m: m.jacobian("L0.attn.weights", (0, 1)),
         "bad index (0, 1) for 'L0.attn.weights' jacobian: needs the index of one row, 3 numbers "
         "(batch, heads, tokens)"),
        (lambda m: m.jacobian("wte", (0,)),
         "no Jacobian for wte (op param): give a softmax, LayerNorm or RMSNorm xhat record (e.g. L0.attn.weights, "
         "probs, ln_f.xhat)"),
        # the other macros' arguments
        (lambda m: m.vector("L0.ln_1.weight", limit="8"),
         "bad argument limit='8' for 'L0.ln_1.weight': must be a whole number"),
        (lambda m: m.vector("L0.ln_1.weight", edge=0), "bad argument edge=0 for 'L0.ln_1.weight': must be in 1..64"),
        (lambda m: m.token(-1), "bad argument position=-1 for 'inputs': must be in 0..5"),
        (lambda m: m.pytorch_snippet(5), "bad argument trace_file=5 for pytorch_snippet(): give a file name such as "
                                         "'trace.json'"),
        (lambda m: m.attention_heatmaps("L0.attn.weights", batch=1),
         "bad argument batch=1 for 'L0.attn.weights': must be in 0..0"),
        (lambda m: m.attention_heatmaps("L0.attn.q"),
         "attention_heatmaps needs a record with axes (batch, heads, tokens, keys), such as 'L0.attn.weights'; "
         "'L0.attn.q' has (batch, heads, tokens, head_dim)"),
        (lambda m: m.update_histogram(bins=0), "bad argument bins=0 for 'update_histogram': must be in 1..200"),
        (lambda m: m.update_histogram(bins=10**9),
         "bad argument bins=1000000000 for 'update_histogram': must be in 1..200"),
        (lambda m: m.update_histogram(bins=2.5),
         "bad argument bins=2.5 for 'update_histogram': must be a whole number"),
        (lambda m: m.update_histogram(per_lr="yes"),
         "bad argument per_lr='yes' for update_histogram(): give true or false"),
        (lambda m: m.architecture(current="attn"),
         "bad argument current='attn' for architecture(): give one of embeddings, layernorm, qkv, attention, "
         "multihead, feedforward, output, loss, loss-gradient, output-backward, feedforward-backward, "
         "attention-backward, embedding-gradients, optimizer"),
        (lambda m: m.other_blocks("L{l}.ln_1.mean"),
         "bad argument names='L{l}.ln_1.mean' for other_blocks(): give a list of record names with {l}"),
        (lambda m: m.other_blocks(["L0.ln_1.mean"]),
         "bad record name 'L0.ln_1.mean' for other_blocks(): write {l} where the block number goes, "
         "e.g. 'L{l}.ln_1.mean'"),
        (lambda m: m.other_blocks(["L{l}.ln_1.mean"], layers=[1]),
         "bad index 1 in layers= for 'other_blocks': layers has 0..0"),
        (lambda m: m.other_blocks(["L{l}.ln_1.nope"], layers=[0]),
         "unknown trace record 'L0.ln_1.nope' (did you mean 'L0.ln_1.out'?)"),
    ],
)
def test_macro_errors(small_trace, call, message):
    with pytest.raises(MacroError) as err:
        call(macros_for(small_trace))
    assert str(err.value) == message


def test_hostile_vocab_is_escaped_in_tables(hostile_trace):
    html = str(macros_for(hostile_trace).matrix("wte"))
    assert "<script>" not in html
    assert "&#60;script&#62;" in html  # shown as the text <script>
    for raw in ["$", "\\", "{", "}", "&", "_", "^", "%", "#", "~"]:
        row_labels = re.findall(r'<th scope="row">([^<]*)</th>', html)
        assert all(raw not in label.replace("&#", "") or raw in "^%" for label in row_labels)


def test_latex_escape_covers_every_special_character():
    assert str(latex_escape(r"\{}$&#^_%~<>")) == (
        r"\textbackslash{}\{\}\$\&\#\textasciicircum{}\_\%\textasciitilde{}\textless{}\textgreater{}"
    )
    assert str(html_text('<a href="x">$1 & {b}</a>')) == (
        "&#60;a href=&#34;x&#34;&#62;&#36;1 &#38; &#123;b&#125;&#60;/a&#62;"
    )


def test_long_vectors_elide(small_trace):
    html = str(macros_for(small_trace).vector("L0.mlp.c_fc.bias", limit=8, edge=2))
    assert "showing 4" in html and len(cells(html)) == 4


def test_other_blocks_shows_every_record_of_each_other_block():
    trace = engine.run(config_from_dict({"model": {"n_layers": 3, "d_model": 4, "d_ff": 4}}))
    m = macros_for(trace)
    assert str(m.other_blocks(["L{l}.ln_1.mean"], layers=[])) == ""
    html = str(m.other_blocks(["L{l}.ln_1.mean", "L{l}.attn.weights"], "ln_1 and weights"))
    assert html.count('<details class="other-block">') == 2  # blocks 1 and 2: the walkthrough shows block 0
    assert html.startswith('<details class="other-block"><summary>Block 1: ln&#95;1 and weights</summary>')
    assert html.count('data-record="L1.attn.weights"') == html.count('data-record="L2.attn.weights"') == 2  # 2 heads
    assert "L0." not in html and "\n" not in html  # one line: one HTML block in the Markdown
    assert {"L1.ln_1.mean", "L2.ln_1.mean", "L1.attn.weights", "L2.attn.weights"} <= set(m.ctx.shown)


def test_a_block_page_names_its_block_in_every_macro_call():
    """On a `block: last` page, `L{block}` in a record name is the last block, in any macro and any argument (a list
    too); elsewhere it is an error naming the name."""
    trace = engine.run(config_from_dict({"model": {"n_layers": 3, "d_model": 4, "d_ff": 4}, "train_steps": 0}))
    ctx = PageContext(trace, MathSlots(), block="last")
    m = SimpleNamespace(ctx=ctx, **page_globals(ctx))
    assert ctx.block == 2 and ctx.named(["grad.L{block}.mlp.fc", ("L{block}.attn.q", 3)]) == \
        ["grad.L2.mlp.fc", ("L2.attn.q", 3)]
    assert 'data-record="grad.L2.mlp.fc"' in str(m.matrix("grad.L{block}.mlp.fc"))
    assert m.value("L{block}.ln_1.mean", (0, 1)) == m.value("L2.ln_1.mean", (0, 1))
    html = str(m.other_blocks(["grad.L{l}.mlp.fc"], layers=[1, 0]))
    assert re.findall(r"<summary>Block (\d)", html) == ["1", "0"]
    assert PageContext(trace, MathSlots(), block="first").block == 0 and PageContext(trace, MathSlots()).block is None
    with pytest.raises(MacroError, match=r"'grad.L\{block\}.mlp.fc' names 'L\{block\}', but this page has no "
                                         r"'block:' in its front matter"):
        macros_for(trace).matrix("grad.L{block}.mlp.fc")


def test_every_head_is_the_matrix_of_each_head_one_after_another():
    """every_head(name) places matrix(name, head=h) for each head of the record's own heads axis (query heads, or a
    Llama record's key/value heads), separated as a page's loop would; a record without heads is an error."""
    trace = engine.run(config_from_dict({"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}, "train_steps": 0}))
    for name, heads in (("L0.attn.weights", 4), ("L0.attn.k", 2)):
        m, one = macros_for(trace), macros_for(trace)
        html = str(m.every_head(name))
        assert html == "\n\n".join(str(one.matrix(name, head=h)) for h in range(heads))
        assert html.count(f'data-record="{name}"') == heads and name in m.ctx.shown
    with pytest.raises(MacroError, match=r"every_head\('L0.ln_1.ms'\): the record has no heads axis"):
        macros_for(trace).every_head("L0.ln_1.ms")


def test_other_blocks_is_empty_for_one_block(small_trace):
    m = macros_for(small_trace)
    assert str(m.other_blocks(["L{l}.ln_1.mean"])) == "" and not m.ctx.shown


def test_count_and_span_words():
    from site_build.macros.text import count_words, span_words

    assert [count_words(n, "position") for n in (0, 1, 2)] == ["0 positions", "1 position", "2 positions"]
    assert count_words(1, "entry", "entries") == "1 entry" and count_words(3, "entry", "entries") == "3 entries"
    assert span_words(3, 3) == "3" and span_words(3, 7) == "3 to 7"


def test_a_split_sentence_is_marked_with_its_total_and_parts_and_must_add_up(small_trace):
    """`split` shows a fact that splits a total (figures.Split) marked for the config-matrix rule, and refuses one
    whose parts do not add up; the notebook reads the sentence."""
    from site_build.figures import Split
    from site_build.macros.blocks import Parts

    m = macros_for(small_trace)
    html = str(m.split(Split("Of the 10 weights, 7 moved and 3 did not.", 10, (7, 3))))
    assert html == ('<span class="split" data-total="10" data-parts="7 3">Of the 10 weights, 7 moved and 3 did not.'
                    "</span>")
    assert Parts(10, (7, 3), "x").note().text == "x"
    with pytest.raises(MacroError, match=r"add up to 11, not to its total 10"):
        m.split(Split("Of the 10 weights, 7 moved and 4 did not.", 10, (7, 4)))
    with pytest.raises(MacroError, match="give a fact that splits a total"):
        m.split("Of the 10 weights, 7 moved.")


RLO = "\u202e"


def test_config_text_is_isolated_only_where_it_could_reorder_its_surroundings():
    from site_build.format import html_code, html_word_list, html_words, html_words_in, isolate_plain, needs_isolation

    assert not needs_isolation("the <cat> $x$ 3.5") and needs_isolation(f"a{RLO}b") and needs_isolation("שלום")
    assert str(html_words("<cat>")) == "&#60;cat&#62;"  # ordinary words: no extra bytes
    assert str(html_words(f"a{RLO}<b")) == f"<bdi>a{RLO}&#60;b</bdi>"
    assert str(html_word_list(["the", f"ca{RLO}t", "sat"])) == f"the <bdi>ca{RLO}t</bdi> sat"  # one <bdi> per word
    assert str(html_code("<pad>")) == "<code>&#60;pad&#62;</code>"  # a backtick span would show the entities
    assert str(html_words_in(f"the 2 positions whose input is 'ca{RLO}t'", ["the", f"ca{RLO}t"])) == (
        f"the 2 positions whose input is &#39;<bdi>ca{RLO}t</bdi>&#39;")
    assert isolate_plain("cat") == "cat" and isolate_plain(f"ca{RLO}t") == f"\u2068ca{RLO}t\u2069"


def test_table_labels_and_tokens_are_isolated():
    trace = engine.run(config_from_dict({"data": {"texts": [f"the ca{RLO}t sat"]}}))
    m = macros_for(trace)
    html = str(m.matrix("embed.out"))
    assert f'<th scope="row"><bdi>ca{RLO}t</bdi></th>' in html and '<th scope="row">the</th>' in html
    assert str(m.token(2)) == f"<bdi>ca{RLO}t</bdi>"
    calc = str(m.calc("grad.wte.from_embed", (trace.labels["vocab"].index(f"ca{RLO}t"), 0)))
    text = calc.split('<div class="calc-line">')[0]
    assert RLO not in re.sub(r"<bdi>[^<]*</bdi>", "", text)  # the sentence may quote the word, but only isolated
    hebrew = engine.run(config_from_dict({"data": {"texts": ["the שלום sat"]}}))
    calc = str(macros_for(hebrew).calc("grad.wte.from_embed", (hebrew.labels["vocab"].index("שלום"), 0)))
    text = calc.split('<div class="calc-line">')[0]
    assert "<bdi>שלום</bdi>" in text and "שלום" not in re.sub(r"<bdi>[^<]*</bdi>", "", text)  # just the word


def test_every_macro_and_filter_is_documented():
    """The registry is the one list of macros; the writer's guide must describe each of them."""
    from site_build.macros import FILTERS, MACROS

    guide = (Path(__file__).resolve().parents[2] / "docs" / "authoring.md").read_text(encoding="utf-8")
    missing = [name for name in MACROS if f"`{name}(" not in guide and f"{{{{ {name}(" not in guide]
    missing += [f"| {name}" for name in FILTERS if f"| {name}" not in guide]
    assert not missing


def test_figures_worked_out_ahead_are_the_ones_a_page_would_work_out(small_trace):
    """A big run's whole-model figures (every tensor's update, the update histogram) are started in a background
    thread before the pages render (RunContext.start_ahead); a page reads exactly what it would have computed
    itself, and the weights are counted without reading a tensor."""
    from site_build.macros import optimizer

    ahead, plain = macros_for(small_trace), macros_for(small_trace)
    ahead.ctx.run.start_ahead()
    try:
        assert any(isinstance(v, Future) for v in ahead.ctx.memo.values())
        assert str(ahead.update_histogram()) == str(plain.update_histogram())
        a, b = ahead.optimizer_stats(), plain.optimizer_stats()
        for name in optimizer.OptimizerStats.FIGURES:
            assert getattr(a, name) == getattr(b, name), name
        assert list(a.tensors) == list(b.tensors) and a.total == b.total
    finally:
        ahead.ctx.run.close()
    counted = macros_for(small_trace)
    stats = counted.optimizer_stats()
    assert stats.total == sum(small_trace[n].size for n in optimizer.parameters(small_trace))
    assert len(stats.tensors) == len(optimizer.parameters(small_trace)) and not counted.ctx.memo  # nothing read yet
    assert stats.near >= 0 and len(counted.ctx.memo) == len(stats.tensors) + len(stats.decaying)


def test_listed_writes_out_a_short_row_whole_and_a_long_one_in_part(small_trace):
    listed = macros_for(small_trace).listed
    short = listed(16, keep=[5])
    assert list(short) == list(range(16)) and short.whole and short.count == 16
    long = listed(768, keep=[300])
    assert list(long) == [0, 1, 2, None, 300, None, 765, 766, 767]
    assert (long.whole, long.count, long.extra) == (False, 7, [300])
    # a kept element next to an end joins it without a gap; one at an end is not "extra"
    assert list(listed(40, keep=[3, 39])) == [0, 1, 2, 3, None, 37, 38, 39]
    assert listed(40, keep=[3, 39]).extra == [3]
    for bad in ([40], [-1], ["3"]):
        with pytest.raises(MacroError, match="keep"):
            listed(40, keep=bad)
    with pytest.raises(MacroError, match="bad argument n"):
        listed(-2)


def test_the_page_line_of_a_macro_call_is_jinjas_for_every_line_of_every_page():
    """`template_line` (where a formula's KaTeX error is reported) reads the template's line map once; it must
    give what Jinja's own get_corresponding_lineno gives, for every generated line of every real page."""
    from site_build.build import ROOT
    from site_build.macros.registry import _page_line
    from site_build.pages import collect_pages
    from site_build.render.jinja import content_environment

    env = content_environment()
    pages, _ = collect_pages(ROOT / "content")
    for page in pages:
        template = env.from_string(page.body)
        last = max((code for _, code in template.debug_info), default=0)
        for code_line in range(last + 3):
            assert _page_line(template, code_line) == template.get_corresponding_lineno(code_line), \
                (page.source, code_line)


def test_a_heatmap_of_activations_names_its_token_rows():
    """A wide matrix of activations (tokens × d_ff) is a heatmap with each row named by its token; a weight's
    heatmap (d_model × d_ff) has no token rows to name."""
    trace = engine.run(config_from_dict({"model": {"d_ff": 40}}, "test"))
    m = macros_for(trace)
    html = str(m.matrix("L0.mlp.fc"))
    words = trace.labels["inputs"][0]
    assert 'class="big wide"' in html and f'style="--rows:{len(words)}"' in html
    labels = re.findall(r'<ol class="hm-labels"[^>]*>(.*?)</ol>', html)
    assert len(labels) == 1 and re.findall(r"<li>(.*?)</li>", labels[0]) == [html_text(w) for w in words]
    weight = str(m.matrix("L0.mlp.c_fc.weight"))
    assert 'class="big wide"' in weight and "hm-labels" not in weight
