"""Charts: render from the trace for varied configs, one heatmap cell per (query, key) with the
causal mask in the right place, escaped labels, text alternatives, themed colours, determinism."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

import engine
from engine.config import config_from_dict
from site_build import charts
from site_build.format import sig
from site_build.steps import STEP_KEYS

SVG = "{http://www.w3.org/2000/svg}"
CSS = Path(__file__).resolve().parents[2] / "templates" / "assets" / "charts.css"
STYLE = CSS.with_name("style.css")
LLAMA = Path(__file__).resolve().parents[2] / "configs" / "llama.yaml"

CONFIGS = {
    "three-heads": {"model": {"n_heads": 3, "d_model": 12}},
    "two-layers": {"model": {"n_layers": 2}},
    "batch-of-two": {"data": {"texts": ["the cat sat", "a dog ran far away"]}},
    "sgd": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
    "hostile": {"model": {"vocab": ["<pad>", "<bos>", "<eos>", "<b>&", "the", '"x"']},
                "data": {"texts": ['the <b>& "x" the']}},
}


def _run(raw: dict):
    return engine.run(config_from_dict({"train_steps": 5, **raw}, "test"))


@pytest.fixture(scope="module")
def default_trace():
    return engine.run(engine.load_config("configs/default.yaml"))


@pytest.fixture(scope="module")
def batch_trace():
    return _run(CONFIGS["batch-of-two"])


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def varied(request):
    return request.param, _run(CONFIGS[request.param])


def every_chart(trace) -> dict[str, str]:
    links = {key: f"{key}/" for key in STEP_KEYS}
    n_layers = trace.config["model"]["n_layers"]
    last = f"L{n_layers - 1}"
    steps = np.arange(trace["train.loss"].size)
    out = {
        "architecture": charts.architecture(trace),
        "architecture-linked": charts.architecture(trace, current="attention", links=links),
        "steps": charts.architecture(trace, current="qkv", links=links, small=True),
        "bars-grad": charts.bars(charts.grad_norms(trace), "Gradient size per tensor", "gradient"),
        "bars-update": charts.bars([(n, v) for n, v, _ in charts.update_sizes(trace)], "Update size", "update"),
        "histogram": charts.histogram(charts.all_updates(trace), 30, "Distribution of updates", "update"),
        "histogram-lr": charts.histogram(charts.all_updates(trace, per_lr=True), 20, "Updates / lr", "|update| / lr"),
        "line": charts.line(steps, trace["train.loss"], "Loss", "training step", "loss (nats)"),
        "line-log": charts.line(steps, trace["train.loss"], "Loss", "training step", "loss (nats)", log=True),
        "before-after": charts.before_after(trace),
    }
    for head in range(trace.config["model"]["n_heads"]):
        for batch in range(len(trace.labels["inputs"])):
            out[f"weights-{head}-{batch}"] = charts.heatmap(trace, f"{last}.attn.weights", head, batch)
            out[f"grad-{head}-{batch}"] = charts.heatmap(trace, f"grad.{last}.attn.weights", head, batch)
    return out


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML: every label escaped, every element closed
    assert root.tag == SVG + "svg"
    return root


def classes(el: ET.Element) -> set[str]:
    return set(el.get("class", "").split())


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(SVG + "text")]


def cells(svg: str) -> list[ET.Element]:
    group = [g for g in parse(svg).iter(SVG + "g") if g.get("class") == "cells"]
    assert len(group) == 1
    return list(group[0].iter(SVG + "rect"))


def grid(svg: str) -> dict[tuple[int, int], ET.Element]:
    """The heatmap's cells keyed by (row, column), recovered from their positions."""
    rects = cells(svg)
    xs = sorted({float(r.get("x")) for r in rects})
    ys = sorted({float(r.get("y")) for r in rects})
    return {(ys.index(float(r.get("y"))), xs.index(float(r.get("x")))): r for r in rects}


