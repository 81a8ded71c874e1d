"""The Llama feed-forward and output pages' facts (site_build/facts/llama_ffn.py) agree with NumPy on llama traces:
SiLU's minimum solves its slope equation, the counts of gate inputs add up, the worked units are the entries the
pages say they are, the parameter counts are the model's own tensors, and the final RMSNorm's figures are what its
backward formula gives. And the SiLU picture the feed-forward page draws is well formed, styled and says what the
facts say."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.config import config_from_dict
from engine.explain import jacobian
from site_build import charts
from site_build.facts import grads
from site_build.facts import llama_ffn as f

CONFIGS = {
    "grouped-query, untied": {
        "model": {"arch": "llama", "d_model": 16, "n_heads": 4, "n_kv_heads": 2, "d_ff": 32, "n_positions": 8},
        "data": {"texts": ["the cat sat on the mat"]}, "train_steps": 1},
    "a padded batch, tied, two blocks": {
        "model": {"arch": "llama", "d_model": 8, "n_heads": 2, "d_ff": 12, "n_layers": 2, "n_positions": 8,
                  "tie_embeddings": True},
        "data": {"texts": ["the dog", "the dog ran on the mat"]}, "train_steps": 1},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def sigmoid(u):
    return 1 / (1 + np.exp(-u))


def last(trace) -> int:
    """The block the backward pages work through: the last, worked out here from the config."""
    return trace.config["model"]["n_layers"] - 1


def real(trace, name):
    n = int((np.asarray(trace["targets"][0]) >= 0).sum())
    return np.asarray(trace[name][0][:n], dtype=float)


def test_silu_minimum(trace) -> None:
    u, value = f.silu_min_u(trace), f.silu_min(trace)
    s = sigmoid(u)
    assert abs(s * (1 + u * (1 - s))) < 1e-12  # the slope is zero there
    assert value == pytest.approx(u * s, abs=1e-12) and value == pytest.approx(u + 1, abs=1e-12)
    grid = np.linspace(-6, 6, 120001)
    assert value <= (grid * sigmoid(grid)).min() + 1e-12  # and it is the minimum
    assert -1.3 < u < -1.25


def test_gate_counts_and_ranges(trace) -> None:
    gate, act, up, hid = (real(trace, f"L0.mlp.{n}") for n in ("gate", "act", "up", "hidden"))
    assert np.allclose(act, gate * sigmoid(gate)) and np.allclose(hid, act * up)
    assert f.entries(trace) == gate.size
    assert f.negatives(trace) == int((gate < 0).sum()) and f.positives(trace) == int((gate > 0).sum())
    assert f.negatives(trace) + f.positives(trace) <= f.entries(trace)
    assert f.gate_min(trace) == gate.min()
    assert f.act_min(trace) == act.min() >= f.silu_min(trace)
    ratio = sigmoid(gate[gate > 0])
    assert f.ratio_min(trace) == pytest.approx(ratio.min()) and f.ratio_max(trace) == pytest.approx(ratio.max())
    assert 0.5 < f.ratio_min(trace) <= f.ratio_max(trace) < 1
    assert f.shut(trace) == int((np.abs(act) < 0.25).sum())
    # a negative gate input turns the value's sign round: the product and the value have opposite signs there
    assert ((hid * up)[gate < 0] <= 0).all()


def test_worked_units(trace) -> None:
    row = f.row(trace)
    assert row == min(2, real(trace, "L0.mlp.gate").shape[0] - 1)
    hidden = np.asarray(trace["L0.mlp.hidden"][0][row])
    assert abs(hidden[f.unit(trace)]) == np.abs(hidden).max()
    gate = np.asarray(trace["L0.mlp.gate"][0][row])
    closed = f.closed(trace)
    assert (closed is None) == (gate.min() >= 0)
    if closed is not None:
        assert gate[closed] == gate.min() < 0
    back = np.asarray(trace[f"grad.L{last(trace)}.mlp.hidden"][0][grads.row(trace)])  # the backward pages' block
    assert abs(back[f.back_unit(trace)]) == np.abs(back).max()


def test_parameter_counts(trace) -> None:
    m = trace.config["model"]
    size = {r.name: trace[r.name].size for r in trace.records if r.op == "param"}
    assert f.params(trace) == sum(v for k, v in size.items() if k.startswith("L0.mlp."))
    assert f.attn_params(trace) == sum(v for k, v in size.items() if k.startswith("L0.attn."))
    assert f.kv_heads(trace) == m["n_kv_heads"]
    assert f.gelu_width(trace) * 2 * m["d_model"] == f.params(trace)  # a GELU network of that width: as many weights
    assert f.than_attention(trace) in ("more than", "as many as", "fewer than")


def test_flips_are_where_silu_slopes_down(trace) -> None:
    n = int((np.asarray(trace["targets"][0]) >= 0).sum())
    b = last(trace)  # the block the backward pages work through
    gate = np.asarray(trace[f"L{b}.mlp.gate"][0][:n])
    dact, dgate = np.asarray(trace[f"grad.L{b}.mlp.act"][0][:n]), np.asarray(trace[f"grad.L{b}.mlp.gate"][0][:n])
    flipped = (dact * dgate) < 0
    assert f.flips(trace) == int(flipped.sum())
    assert (gate[flipped] < f.silu_min_u(trace)).all()  # only left of the minimum does the slope turn negative
    assert f.back_entries(trace) == gate.size
    if flipped.any():
        t, j = np.argwhere(flipped)[0]
        assert (f.flip_position(trace), f.flip_unit(trace)) == (t, j)


def test_final_rmsnorm_figures(trace) -> None:
    t, eps = grads.row(trace), trace.record("ln_f.xhat").meta["eps"]
    last = trace.config["model"]["n_layers"] - 1
    x = np.asarray(trace[f"L{last}.resid_2"][0], dtype=float)
    r = math.sqrt(float((x[t] ** 2).mean()) + eps)
    assert f.inverse_rms(trace) == pytest.approx(1 / r, rel=1e-12)
    n = int((np.asarray(trace["targets"][0]) >= 0).sum())
    dx = np.asarray(trace[f"grad.L{last}.resid_2"][0][:n])
    xh = np.asarray(trace["ln_f.xhat"][0][:n])
    assert f.row_sum(trace) == pytest.approx(np.abs(dx.sum(axis=1)).max())
    assert f.row_dot(trace) == pytest.approx(np.abs((dx * xh).sum(axis=1)).max())
    assert f.row_dot(trace) < 1e-4 * f.grad_largest(trace)  # perpendicular to x̂, but for ε
    assert f.row_sum(trace) > 1e3 * f.row_dot(trace)  # and, unlike LayerNorm's, the rows do not sum to zero
    # the Jacobian (I − x̂x̂ᵀ/C)/r applied to the row gradient gives the engine's gradient of that row
    C = xh.shape[1]
    J = (np.eye(C) - np.outer(xh[t], xh[t]) / C) / r
    assert np.allclose(np.asarray(trace["grad.ln_f.xhat"][0][t]) @ J, dx[t], atol=1e-12)
    # the page's table: the engine's Jacobian of that row is this matrix, and central differences of the RMSNorm
    # itself agree with it
    shown, _ = jacobian(trace, "ln_f.xhat", (0, t))
    assert np.allclose(shown, J, atol=1e-14)
    h, numeric = 1e-6, np.zeros((C, C))
    for j in range(C):
        step = np.zeros(C)
        step[j] = h
        rms = [(x[t] + s) / math.sqrt(float(((x[t] + s) ** 2).mean()) + eps) for s in (step, -step)]
        numeric[:, j] = (rms[0] - rms[1]) / (2 * h)
    assert np.allclose(numeric, J, atol=1e-7)
    off = -np.outer(xh[t], xh[t])[~np.eye(C, dtype=bool)]
    assert f.negative_off_diagonal(trace) == int((off < 0).sum())
    assert f.off_diagonal(trace) == C * (C - 1)
    assert f.final_gains_one(trace) == bool((np.asarray(trace["ln_f.weight"]) == 1).all())


def test_the_larger_path(trace) -> None:
    b = last(trace)
    gate = np.linalg.norm(trace[f"grad.L{b}.ln_2.out.from_gate"])
    up = np.linalg.norm(trace[f"grad.L{b}.ln_2.out.from_up"])
    both = trace[f"grad.L{b}.ln_2.out.from_gate"] + trace[f"grad.L{b}.ln_2.out.from_up"]
    assert np.allclose(trace[f"grad.L{b}.ln_2.out"], both)
    assert f.larger_path(trace) == ("gate" if gate >= up else "up")


def test_the_silu_picture(trace) -> None:
    svg = charts.silu_chart(trace)
    assert svg == charts.silu_chart(trace)  # deterministic
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg" and root.get("role") == "img" and root.get("viewBox").startswith("0 0 360 ")
    title, desc = root.find(ns + "title"), root.find(ns + "desc")
    assert title.text.startswith("SiLU and its slope") and root.get("aria-labelledby") == \
        f"{title.get('id')} {desc.get('id')}"
    css = (Path(__file__).resolve().parents[2] / "templates" / "assets" / "charts.css").read_text(encoding="utf-8")
    used = {c for v in re.findall(r'class="([^"]+)"', svg) for c in v.split()}
    assert not used - set(re.findall(r"\.([a-z][a-z0-9-]*)", css)) - {c for c in used if c.startswith("chart-")}
    # the description counts the gate inputs as the page does, and finds SiLU's minimum where the facts put it
    assert f"the {f.entries(trace)} gate inputs" in desc.text
    assert f"{f.positives(trace)} are positive and {f.negatives(trace)} negative" in desc.text
    assert "near u = \u22121.28" in desc.text and "right of u = 1.28" in desc.text
    assert round(f.silu_min_u(trace), 2) == -1.28


def test_a_tiny_entry_squared_is_valid_tex() -> None:
    """The mean square's calc writes each entry squared: a tiny entry is m×10^e, so it must be bracketed first
    (m×10^{e}^2 is a KaTeX error)."""
    from engine.explain import explain

    trace = engine.run(config_from_dict(CONFIGS["grouped-query, untied"]))
    x = trace["L0.resid_1"]
    x[0, 0, 0], x[0, 0, 1] = 3.39e-4, -2.5e-5  # entries the calc writes as m×10^e
    lines = " ".join(explain(trace, "L0.ln_2.ms", (0, 0)).latex)
    assert "10^{-4}" in lines and "10^{-5}" in lines
    assert not re.search(r"10\^\{-?\d+\}\^", lines)  # no double superscript
