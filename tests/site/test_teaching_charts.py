"""The pictures for learning (site_build/charts/teaching.py) and the macros that follow the config's words
(site_build/macros/text.py, optimizer.py): well-formed, accessible, themed, deterministic, escaped, and right."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from engine.layers import gelu_forward
from site_build import charts
from site_build.macros import text as words
from site_build.macros.registry import MacroError

SVG = "{http://www.w3.org/2000/svg}"
CSS = Path(__file__).resolve().parents[2] / "templates" / "assets" / "charts.css"
CONFIGS = {
    "default": {},
    "one head, three layers": {"model": {"n_heads": 1, "n_layers": 3}},
    "batch of two, train_steps 0": {"data": {"texts": ["the cat", "the dog ran on the mat"]}, "train_steps": 0},
    "hostile words": {"model": {"vocab": ["<pad>", "<bos>", "<eos>", "<b>&", "the", '"x"']},
                      "data": {"texts": ['the <b>& "x" the']}},
    "untied output layer": {"model": {"tie_embeddings": False}},
}


def _run(raw: dict):
    return engine.run(config_from_dict({"train_steps": 5, **raw}, "test"))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trace(request):
    return _run(CONFIGS[request.param])


def teaching_charts(trace) -> dict[str, str]:
    n_layers = trace.config["model"]["n_layers"]
    out = {
        "gelu": charts.gelu_chart(trace),
        "layernorm": charts.layernorm_chart(trace, "L0.ln_1", 0, 0),
        "layernorm-f": charts.layernorm_chart(trace, "ln_f", 0, trace["input_ids"].shape[1] - 1),
        "backward": charts.backward_graph(trace),
        "generation": charts.generation(trace),
        "update-wte": charts.update_heatmap(trace, "wte"),
        "update-bias": charts.update_heatmap(trace, "L0.attn.c_attn.bias"),
    }
    for h in range(trace.config["model"]["n_heads"]):
        out[f"attention-{h}"] = charts.attention_change(trace, n_layers - 1, h)
    return out


def test_every_picture_is_well_formed_accessible_and_styled(trace):
    css = CSS.read_text(encoding="utf-8")
    styled = set(re.findall(r"\.([a-z][a-z0-9-]*)", css))
    for name, svg in teaching_charts(trace).items():
        root = ET.fromstring(svg)  # every label escaped, every element closed
        assert root.tag == SVG + "svg" and root.get("role") == "img", name
        assert root.get("viewBox").startswith("0 0 360 "), name
        title, desc = root.find(SVG + "title"), root.find(SVG + "desc")
        assert title.text.strip() and len(desc.text) > 60, name
        assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
        used = {c for v in re.findall(r'class="([^"]+)"', svg) for c in v.split()}
        unstyled = used - styled - {"cells"} - {c for c in used if c.startswith("chart-")}
        assert not unstyled, (name, unstyled)
        assert not re.search(r'(?:fill|stroke)="#|style="[^"]*(?:fill|stroke|color)', svg), name  # colours from CSS


def test_the_backward_graph_forks_the_token_table_only_when_tied():
    tied, untied = (charts.backward_graph(_run({"model": {"tie_embeddings": tie}})) for tie in (True, False))
    assert "W_te is used twice" in tied and "logits = LN_f \u00b7 W_te\u1d40" in tied and "W_out" not in tied
    assert "W_te is used twice" not in untied and "\u2462" not in untied
    assert "logits = LN_f \u00b7 W_out\u1d40" in untied and "an output matrix of their own, W_out" in untied


def test_pictures_are_deterministic_and_their_ids_differ():
    a, b = teaching_charts(_run({})), teaching_charts(_run({}))
    assert a == b
    ids = [re.search(r'<title id="([^"]+)"', svg).group(1) for svg in a.values()]
    assert len(ids) == len(set(ids))


def test_config_words_are_escaped_in_every_picture():
    svgs = teaching_charts(_run(CONFIGS["hostile words"]))
    text = "".join(svgs.values())
    assert "<b>&" not in text and "&lt;b&gt;&amp;" in text


def test_gelu_numbers_are_the_ones_the_page_states():
    trace = engine.run(engine.load_config("configs/default.yaml"))
    g = charts.gelu_stats(trace)
    u = trace["L0.mlp.fc"][0].ravel()
    pos = u[u > 0]
    assert g["n_pos"] == pos.size and g["n_neg"] == (u < 0).sum()
    ratio = gelu_forward(pos) / pos
    assert g["ratio_min"] == ratio.min() and g["ratio_median"] == np.median(ratio)
    assert abs(g["series_c"] - (2 / (3 * math.pi) - 1 / 6)) < 1e-15 and round(g["series_c"], 4) == 0.0455
    assert -0.76 < g["min_u"] < -0.74
    assert g["err_fitted"] < g["err_series"] and g["err_series_near"] < g["err_fitted_near"]


def test_the_update_picture_draws_every_element_and_pools_a_big_tensor():
    trace = _run({})
    svg = charts.update_heatmap(trace, "L0.mlp.c_fc.weight")
    paths = re.findall(r'<path class="(?:po|ne)"[^>]* d="([^"]+)"', svg)
    cells = sum(len(re.findall(r"M[\d.]+ [\d.]+h", d)) for d in paths)
    delta = trace["updated.L0.mlp.c_fc.weight"] - trace["L0.mlp.c_fc.weight"]
    assert cells == int((delta != 0).sum())
    big = _run({"model": {"d_model": 8, "n_heads": 1, "d_ff": 200}, "train_steps": 0})
    assert "the mean of a 1 × 3 block" in charts.update_heatmap(big, "L0.mlp.c_fc.weight")


def test_the_generation_picture_marks_the_words_that_match_the_text():
    trace = _run({"train_steps": 60})
    svg = charts.generation(trace)
    vocab = trace.labels["vocab"]
    after = [vocab[i] for i in trace["train.generate.after"]]
    text0 = trace.labels["targets"][0]
    assert svg.count('class="gm"') - 1 == sum(a == b for a, b in zip(after, text0)) + sum(
        vocab[i] == b for i, b in zip(trace["train.generate.before"], text0))


# -- the words ---------------------------------------------------------------------------------------------------
def test_counts_plurals_ordinals_and_lists():
    assert words.counted(1, "head") == "one head" and words.counted(3, "head") == "three heads"
    assert words.counted(13, "entry", "entries") == "13 entries"
    assert words.plural_noun(2, "entry", "entries") == "entries"
    assert words.plural_noun(1, "text") == "text" and words.plural_noun(2, "guess") == "guesses"
    assert words.agree(1, "is", "are") == "is" and words.agree(0, "is", "are") == "are"
    assert [words.ordinal(n) for n in (1, 2, 3, 12, 13)] == ["first", "second", "third", "twelfth", "13th"]
    assert [words.ordinal(n, words=False) for n in (1, 2, 3, 11, 21, 112)] == ["1st", "2nd", "3rd", "11th", "21st",
                                                                             "112th"]
    assert words.all_of(1, "head") == "the single head" and words.all_of(2, "head") == "both heads"
    assert words.all_of(3, "head") == "all three heads" and words.each_of(1, "head") == "the head"
    assert words.each_of(4, "head") == "each of the four heads"
    assert str(words.and_list([1])) == "1" and str(words.and_list([1, 5])) == "1 and 5"
    assert str(words.and_list([1, 5, 7])) == "1, 5 and 7"
    assert str(words.and_list(["<b>", "a"], quote=True)) == "“&#60;b&#62;” and “a”"
    assert words.text_name(0) == "text 1" and words.text_name(1, capital=True) == "Text 2"
    assert words.claim(True, "fine") == ""
    with pytest.raises(MacroError, match="false for this config: the loss falls"):
        words.claim(False, "the loss falls")
    with pytest.raises(MacroError, match="empty list"):
        words.and_list([])
    assert abs(words.log_of(10) - math.log(10)) < 1e-15 and words.exp_of(0) == 1