def check_accessible(svg: str) -> ET.Element:
    root = parse(svg)
    assert root.get("role") in ("img", "group")
    assert root.get("viewBox").startswith("0 0 360 ")
    assert root.get("width") == "100%"
    title, desc = root.find(SVG + "title"), root.find(SVG + "desc")
    assert title is not None and title.text and title.text.strip()
    assert desc is not None and desc.text and len(desc.text) > 40
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    return root


# --------------------------------------------------------------------------- every chart


def test_every_chart_renders_for_the_default_config(default_trace):
    for name, svg in every_chart(default_trace).items():
        root = check_accessible(svg)
        assert root.get("role") == ("group" if name in ("architecture-linked", "steps") else "img"), name


def test_every_chart_renders_for_varied_configs(varied):
    label, trace = varied
    for name, svg in every_chart(trace).items():
        check_accessible(svg)
        assert len(svg) < 20_000, (label, name, len(svg))


def test_colours_come_only_from_css_classes(default_trace):
    for name, svg in every_chart(default_trace).items():
        assert not re.search(r"#[0-9a-fA-F]{3,6}\b|rgb\(|style=|fill=\"|stroke=\"", svg), name
        used = set(re.findall(r'class="([^"]+)"', svg))
        assert used, name


def test_output_is_deterministic_across_runs():
    a, b = _run(CONFIGS["two-layers"]), _run(CONFIGS["two-layers"])
    first, second = every_chart(a), every_chart(b)
    assert first == second
    assert charts.loss_curves(a) == charts.loss_curves(b)


def test_ids_differ_between_charts(default_trace):
    ids = [re.search(r'<title id="([^"]+)"', svg).group(1) for svg in every_chart(default_trace).values()]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- heatmap


@pytest.mark.parametrize("name", ["L0.attn.weights", "grad.L0.attn.weights"])
def test_heatmap_has_one_cell_per_query_and_key_masked_above_the_diagonal(default_trace, name):
    n = len(default_trace.labels["inputs"][0])
    for head in range(2):
        svg = charts.heatmap(default_trace, name, head)
        cells_by_pos = grid(svg)
        assert len(cells(svg)) == n * n and len(cells_by_pos) == n * n
        for (q, k), rect in cells_by_pos.items():
            assert ("ms" in classes(rect)) == (k > q), (q, k)
            if k <= q:
                assert classes(rect) & {"po", "ne"}


def test_heatmap_cells_follow_the_values(default_trace):
    values = default_trace["L0.attn.weights"][0, 1]
    svg = charts.heatmap(default_trace, "L0.attn.weights", 1)
    for (q, k), rect in grid(svg).items():
        if k <= q:
            assert float(rect.get("fill-opacity")) == pytest.approx(values[q, k] / values.max(), abs=0.006)
            assert "po" in classes(rect)
    shown = [t for t in texts(parse(svg)) if re.fullmatch(r"\d\.\d\d", t)]
    expected = [f"{values[q, k]:.2f}" for q in range(6) for k in range(q + 1)]
    assert shown[: len(expected)] == expected


def test_gradient_heatmap_is_diverging_and_weights_are_not(default_trace):
    grad = default_trace["grad.L0.attn.weights"][0, 0]
    visible = grad[np.tril_indices(6)]
    assert (visible < 0).any() and (visible > 0).any()
    signed = charts.heatmap(default_trace, "grad.L0.attn.weights", 0)
    kinds = [classes(r) & {"po", "ne"} for r in cells(signed) if "ms" not in classes(r)]
    assert {"ne"} in kinds and {"po"} in kinds
    weights = charts.heatmap(default_trace, "L0.attn.weights", 0)
    assert not any("ne" in classes(r) for r in cells(weights))
    assert "−" in "".join(texts(parse(signed)))  # the legend runs from -max to +max


