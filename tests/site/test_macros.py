"""Macro output: matrix structure, selection, elision, escaping, and error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

import engine
from site_build.escape import html_text, latex_escape
from site_build.macros import MacroError, Macros
from site_build.mathslots import MathSlots


def macros_for(trace) -> Macros:
    return Macros(trace, MathSlots(), engine.explain)


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
    assert m.coverage() == (2, len(small_trace.names()))
    assert "wte" not in m.missing() and "L0.attn.q" in m.missing()


def test_calc_renders_every_explain_line(small_trace):
    slots = MathSlots()
    m = Macros(small_trace, slots, engine.explain)
    html = str(m.calc("L0.attn.scores", (0, 1, 2, 1)))
    lines = engine.explain(small_trace, "L0.attn.scores", (0, 1, 2, 1)).latex
    assert html.startswith('<div class="calc-step" data-record="L0.attn.scores" data-at="0,1,2,1">')
    assert html.count('<div class="calc-line">') == len(lines)
    assert [tex for tex, display in slots.formulas] == [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.matrix("L0.attn.score", head=0), "unknown trace record 'L0.attn.score' (did you mean 'L0.attn.scores'?)"),
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
        (lambda m: m.value("wte", 3), "bad index (3,) for 'wte' with shape 10 × 8 (vocab × d_model): needs 2 numbers"),
        (lambda m: m.calc("loss", "x"), "bad index 'x' for 'loss': give a tuple of whole numbers"),
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
