"""The Llama backward facts (site_build/facts/llama_bwd.py) say what the trace holds: every figure is worked out again
here with NumPy from the trace's inputs (the forward values, the weights, the gradients the facts do not read), on
llama configs with and without grouped-query attention, tied and untied, with one text and two."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import yaml

import engine
from engine.config import config_from_dict
from site_build.facts import llama_bwd as F
from site_build.facts import upd

LLAMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "llama.yaml").read_text(encoding="utf-8"))


def _llama(model: dict | None = None, **rest) -> dict:
    return {**LLAMA, "model": {**LLAMA["model"], **(model or {})}, "train_steps": 1, **rest}


CONFIGS = {
    "grouped, untied": _llama(),
    "no grouping": _llama({"n_kv_heads": 4}),
    "one key/value head, tied": _llama({"n_kv_heads": 1, "tie_embeddings": True}),
    "two texts, two layers": _llama({"n_layers": 2}, data={"texts": ["the cat", "the dog ran on the mat"]}),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def trace(request: pytest.FixtureRequest):
    return engine.run(config_from_dict(CONFIGS[request.param]))


def a(trace, name: str) -> np.ndarray:
    return np.asarray(trace[name], dtype=float)


def last(trace) -> int:
    """The block the backward pages work through, the last: worked out here from the config."""
    return trace.config["model"]["n_layers"] - 1


def at_last(trace, name: str) -> np.ndarray:
    """Record `name` of the last block, `L#` in the name standing for its number."""
    return a(trace, name.replace("L#", f"L{last(trace)}"))


def test_the_groups_are_the_ones_the_forward_pass_copied(trace):
    k, k_rep = a(trace, "L0.attn.k"), a(trace, "L0.attn.k_rep")
    H, H_kv = k_rep.shape[1], k.shape[1]
    assert (F.kv_heads(trace), F.group(trace), F.grouped(trace)) == (H_kv, H // H_kv, H > H_kv)
    for g, heads in F.head_groups(trace):
        assert heads == F.members(trace, g)
        for h in range(H):
            assert (h in heads) == bool((k_rep[:, h] == k[:, g]).all())
    assert F.round_robin(trace, 0) == [h for h in range(H) if h % H_kv == 0]
    assert F.kv_dim(trace) == a(trace, "L0.attn.xk").shape[-1]


def test_the_key_and_value_gradients_are_their_groups_sums(trace):
    for part in ("k", "v"):
        rep, kv = at_last(trace, f"grad.L#.attn.{part}_rep"), at_last(trace, f"grad.L#.attn.{part}")
        for g, heads in F.head_groups(trace):
            assert np.allclose(kv[:, g], sum(rep[:, h] for h in heads), rtol=0, atol=1e-15)
        first = rep[0]
        opposed = 0
        for _, heads in F.head_groups(trace):
            for s in range(first.shape[1]):
                for d in range(first.shape[2]):
                    signs = [np.sign(first[h, s, d]) for h in heads]
                    opposed += 1 in signs and -1 in signs
        assert F.opposed(trace, part) == opposed
    assert F.kv_entries(trace) == at_last(trace, "grad.L#.attn.k")[0].size
    if not F.grouped(trace):
        assert F.opposed(trace, "k") == 0


def test_the_rotary_backward_is_the_rotation_by_minus_the_angle(trace):
    T, D = a(trace, "rope.cos").shape
    theta = trace.config["model"]["rope_theta"]
    for t in range(T):
        for d in range(D):
            want = t * theta ** (-2 * (d % (D // 2)) / D)
            assert abs(np.cos(F.angle(trace, t, d)) - np.cos(want)) < 1e-12
            assert abs(np.sin(F.angle(trace, t, d)) - np.sin(want)) < 1e-12
    g, back = at_last(trace, "grad.L#.attn.q"), at_last(trace, "grad.L#.attn.q_heads")
    j = F.half(trace)
    for t in range(T):
        for i in range(j):
            c, s = np.cos(t * theta ** (-2 * i / D)), np.sin(t * theta ** (-2 * i / D))
            R = np.array([[c, -s], [s, c]])  # the forward turn of pair (i, i + D/2)
            pair = np.stack([g[..., t, i], g[..., t, i + j]], axis=-1)
            turned = pair @ R  # Rᵀ applied to each pair (as a row vector): the turn by minus the angle
            assert np.allclose(turned, np.stack([back[..., t, i], back[..., t, i + j]], axis=-1), atol=1e-14)
    assert F.unrotate_error(trace) < 1e-14
    assert F.rope_norm_error(trace) < 1e-13
    assert F.position_zero_same(trace) == bool((back[:, :, 0] == g[:, :, 0]).all())


def test_the_three_paths_add_up_and_the_largest_is_named(trace):
    x = at_last(trace, "L#.ln_1.out")
    shares = {}
    for p, w in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj")):
        grad_out = at_last(trace, f"grad.L#.attn.x{p}")
        share = grad_out @ at_last(trace, f"L#.attn.{w}.weight")  # (out, in): the input gets g W
        assert np.allclose(share, at_last(trace, f"grad.L#.ln_1.out.from_{p}"), atol=1e-15)
        dw = np.einsum("bto,bti->oi", grad_out, x)
        assert np.allclose(dw, at_last(trace, f"grad.L#.attn.{w}.weight"), atol=1e-14)
        shares[p] = float(np.linalg.norm(share))
    assert F.path_norms(trace) == pytest.approx(shares)
    assert F.largest_path(trace) == {"q": "queries", "k": "keys", "v": "values"}[max(shares, key=shares.get)]
    assert F.paths_add_error(trace) < 1e-15


def test_the_rmsnorm_backward_and_what_layernorm_would_add(trace):
    g, xhat, ms = at_last(trace, "grad.L#.ln_1.xhat"), at_last(trace, "L#.ln_1.xhat"), at_last(trace, "L#.ln_1.ms")
    x = a(trace, "embed.out" if last(trace) == 0 else f"L{last(trace) - 1}.resid_2")
    eps = trace.config["model"]["norm_eps"]
    rho = np.sqrt((x * x).mean(-1) + eps)[..., None]
    assert np.allclose(ms, (x * x).mean(-1), atol=1e-15)
    right = a(trace, "grad.embed.out.via_ln" if last(trace) == 0 else f"grad.L{last(trace) - 1}.resid_2.via_ln")
    assert np.allclose(right, (g - xhat * (g * xhat).mean(-1, keepdims=True)) / rho, atol=1e-13)
    wrong = right - g.mean(-1, keepdims=True) / rho
    assert F.rms_mean_term(trace) == pytest.approx(np.linalg.norm(wrong - right) / np.linalg.norm(right) * 100)


def test_the_output_projection_and_its_forgotten_transpose(trace):
    g, w = at_last(trace, "grad.L#.resid_1")[0], at_last(trace, "L#.attn.o_proj.weight")
    right = at_last(trace, "grad.L#.attn.merged")[0]
    assert np.allclose(g @ w, right, atol=1e-15)
    wrong = g @ w.T
    assert F.transpose_error(trace) == pytest.approx(np.linalg.norm(wrong - right) / np.linalg.norm(right) * 100)


def test_the_updates_page_works_the_right_elements(trace):
    lr = trace.config["optimizer"]["lr"]
    for at, move, name in ((upd.matrix_at, upd.matrix_move, "L0.mlp.gate_proj.weight"),
                           (F.gain_at, F.gain_move, "L0.ln_2.weight")):
        grad = np.abs(a(trace, "grad." + name))
        assert grad[at(trace)] == grad.max()
        assert move(trace) == pytest.approx(a(trace, "updated." + name)[at(trace)] - a(trace, name)[at(trace)])
    assert upd.matrix_move_lr(trace) == pytest.approx(upd.matrix_move(trace) / lr)
    assert upd.matrix_decays(trace) and not F.gain_decays(trace)  # decay: matrices
    read = set(np.asarray(trace["input_ids"]).ravel().tolist())
    vocab = len(trace.labels["vocab"])
    tied = trace.config["model"]["tie_embeddings"]
    unread = [] if tied else [v for v in range(vocab) if v not in read]
    assert F.unused_word(trace) == (unread[0] if unread else None)
    assert F.unused_count(trace) == len(unread)
    assert F.zero_in_wte(trace) == bool(unread)
    if unread:
        v = unread[0]
        assert (a(trace, "grad.wte")[v] == 0).all()
        decay = trace.config["optimizer"]["weight_decay"]
        assert F.unused_move(trace) == pytest.approx(-lr * decay * a(trace, "wte")[v, 0])
    headings = [h for h, _ in F.groups(trace)]
    assert headings[0] == "The token table" and "The final RMSNorm" in headings
    assert ("The output layer" in headings) == (not tied)
    assert sum(len(ts) for _, ts in F.groups(trace)) == len([k for k, v in trace.index.items() if isinstance(v, dict)])


def test_the_shared_optimizer_words_follow_the_architecture(trace):
    assert F.llama(trace)
    assert "RMSNorm gain" in F.one_axis(trace) and "bias" not in F.one_axis(trace)
    assert F.worked(trace).startswith("three")
    gpt2 = engine.run(config_from_dict({"train_steps": 0}))
    assert not F.llama(gpt2) and F.worked(gpt2).startswith("four")
    assert not F.zero_in_wte(gpt2)  # tied: the output side reaches every row


# -- the macros a llama page needs (the key/value-head axis, the symbols, the comparison) -----------------------------
def _macros(trace, other=None):
    from site_build.macros import PageContext, page_globals
    from site_build.mathslots import MathSlots

    ctx = PageContext(trace, MathSlots())
    if other is not None:
        ctx.run.other, ctx.run.other_label = other, "the other run"
    return page_globals(ctx)


def test_head_picks_a_key_value_head_and_says_so():
    trace = engine.run(config_from_dict(_llama()))
    m = _macros(trace)
    for g in range(F.kv_heads(trace)):
        html = str(m["matrix"]("grad.L0.attn.k", head=g))
        shown = re.findall(r"<td class=\"[pnzm][1-9]?\"[^>]*>([^<]*)</td>", html)
        assert shown == [f"{x:.4f}".replace("-", "\u2212") for x in a(trace, "grad.L0.attn.k")[0, g].ravel()]
        assert f"key/value head {g}" in html
    with pytest.raises(Exception, match="must be in 0..1"):
        m["matrix"]("grad.L0.attn.v", head=2)
    with pytest.raises(Exception, match="has 2 heads"):
        m["matrix"]("L0.attn.k")


def test_other_blocks_show_every_key_value_head():
    trace = engine.run(config_from_dict(_llama({"n_layers": 2})))
    html = str(_macros(trace)["other_blocks"](["grad.L{l}.attn.k"]))
    assert html.count('data-record="grad.L1.attn.k"') == F.kv_heads(trace)


def test_the_symbols_follow_the_architecture():
    trace = engine.run(config_from_dict(_llama()))
    m = _macros(trace)
    sizes, records = (unescape(str(m["symbols_table"](part))) for part in ("sizes", "records"))
    assert "key/value heads per block" in sizes and "LayerNorm" not in sizes and "GELU" not in sizes
    assert "cosines of the rotary angles" in records and "gradient of the keys: each K/V head" in records


def test_the_comparison_table_reads_both_traces():
    llama = engine.run(config_from_dict(_llama()))
    gpt2 = engine.run(config_from_dict({"train_steps": 1}))
    alone = str(_macros(llama)["arch_comparison"]())
    assert "--compare" in alone and "the other run" not in alone
    html = str(_macros(llama, gpt2)["arch_comparison"]())
    rows = {r[0]: r[1:] for r in (re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
                                  for row in re.findall(r"<tr>(.*?)</tr>", html)) if r}
    total = [sum(int(t[v["initial"]].size) for v in t.index.values() if isinstance(v, dict)) for t in (llama, gpt2)]
    assert rows["parameters"] == [str(n) for n in total]
    assert rows["… position table"] == ["0", str(gpt2["wpe"].size)]
    assert rows["loss before the step"] == [f"{float(t['loss']):.4f}" for t in (llama, gpt2)]
    assert "<code>rope</code>" in rows["operations only in this run"][0]
    assert "<code>gelu</code>" in rows["operations only in the other run"][1]


def test_the_backward_graph_follows_the_architecture():
    from site_build.charts.teaching import backward_graph

    llama = str(backward_graph(engine.run(config_from_dict(_llama()))))
    gpt2 = str(backward_graph(engine.run(config_from_dict({"train_steps": 0}))))
    assert "W_pe" not in llama and "RMS\u2081" in llama and "LN\u2081" not in llama and "SwiGLU" in llama
    assert "gradients add" in llama and "no position table" in llama
    assert "W_pe" in gpt2 and "LN\u2081" in gpt2 and "RMS" not in gpt2