def test_heatmap_axes_labels_and_legend(default_trace):
    root = parse(charts.heatmap(default_trace, "L0.attn.weights", 0))
    words = texts(root)
    assert "query position (token)" in words and "key position (token)" in words
    assert "masked (key after query)" in words
    for i, token in enumerate(default_trace.labels["inputs"][0]):
        assert words.count(f"{i} {token}") == 2  # once per axis
    assert any(t.startswith("values from 0.06 to 1.00") for t in words)


def test_heatmap_desc_states_the_largest_value(default_trace):
    values = default_trace["L0.attn.weights"][0, 0]
    desc = parse(charts.heatmap(default_trace, "L0.attn.weights", 0)).find(SVG + "desc").text
    assert f"largest value is {values.max():.2f}" in desc
    last = values[-1]
    assert f"key {int(np.argmax(last))}" in desc and f"{last.max():.2f}" in desc
    assert "15 cells above the diagonal" in desc


def test_heatmap_labels_each_text_of_a_batch(batch_trace):
    svg = charts.heatmap(batch_trace, "L0.attn.weights", 0, batch=1)
    words = texts(parse(svg))
    assert "1 a" in words and "4 far" in words
    assert "1 the" not in words


def test_heatmap_rejects_a_record_without_heads(default_trace):
    with pytest.raises(ValueError, match="expected"):
        charts.heatmap(default_trace, "L0.ln_1.out", 0)


# --------------------------------------------------------------------------- escaping


def test_config_text_is_escaped_everywhere():
    trace = _run(CONFIGS["hostile"])
    for name, svg in {**every_chart(trace), "loss": charts.loss_curves(trace)}.items():
        assert "<b>" not in svg and '"x"' not in svg, name
        if name.startswith(("weights", "grad", "before", "architecture")):
            assert "&lt;b&gt;&amp;" in svg, name
    root = parse(charts.heatmap(trace, "L0.attn.weights", 0))
    assert "2 <b>&" in texts(root)  # the reader sees the word itself
    assert '3 "x"' in texts(root)
    assert "<b>&" in root.find(SVG + "desc").text


def test_caller_text_and_links_are_escaped(default_trace):
    svg = charts.bars([("a<i>", 1.0)], "T <script>", "u&v")
    assert "<script>" not in svg and "<i>" not in svg
    root = parse(svg)
    assert root.find(SVG + "title").text == "T <script>"
    linked = charts.architecture(default_trace, links={"qkv": "q.html?a=1&b=2"}, small=True)
    hrefs = [a.get("href") for a in parse(linked).iter(SVG + "a")]
    assert hrefs == ["q.html?a=1&b=2"]
    assert 'href="q.html?a=1&amp;b=2"' in linked


# --------------------------------------------------------------------------- architecture


def test_architecture_is_drawn_from_the_config():
    trace = _run({"model": {"n_layers": 2, "n_heads": 3, "d_model": 12, "d_ff": 40}})
    root = parse(charts.architecture(trace))
    words = texts(root)
    assert sum("ms" in classes(r) for r in root.iter(SVG + "rect")) == 3 * 2  # one box per head per block
    assert "block 0 of 2" in words and "block 1 of 2" in words and "block 2 of 2" not in words
    assert [w for w in words if re.fullmatch(r"h\d", w)] == ["h0", "h1", "h2"] * 2
    assert "6×12" in words and "6×40" in words and "3 × 3×6×4" in words
    assert "wte 10×12" in words and "wpe 8×12" in words and "12 → 40" in words
    assert "LayerNorm ln_f" in words


def test_architecture_draws_the_tie_only_when_the_output_layer_is_the_token_table():
    tied = charts.architecture(_run({}))
    untied = charts.architecture(_run({"model": {"tie_embeddings": False}}))
    assert "tied to wte: 16 \u2192 10 words" in texts(parse(tied)) and "tied to the token embedding" in tied
    words = texts(parse(untied))
    assert "untied: 16 \u2192 10 words" in words and "logits = x \u00b7 lm_head\u1d40" in words
    assert "tied to wte" not in untied and "lm_head, a 10\u00d716 matrix of its own (untied)" in untied
    assert untied.count('<path class="fr"') == tied.count('<path class="fr"') - 1  # no line from wte to the logits


