"""The Llama forward pages' facts (site_build/facts/llama_fwd.py), the rotary angle chart and the macros the Llama
pages lean on (a key/value head picked with head=, the Jacobian and the picture of an RMSNorm row) agree with NumPy
on llama traces: the expected values are worked out here from the records' inputs (the embeddings, the unturned
queries and keys, the config's rope_theta), not read from the facts."""

from __future__ import annotations

import html
import math
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from engine.explain import jacobian as engine_jacobian
from site_build.charts import rope_angle_chart, rope_angles
from site_build.facts import llama_fwd as f
from site_build.macros import MacroError, PageContext, page_globals
from site_build.mathslots import MathSlots

LLAMA = {"arch": "llama", "d_ff": 16, "n_positions": 16}
CONFIGS = {
    "grouped, one block": {"model": {**LLAMA, "d_model": 16, "n_heads": 4, "n_kv_heads": 2},
                           "data": {"texts": ["the cat sat on the mat"]}, "train_steps": 1},
    "one key/value head for all, two blocks, a padded batch": {
        "model": {**LLAMA, "d_model": 12, "n_heads": 3, "n_kv_heads": 1, "n_layers": 2},
        "data": {"texts": ["the dog ran on the mat the cat", "the dog"]}, "train_steps": 1},
    "no grouping, wide heads, a long text": {
        "model": {**LLAMA, "d_model": 32, "n_heads": 2, "rope_theta": 500.0},
        "data": {"texts": ["the cat sat on the mat the dog ran on the mat the cat sat"]}, "train_steps": 1},
    "one word": {"model": {**LLAMA, "d_model": 8, "n_heads": 2}, "data": {"texts": ["cat"]}, "train_steps": 1},
}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def macros_for(trace) -> SimpleNamespace:
    return SimpleNamespace(**page_globals(PageContext(trace, MathSlots())))


def row_in(trace) -> np.ndarray:
    """The worked RMSNorm row as it comes in: the embedding of the worked position, from the token table."""
    t = min(2, int((trace["targets"][0] >= 0).sum()) - 1)
    return np.asarray(trace["wte"])[int(trace["input_ids"][0, t])].astype(float)


# -- RMSNorm ---------------------------------------------------------------------------------------------------------
def test_the_worked_row_figures(trace) -> None:
    x, eps = row_in(trace), trace.config["model"]["norm_eps"]
    assert f.ms(trace) == pytest.approx((x * x).mean(), rel=1e-12)
    assert f.rms(trace) == pytest.approx(math.sqrt((x * x).mean() + eps), rel=1e-12)
    assert f.mean(trace) == pytest.approx(x.mean(), abs=1e-15)
    assert f.var(trace) + f.mean_squared(trace) == pytest.approx(f.ms(trace), rel=1e-12)  # ν = σ² + μ²
    assert f.mean_percent(trace) == pytest.approx(100 * x.mean() ** 2 / (x * x).mean(), rel=1e-9)
    assert f.mean_percent_max(trace) >= f.mean_percent(trace)
    assert f.mean_small(trace) == (f.mean_share_max(trace) < 0.2)
    assert f.xhat_mean(trace) == pytest.approx(x.mean() / f.rms(trace), rel=1e-9, abs=1e-15)
    layernorm = (x - x.mean()) / math.sqrt(x.var() + eps)
    assert f.ln_gap(trace) == pytest.approx(np.abs(x / f.rms(trace) - layernorm).max(), rel=1e-9, abs=1e-15)


def test_a_shift_moves_rmsnorm_and_not_layernorm(trace) -> None:
    x, eps = row_in(trace), trace.config["model"]["norm_eps"]
    c = math.sqrt((x * x).mean() + eps)
    y = x + c
    moved = np.abs(y / math.sqrt((y * y).mean() + eps) - x / c).max()
    assert f.shift_change(trace) == pytest.approx(moved, rel=1e-9)
    assert f.shift_change(trace) > 0.1
    assert f.shift_change_ln(trace) < 1e-12


def test_the_jacobian_is_the_finite_difference_one(trace) -> None:
    x, eps, C = row_in(trace), trace.config["model"]["norm_eps"], trace.config["model"]["d_model"]

    def norm(v: np.ndarray) -> np.ndarray:
        return v / np.sqrt((v * v).mean() + eps)

    h = 1e-6
    numeric = np.stack([(norm(x + h * e) - norm(x - h * e)) / (2 * h) for e in np.eye(C)], axis=1)
    J = f.jacobian(trace)
    assert np.allclose(J, numeric, rtol=1e-6, atol=1e-6 * np.abs(J).max())
    t = min(2, int((trace["targets"][0] >= 0).sum()) - 1)
    engine_J, how = engine_jacobian(trace, "L0.ln_1.xhat", (0, t))  # what the page's jacobian() macro shows
    assert np.allclose(engine_J, J, rtol=1e-12, atol=1e-12) and "ν" in how
    assert f.jac_radial(trace) == pytest.approx(np.linalg.norm(numeric @ x), rel=1e-4, abs=1e-9)
    assert f.jac_radial(trace) < 1e-2 * f.jac_ones(trace)  # the scale direction is (almost) lost, a shift is not
    assert f.jac_diag(trace) < f.inv_rms(trace)
    # LayerNorm's Jacobian would kill 1; RMSNorm's does not, and the fact says by how much
    assert f.jac_ones(trace) == pytest.approx(np.linalg.norm(numeric @ np.ones(C)), rel=1e-5)