@pytest.mark.parametrize("kv, tie", [(2, False), (4, True)], ids=["grouped, untied", "one per head, tied"])
def test_architecture_follows_a_llama_block(kv, tie):
    """RMSNorm, no position table, q/k/v_proj with a rotary box, a frame per group of query heads sharing a key/value
    head, SwiGLU, o_proj; no GPT-2 box or word in the picture or its description."""
    trace = _run(yaml.safe_load(LLAMA.read_text(encoding="utf-8")) | {"train_steps": 0} | {"model": {
        **yaml.safe_load(LLAMA.read_text(encoding="utf-8"))["model"], "n_kv_heads": kv, "tie_embeddings": tie}})
    svg = charts.architecture(trace)
    root = parse(svg)
    words = texts(root)
    assert {"RMSNorm ln_1", "RMSNorm ln_2", "RMSNorm ln_f", "wte 10×16", "merge 4 heads, o_proj"} <= set(words)
    assert "rotary: turn Q, K by position" in words and "SwiGLU: SiLU(gate) \u2299 up" in words
    assert f"16 \u2192 16, {4 * kv}, {4 * kv}" in words and f"Q: 4 heads, K and V: {kv} heads" in words
    group_frames = [r for r in root.iter(SVG + "rect") if "fr" in classes(r) and r.get("rx") == "3"]
    assert len(group_frames) == (kv if kv < 4 else 0)
    for gpt2 in ("wpe", "position embedding", "LayerNorm", "GELU", "c_attn", "c_fc", "c_proj"):
        assert gpt2 not in svg, gpt2
    assert ("tied to wte" in svg) == tie and ("key/value heads shared by 4 query heads" in svg) == (kv < 4)
    small = charts.architecture(trace, small=True)
    assert "RMSNorm" in small and "LayerNorm" not in small


def test_architecture_sizes_carry_the_batch(batch_trace):
    words = texts(parse(charts.architecture(batch_trace)))
    assert "2×5×16" in words and "2×5 ids" in words and "2×5×10" not in words


def test_architecture_elides_deep_stacks():
    trace = _run({"model": {"n_layers": 5, "d_model": 8, "d_ff": 16}})
    words = texts(parse(charts.architecture(trace)))
    assert "block 0 of 5" in words and "block 4 of 5" in words and "block 2 of 5" not in words
    assert "blocks 1–3: the same as block 0" in words


def test_small_map_links_every_step_and_marks_the_current_one(default_trace):
    links = {key: f"../{key}/" for key in STEP_KEYS}
    svg = charts.architecture(default_trace, current="feedforward-backward", links=links, small=True)
    root = parse(svg)
    anchors = list(root.iter(SVG + "a"))
    assert sorted(a.get("href") for a in anchors) == sorted(links.values())
    current = [a for a in anchors if a.get("aria-current") == "step"]
    assert len(current) == 1 and current[0].get("href") == "../feedforward-backward/"
    assert "cu" in classes(current[0])
    assert "This page: feed-forward backward." in root.find(SVG + "desc").text


def test_small_map_without_links_is_an_image_and_still_marks_the_current_step(default_trace):
    svg = charts.architecture(default_trace, current="attention", small=True)
    root = parse(svg)
    assert root.get("role") == "img"
    assert not list(root.iter(SVG + "a"))
    assert svg.count('aria-current="step"') == 1
    assert charts.architecture(default_trace, small=True).count("aria-current") == 0


def test_small_map_names_the_configured_optimizer():
    trace = _run(CONFIGS["sgd"])
    words = texts(parse(charts.architecture(trace, small=True)))
    assert "sgd update of every weight (lr 0.100)" in words
    # the optimizer's box is the step `optimizer`, whose page is named after the optimizer (13-sgd.html)
    linked = charts.architecture(trace, links={"optimizer": "13-sgd.html"}, current="optimizer", small=True)
    assert 'href="13-sgd.html" class="cu" aria-current="step"' in linked


# --------------------------------------------------------------------------- bars, histogram


def test_grad_norms_and_update_sizes_cover_every_parameter(default_trace):
    grads, updates = charts.grad_norms(default_trace), charts.update_sizes(default_trace)
    params = [e for e in default_trace.index.values() if isinstance(e, dict)]
    assert [g[0] for g in grads] == [e["initial"] for e in params] == [u[0] for u in updates]
    assert len(grads) == 16
    wte = default_trace.index["transformer.wte.weight"]
    g = default_trace[wte["grad"]]
    assert grads[0][1:] == (pytest.approx(np.linalg.norm(g)), pytest.approx(np.abs(g).max()))
    u = default_trace[wte["updated"]] - default_trace[wte["initial"]]
    assert updates[0][1:] == (pytest.approx(np.linalg.norm(u)), pytest.approx(np.abs(u).max()))
    assert len(charts.grad_norms(_run(CONFIGS["two-layers"]))) == 28


def test_bars_draw_two_series_with_labels_and_the_largest_value(default_trace):
    items = charts.grad_norms(default_trace)
    root = parse(charts.bars(items, "Gradient size per tensor", "gradient"))
    rects = list(root.iter(SVG + "rect"))
    assert sum("b1" in classes(r) for r in rects) == len(items) + 1  # + legend swatch
    assert sum("b2" in classes(r) for r in rects) == len(items) + 1
    words = texts(root)
    for name, *_ in items:
        assert name in words
    assert "L2 norm" in words and "largest |value|" in words and "gradient" in words
    biggest = max(items, key=lambda i: i[1])
    assert f"Largest L2 norm: {biggest[0]} ({sig(biggest[1])})" in root.find(SVG + "desc").text
    widths = [float(r.get("width")) for r in rects if "b1" in classes(r)][1:]  # without the legend swatch
    assert widths.index(max(widths)) == items.index(biggest)


def test_bar_lengths_are_proportional():
    root = parse(charts.bars([("a", 1.0), ("b", 2.0), ("c", 0.5)], "T", "u"))
    w = [float(r.get("width")) for r in root.iter(SVG + "rect") if "b1" in classes(r)]
    assert w[1] == pytest.approx(2 * w[0], abs=0.1) and w[2] == pytest.approx(w[0] / 2, abs=0.1)


def test_histogram_counts_every_value(default_trace):
    values = charts.all_updates(default_trace)
    assert values.size == sum(default_trace[e["initial"]].size for e in default_trace.index.values()
                              if isinstance(e, dict))
    root = parse(charts.histogram(values, 30, "Distribution of updates", "update"))
    desc = root.find(SVG + "desc").text
    assert f"{values.size} values in update" in desc
    bars_drawn = [r for r in root.iter(SVG + "rect") if "b1" in classes(r)]
    assert 1 <= len(bars_drawn) <= 30
    assert "count" in texts(root) and "update" in texts(root)
    lr = default_trace.config["optimizer"]["lr"]
    assert charts.all_updates(default_trace, per_lr=True) == pytest.approx(np.abs(values) / lr)


# --------------------------------------------------------------------------- line, before/after


def test_a_loss_that_reaches_zero_has_no_log_scale():
    """A learning rate of 10 on two words drives the loss to exactly 0 (which once failed the build: a log scale
    needs positive values): the linear chart alone, and the sentence says how far it fell."""
    from site_build.facts import train

    trace = engine.run(config_from_dict({"seed": 1, "optimizer": {"lr": 10}, "data": {"texts": ["the cat"]},
                                         "train_steps": 20}, "test"))
    assert float(np.asarray(trace["train.loss"])[-1]) == 0.0
    html = charts.loss_curves(trace)
    assert html.count("<svg") == 1 and "<details" not in html
    assert train.loss_change(trace).startswith(": all the way to zero")