def test_the_row_read_aloud(trace) -> None:
    sentence = html.unescape(str(f.aloud(trace))).replace("\u2212", "-")
    x = row_in(trace)
    t = min(2, int((trace["targets"][0] >= 0).sum()) - 1)
    assert f"Row {t} (“{trace.labels['inputs'][0][t]}”)" in sentence
    hi, lo = f.extremes(trace)
    assert (hi.x, lo.x) == (x.max(), x.min()) and hi.c == int(x.argmax()) and lo.c == int(x.argmin())
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", sentence.split("comes in with ")[1])]
    assert numbers[0] == pytest.approx(f.rms(trace), rel=0.06)
    assert numbers[1] == pytest.approx(x.mean(), rel=0.06, abs=1e-12)


# -- grouped-query attention -------------------------------------------------------------------------------------
def test_the_groups_are_what_repeat_kv_copies(trace) -> None:
    m = trace.config["model"]
    H, G = m["n_heads"], m["n_kv_heads"]
    r = f.group(trace)
    assert r * G == H and f.kv_heads(trace) == G
    groups = f.groups(trace)
    assert sorted(h for g in groups for h in g.heads) == list(range(H))
    for g in groups:
        for h in g.heads:
            assert np.array_equal(trace["L0.attn.k_rep"][:, h], trace["L0.attn.k"][:, g.g])
            assert np.array_equal(trace["L0.attn.v_rep"][:, h], trace["L0.attn.v"][:, g.g])
    assert f.kv_head(trace) == [g.g for g in groups if H - 1 in g.heads][0]
    assert f.kv_weights(trace) == 2 * G * (m["d_model"] // H) * m["d_model"]
    assert f.kv_weights_full(trace) == 2 * m["d_model"] ** 2
    assert f.cache_numbers(trace) * r == f.cache_numbers_full(trace)
    assert f.kv_dim(trace) == trace["L0.attn.xk"].shape[-1]


# -- rotary position embeddings --------------------------------------------------------------------------------------
def test_the_angles_are_the_tables(trace) -> None:
    m = trace.config["model"]
    D = m["d_model"] // m["n_heads"]
    theta = m["rope_theta"]
    T = trace["input_ids"].shape[1]
    expected = np.arange(T)[:, None] * theta ** (-2.0 * np.arange(D // 2) / D)[None, :]
    assert np.allclose(rope_angles(trace), expected, rtol=1e-14, atol=0)
    assert np.allclose(np.cos(np.concatenate([expected, expected], 1)), trace["rope.cos"], atol=1e-14)
    assert np.allclose(np.sin(np.concatenate([expected, expected], 1)), trace["rope.sin"], atol=1e-14)
    for i in range(D // 2):
        assert f.inv_freq(trace, i) == pytest.approx(theta ** (-2 * i / D), rel=1e-14)
    assert f.theta(trace) == theta and f.pairs(trace) == D // 2
    assert f.slowest_turns(trace) == pytest.approx(expected[-1, -1], rel=1e-14)


def test_the_rotation_is_rotate_half_and_not_neighbours(trace) -> None:
    q0, q = np.asarray(trace["L0.attn.q_heads"]), np.asarray(trace["L0.attn.q"])
    cos, sin = np.asarray(trace["rope.cos"]), np.asarray(trace["rope.sin"])
    assert np.allclose(f.rotate(q0, cos, sin), q, rtol=1e-13, atol=1e-14)
    # the easy slip, pairing neighbours (2i, 2i + 1), gives other queries wherever a position turns
    neighbours = np.empty_like(q0)
    neighbours[..., 0::2], neighbours[..., 1::2] = -q0[..., 1::2], q0[..., 0::2]
    if q0.shape[2] > 1:
        assert not np.allclose(q0 * cos + neighbours * sin, q)


def test_the_worked_pair(trace) -> None:
    p = f.pair(trace)
    R = np.array([[math.cos(p.angle), -math.sin(p.angle)], [math.sin(p.angle), math.cos(p.angle)]])
    assert np.allclose(R @ [p.a, p.b], [p.a2, p.b2], rtol=1e-12, atol=1e-14)
    assert (p.cos, p.sin) == pytest.approx((math.cos(p.angle), math.sin(p.angle)), abs=1e-14)
    assert p.length2 == pytest.approx(p.length, rel=1e-12)
    assert p.j == p.i + f.pairs(trace) and p.p == f.pos(trace)
    assert (p.a, p.b) == (trace["L0.attn.q_heads"][0, 0, p.p, p.i], trace["L0.attn.q_heads"][0, 0, p.p, p.j])


def test_a_score_sees_only_the_distance(trace) -> None:
    t, s = f.pos(trace), f.key_pos(trace)
    assert f.score_here(trace) == pytest.approx(trace["L0.attn.scores"][0, 0, t, s], rel=1e-12, abs=1e-14)
    assert f.score_shifted(trace) == pytest.approx(f.score_here(trace), rel=1e-10, abs=1e-13)
    q = np.asarray(trace["L0.attn.q_heads"][0, 0, t], dtype=float)
    k = np.asarray(trace["L0.attn.k_heads"][0, 0, s], dtype=float)
    assert f.score_unrotated(trace) == pytest.approx(q @ k, rel=1e-12)
    if t != s:  # swapping the positions turns by the opposite angle: another score
        assert f.score_swapped(trace) != pytest.approx(f.score_here(trace), rel=1e-6)


def test_repeated_words_have_equal_rows(trace) -> None:
    words = trace.labels["inputs"][0][:int((trace["targets"][0] >= 0).sum())]
    gap = f.repeat_gap(trace)
    assert (gap is None) == (len(set(words)) == len(words))
    if gap is not None:
        assert gap == 0.0


# -- the chart and the macros ----------------------------------------------------------------------------------------
def test_the_rope_chart(trace) -> None:
    svg = rope_angle_chart(trace)
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("viewBox").startswith("0 0 360 ")
    assert root.find(SVG + "title").text == "Rotary angle per position and pair"
    desc = root.find(SVG + "desc").text
    T, pairs = rope_angles(trace).shape
    assert f"columns, 0 to {T - 1}" in desc and f"rows, 0 to {pairs - 1}" in desc
    hands = [p for p in root.iter(SVG + "path") if p.get("class") == "ln"][0].get("d")
    drawn = hands.count("M")
    assert drawn == min(T, 8 - 1 if T > 8 else T) * min(pairs, 6 - 1 if pairs > 6 else pairs)
    assert ("Shown:" in desc) == (T > 8 or pairs > 6)
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b|rgb\(|style=|fill=\"|stroke=\"", svg)
    css = open("templates/assets/charts.css", encoding="utf-8").read()
    for cls in {c for attr in re.findall(r'class="([^"]+)"', svg) for c in attr.split()} - {"chart", "chart-rope"}:
        assert f".chart .{cls} " in css or f".chart .{cls}," in css, cls
    assert len(svg) < 20_000


def test_a_key_value_head_is_picked_with_head(trace) -> None:
    m = macros_for(trace)
    G = trace.config["model"]["n_kv_heads"]
    html_k = str(m.matrix("L0.attn.k", head=G - 1))
    assert f"key/value head {G - 1}" in html_k
    shown = re.findall(r"<td class=\"[pnzm][1-9]?\"[^>]*>([^<]*)</td>", html_k)
    assert shown == [f"{x:.4f}".replace("-", "\u2212") for x in trace["L0.attn.k"][0, G - 1].ravel()]
    with pytest.raises(MacroError, match=f"'L0.attn.k' has {G} heads?: pass head=0..{G - 1}"):
        m.matrix("L0.attn.k")
    with pytest.raises(MacroError, match="must be in"):
        m.matrix("L0.attn.v", head=G)


def test_the_rmsnorm_picture_and_jacobian_macros(trace) -> None:
    m = macros_for(trace)
    picture = str(m.layernorm_picture("L0.ln_1", row=0))
    assert "scaling by the root mean square" in picture and "no centring" in picture
    assert "(I - x̂ x̂ᵀ / C) / √(ν+ε)" in str(m.jacobian("L0.ln_1.xhat", (0, 0)))
    assert "chart-rope" in str(m.rope_picture())


def test_rope_picture_needs_a_llama_run(small_trace) -> None:
    with pytest.raises(MacroError, match=r"rope_picture\(\) needs a run with rotary position embeddings"):
        macros_for(small_trace).rope_picture()


def test_the_map_of_the_steps_names_rmsnorm(trace, small_trace) -> None:
    from site_build.charts import architecture

    llama_map, gpt2_map = architecture(trace, small=True), architecture(small_trace, small=True)
    assert ">RMSNorm<" in llama_map and ">LayerNorm<" not in llama_map
    assert ">LayerNorm<" in gpt2_map and ">RMSNorm<" not in gpt2_map