def test_loss_curve_linear_and_log_have_numbered_ticks(default_trace):
    html = charts.loss_curves(default_trace)
    assert html.count("<svg") == 2 and "<details" in html and "<summary>Log scale</summary>" in html
    linear, log = re.findall(r"<svg.*?</svg>", html)
    lin_words, log_words = texts(parse(linear)), texts(parse(log))
    assert {"0", "50", "100", "150", "200"} <= set(lin_words)
    assert {"0", "1", "2", "3"} <= set(lin_words)
    assert {"0.001", "0.01", "0.1", "1", "10"} <= set(log_words)
    assert "training step" in lin_words and "loss (nats)" in log_words
    losses = default_trace["train.loss"]
    points = parse(log).find(f".//{SVG}polyline").get("points").split()
    assert len(points) == losses.size
    desc = parse(linear).find(SVG + "desc").text
    assert sig(losses[0]) in desc and sig(losses[-1]) in desc


def test_log_line_over_a_short_range_has_intermediate_ticks():
    root = parse(charts.line([0, 1, 2], [2.0, 0.9, 0.3], "T", "x", "y", log=True))
    assert {"0.1", "0.2", "0.5", "1", "2", "5", "10"} <= set(texts(root))


def test_log_line_rejects_non_positive_values():
    with pytest.raises(ValueError, match="positive"):
        charts.line([0, 1], [1.0, 0.0], "T", "x", "y", log=True)


def test_line_maps_values_to_heights():
    root = parse(charts.line([0, 1, 2], [0.0, 1.0, 2.0], "T", "x", "y"))
    pts = [tuple(map(float, p.split(","))) for p in root.find(f".//{SVG}polyline").get("points").split()]
    assert pts[0][1] > pts[1][1] > pts[2][1]
    assert pts[0][1] - pts[1][1] == pytest.approx(pts[1][1] - pts[2][1], abs=0.2)


def test_before_after_has_two_bars_per_prediction(varied):
    label, trace = varied
    root = parse(charts.before_after(trace))
    targets = trace.labels["targets"]
    predicted = [(b, t) for b, row in enumerate(targets) for t, w in enumerate(row) if w != "<ignored>"]
    rects = list(root.iter(SVG + "rect"))
    assert sum("b1" in classes(r) for r in rects) == len(predicted) + 1
    assert sum("b2" in classes(r) for r in rects) == len(predicted) + 1
    words = texts(root)
    b, t = predicted[-1]
    word = f"{trace.labels['inputs'][b][t]} → {targets[b][t]}"
    assert (f"{b + 1}: {word}" if len(targets) > 1 else word) in words
    after = trace["train.target_prob.after"][b, t]
    assert f"{after:.3f}" in words


# --------------------------------------------------------------------------- CSS


def test_css_colours_come_from_the_one_palette_with_a_light_and_a_dark_value():
    style = STYLE.read_text(encoding="utf-8")
    charts_css = CSS.read_text(encoding="utf-8")
    palette = style[style.index("/* palette"):style.index("/* end of palette */")]
    used = set(re.findall(r"var\((--[a-z0-9-]+)\)", charts_css))
    assert {"--pos", "--neg", "--fg", "--line", "--mask", "--hatch", "--bar2", "--on-fill"} <= used
    root = re.search(r":root \{([^}]*)\}", palette).group(1)
    colours = dict(re.findall(r"(--[a-z0-9-]+): ([^;]+);", root))
    assert len(re.findall(r"(--[a-z0-9-]+):", root)) == len(colours)  # each colour defined once
    assert used <= colours.keys()  # every colour the charts use is in the palette
    themed = {name for name, value in colours.items() if value.startswith("light-dark(")}
    assert themed >= used - {"--changed"}  # ...with a light and a dark value
    # the theme switch: an explicit theme sets color-scheme, which light-dark() follows; auto follows the system
    assert "color-scheme: light dark;" in root
    assert ':root[data-theme="light"] { color-scheme: light; }' in palette
    assert ':root[data-theme="dark"] { color-scheme: dark; }' in palette
    # no colour is written anywhere else
    for text in (style.replace(palette, ""), charts_css):
        assert not re.findall(r"#[0-9a-fA-F]{3,8}\b|light-dark\(", text)


def test_css_styles_every_class_the_charts_use(default_trace):
    css = CSS.read_text(encoding="utf-8")
    styled = set(re.findall(r"\.([a-z][a-z0-9-]*)", css))
    used = set()
    for svg in every_chart(default_trace).values():
        for value in re.findall(r'class="([^"]+)"', svg):
            used |= set(value.split())
    unstyled = used - styled - {"cells"} - {c for c in used if c.startswith("chart-")}
    assert not unstyled


def test_a_histogram_of_many_tensors_has_the_exact_median(monkeypatch):
    """Past WHOLE_MAX values the parts are moved into one array and the median found by partitioning it: it must
    be exactly numpy's median of all the values (ties, ranges a few representable numbers wide, odd and even
    counts), the counts numpy's histogram of them all, the mean theirs to rounding."""
    from site_build.charts import plots

    rng = np.random.default_rng(5)
    monkeypatch.setattr(plots, "WHOLE_MAX", 50)
    for trial in range(300):
        parts = []
        for _ in range(int(rng.integers(1, 6))):
            m = int(rng.integers(1, 400))
            parts.append([rng.standard_normal(m), np.round(rng.standard_normal(m), 1),
                          1.0 + (rng.random(m) < 0.1) * 2.2e-16 * rng.integers(1, 4, m),
                          np.where(rng.random(m) < 0.5, 1.0, np.nextafter(1.0, 2.0))][trial % 4])
        whole = np.concatenate(parts)
        bins = int(rng.integers(1, 30))
        counted = plots.count(lambda parts=parts: iter(parts), bins)
        assert counted.median == float(np.median(whole)), trial
        assert counted.mean == pytest.approx(float(whole.mean()), rel=1e-12, abs=1e-15)
        assert np.array_equal(counted.counts, np.histogram(whole, bins=bins, range=(counted.lo, counted.hi))[0])
        assert counted.n == whole.size and (counted.lo_v, counted.hi_v) == (whole.min(), whole.max())
        assert np.array_equal(np.concatenate(parts), whole)  # the caller's arrays are left as they were


@pytest.mark.parametrize("shape", [(1000, 300), (50257, 7), (37, 5000), (200, 200)])
def test_pooling_a_slice_at_a_time_is_pooling_the_whole(monkeypatch, shape):
    """The heatmap's blocks are pooled a few block rows at a time (plots.POOL_SLICE); each block must get exactly
    the value of largest magnitude of the whole array's block, ragged last blocks included."""
    from site_build.charts import plots

    values = np.random.default_rng(sum(shape)).standard_normal(shape)
    bh, bw = plots.blocks(*shape)
    r0, c0 = np.arange(0, shape[0], bh), np.arange(0, shape[1], bw)
    hi = np.maximum.reduceat(np.maximum.reduceat(values, r0, axis=0), c0, axis=1)
    lo = np.minimum.reduceat(np.minimum.reduceat(values, r0, axis=0), c0, axis=1)
    expected = np.where(np.abs(hi) >= np.abs(lo), hi, lo)
    monkeypatch.setattr(plots, "POOL_SLICE", 1000)  # many slices, most cutting no block
    got, block = plots.pooled(values)
    assert block == (bh, bw) and np.array_equal(got, expected)
