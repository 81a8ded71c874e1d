"""Backward passes against central finite differences in float64: each layer alone, then the whole model."""

import numpy as np
import pytest

from engine import layers as L
from engine import model
from engine.config import config_from_dict
from engine.run import tokenize
from engine.verify import central_difference

H = 1e-6


def numeric_grad(f, x, dout):
    """d sum(f(x) * dout) / dx by central differences, element by element."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        up = np.sum(f(x) * dout)
        x[i] = old - H
        down = np.sum(f(x) * dout)
        x[i] = old
        g[i] = (up - down) / (2 * H)
    return g


rng = np.random.default_rng(0)


def close(a, b, tol=1e-7):
    assert np.max(np.abs(a - b)) < tol, np.max(np.abs(a - b))


def test_layernorm_backward():
    x, w, b = rng.normal(size=(2, 3, 5)), rng.normal(size=5), rng.normal(size=5)
    dout = rng.normal(size=(2, 3, 5))
    mean, var, xhat, _ = L.layernorm_forward(x, w, b, 1e-5)
    _, dx, dw, db = L.layernorm_backward(dout, xhat, var, w, 1e-5)
    close(dx, numeric_grad(lambda x_: L.layernorm_forward(x_, w, b, 1e-5)[3], x, dout))
    close(dw, numeric_grad(lambda w_: L.layernorm_forward(x, w_, b, 1e-5)[3], w, dout))
    close(db, numeric_grad(lambda b_: L.layernorm_forward(x, w, b_, 1e-5)[3], b, dout))


def test_linear_backward():
    x, w, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 6)), rng.normal(size=6)
    dout = rng.normal(size=(2, 3, 6))
    dx, dw, db = L.linear_backward(dout, x, w)
    close(dx, numeric_grad(lambda x_: L.linear_forward(x_, w, b), x, dout))
    close(dw, numeric_grad(lambda w_: L.linear_forward(x, w_, b), w, dout))
    close(db, numeric_grad(lambda b_: L.linear_forward(x, w, b_), b, dout))


def test_attention_backward():
    qkv = rng.normal(size=(2, 4, 12))
    dout = rng.normal(size=(2, 4, 4))
    a = L.attention_forward(qkv, 2)
    g = L.attention_backward(dout, a)
    close(g["qkv"], numeric_grad(lambda q: L.attention_forward(q, 2)["merged"], qkv, dout))


def test_gelu_softmax_backward():
    x = rng.normal(size=(3, 5)) * 2
    dout = rng.normal(size=(3, 5))
    close(L.gelu_backward(dout, x), numeric_grad(L.gelu_forward, x, dout))
    y = L.softmax_forward(x)
    close(L.softmax_backward(dout, y), numeric_grad(L.softmax_forward, x, dout))


def test_cross_entropy_and_logits_backward():
    logits = rng.normal(size=(2, 3, 7))
    targets = np.array([[1, 2, 3], [4, -100, -100]])
    probs = L.cross_entropy_forward(logits, targets)[0]
    d = L.cross_entropy_backward(probs, targets)
    close(d, numeric_grad(lambda z: L.cross_entropy_forward(z, targets)[3], logits, np.float64(1.0)))
    x, wte = rng.normal(size=(2, 3, 4)), rng.normal(size=(7, 4))
    dx, dwte = L.logits_backward(d, x, wte)
    close(dx, numeric_grad(lambda x_: L.logits_forward(x_, wte), x, d))
    close(dwte, numeric_grad(lambda w_: L.logits_forward(x, w_), wte, d))


def test_embedding_backward_scatter_adds_repeated_words():
    wte, wpe = rng.normal(size=(5, 3)), rng.normal(size=(6, 3))
    ids = np.array([[1, 3, 1, 2]])
    dout = rng.normal(size=(1, 4, 3))
    dwte, dwpe = L.embedding_backward(dout, ids, 5, 6)
    close(dwte, numeric_grad(lambda w: L.embedding_forward(w, wpe, ids)[2], wte, dout))
    close(dwpe, numeric_grad(lambda w: L.embedding_forward(wte, w, ids)[2], wpe, dout))
    assert np.allclose(dwte[1], dout[0, 0] + dout[0, 2])  # word 1 used twice


def test_projection_backward():
    """nn.Linear's layout, x @ W.T with W (out, in): Llama's projections and the logits."""
    x, w = rng.normal(size=(2, 3, 4)), rng.normal(size=(6, 4))
    dout = rng.normal(size=(2, 3, 6))
    dx, dw = L.projection_backward(dout, x, w)
    close(dx, numeric_grad(lambda x_: L.projection_forward(x_, w), x, dout))
    close(dw, numeric_grad(lambda w_: L.projection_forward(x, w_), w, dout))


def test_rmsnorm_backward():
    x, w = rng.normal(size=(2, 3, 5)), rng.normal(size=5)
    dout = rng.normal(size=(2, 3, 5))
    ms, xhat, _ = L.rmsnorm_forward(x, w, 1e-6)
    _, dx, dw = L.rmsnorm_backward(dout, xhat, ms, w, 1e-6)
    close(dx, numeric_grad(lambda x_: L.rmsnorm_forward(x_, w, 1e-6)[2], x, dout))
    close(dw, numeric_grad(lambda w_: L.rmsnorm_forward(x, w_, 1e-6)[2], w, dout))
    assert np.allclose((xhat ** 2).mean(-1), ms / (ms + 1e-6))  # unit root mean square, but for ε


def test_rope_backward_is_the_transposed_rotation():
    cos, sin = L.rope_tables(5, 6, 10000.0)
    x, dout = rng.normal(size=(2, 3, 5, 6)), rng.normal(size=(2, 3, 5, 6))
    close(L.rope_backward(dout, cos, sin), numeric_grad(lambda x_: L.rope_forward(x_, cos, sin), x, dout))
    y = L.rope_forward(x, cos, sin)
    # dimension d pairs with d + D/2 (Hugging Face's rotate_half): each pair keeps its length, position 0 is not turned
    assert np.allclose(x[..., :3] ** 2 + x[..., 3:] ** 2, y[..., :3] ** 2 + y[..., 3:] ** 2)
    assert np.array_equal(y[:, :, 0], x[:, :, 0]) and not np.allclose(y[:, :, 1], x[:, :, 1])
    # pair j turns by t * theta^(-2j/D): at position 2, pair 1 of D = 6 by 2 / 10000^(1/3)
    angle = 2 / 10000.0 ** (2 / 6)
    a, b = x[0, 0, 2, 1], x[0, 0, 2, 4]
    assert np.isclose(y[0, 0, 2, 1], a * np.cos(angle) - b * np.sin(angle))
    assert np.isclose(y[0, 0, 2, 4], b * np.cos(angle) + a * np.sin(angle))
    # turning back by the transposed rotation gives the input again
    assert np.allclose(L.rope_backward(y, cos, sin), x)


def test_repeat_kv_backward_sums_over_each_group():
    x, dout = rng.normal(size=(2, 2, 4, 3)), rng.normal(size=(2, 6, 4, 3))
    close(L.repeat_kv_backward(dout, 3), numeric_grad(lambda x_: L.repeat_kv_forward(x_, 3), x, dout))
    assert np.array_equal(L.repeat_kv_forward(x, 3)[:, 5], x[:, 1])  # query head 5 reads K/V head 5 // 3 = 1
    assert np.allclose(L.repeat_kv_backward(dout, 3)[:, 1], dout[:, 3:6].sum(axis=1))


def test_silu_and_swiglu_backward():
    x, dout = rng.normal(size=(3, 5)) * 3, rng.normal(size=(3, 5))
    close(L.silu_backward(dout, x), numeric_grad(L.silu_forward, x, dout))
    gate, up, dh = rng.normal(size=(2, 3, 4)) * 2, rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    act, _ = L.swiglu_forward(gate, up)
    dup, dact, dgate = L.swiglu_backward(dh, gate, up, act)
    close(dgate, numeric_grad(lambda g: L.swiglu_forward(g, up)[1], gate, dh))
    close(dup, numeric_grad(lambda u: L.swiglu_forward(gate, u)[1], up, dh))
    close(dact, dh * up)


MODEL_VARIANTS = {
    "default": {},
    "two_layers_batch": {"model": {"n_layers": 2, "d_model": 8, "d_ff": 12},
                         "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
    "three_heads": {"model": {"d_model": 12, "n_heads": 3, "d_ff": 16}, "seed": 5},
    "untied": {"model": {"tie_embeddings": False}},  # lm_head.weight is its own parameter
    # Llama: grouped-query attention (2 query heads per K/V head), untied as by default
    "llama_gqa": {"model": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}},
    # tied, two layers, one K/V head for all, a padded batch and another rotary base
    "llama_mqa_two_layers_batch_tied": {"model": {"arch": "llama", "n_layers": 2, "d_model": 8, "d_ff": 12,
                                                  "n_heads": 2, "n_kv_heads": 1, "tie_embeddings": True,
                                                  "rope_theta": 100.0, "norm_eps": 1e-5},
                                        "data": {"texts": ["the cat sat", "the dog ran on the mat"]}},
}
EVERY_ELEMENT = ("default", "untied", "llama_gqa")


@pytest.mark.parametrize("name", MODEL_VARIANTS)
def test_every_parameter_gradient_matches_central_differences(name):
    cfg = config_from_dict(MODEL_VARIANTS[name], "test")
    ids, targets = tokenize(cfg)
    params = model.init_params(cfg)
    t = model.tape(cfg, params, ids, targets)
    model.forward(t, cfg)
    grads = model.backward(t, cfg)
    assert set(grads) == set(params)
    sample = np.random.default_rng(1)
    for pname, p in params.items():
        flat = p.reshape(-1)
        # every element on the default config and its untied twin; a sample of 40 per tensor on the others
        idx = (range(flat.size) if name in EVERY_ELEMENT
               else sample.choice(flat.size, min(40, flat.size), replace=False))
        for i in idx:
            num = central_difference(cfg, params, ids, targets, pname, int(i), H)
            assert abs(num - grads[pname].reshape(-1)[i]) < 1e-8, (pname, i, num, grads[pname].reshape(-1)[i])


def test_the_builds_check_covers_an_untied_output_layer():
    """The build's finite differences (engine.verify) on an untied run: lm_head.weight is checked like every tensor,
    starting at the final LayerNorm's input (it alters nothing before the logits), and wte from the embeddings."""
    from engine import run
    from engine.verify import finite_differences

    cfg = config_from_dict({**MODEL_VARIANTS["untied"], "train_steps": 0}, "test")
    assert model.first_block("lm_head.weight", cfg) == cfg.model.n_layers and model.first_block("wte", cfg) == 0
    checks = finite_differences(cfg, run(cfg))
    assert {"grad.lm_head.weight", "grad.wte", "direction"} <= set(checks)
    assert all(c["ok"] for c in checks.values()), {k: c["max_abs_err"] for k, c in checks.items()}


def test_the_directional_check_sees_one_wrong_gradient_element():
    """Two forward passes test every gradient element at once: a single wrong one (a W_O vs W_Oᵀ kind of slip in
    one entry) moves Σ ∇θ·u far past the tolerance."""
    from engine import run
    from engine.verify import directional_check

    cfg = config_from_dict({"train_steps": 0}, "test")
    trace = run(cfg)
    params = {name: trace[name].copy() for name, _, _, _ in model.param_specs(cfg)}
    good = directional_check(cfg, params, trace["input_ids"], trace["targets"], trace)
    assert good["ok"] and good["max_abs_err"] < 1e-9 and good["values"] == sum(p.size for p in params.values())
    grad = trace.record("grad.L0.attn.c_proj.weight").value
    grad[3, 5] += 0.01
    bad = directional_check(cfg, params, trace["input_ids"], trace["targets"], trace)
    assert not bad["ok"] and bad["max_abs_err"] > 100 * bad["tol"]


def test_the_gradients_can_be_checked_while_the_run_goes_on(tmp_path, monkeypatch):
    """engine.run(on_gradients=) hands over a trace of the records so far as soon as the gradients exist (a big
    build checks them while the optimizer step goes on): it has every weight, activation and gradient and nothing
    of the optimizer, and finite differences on it give exactly what they give on the finished trace, also when
    the run writes its values to a file."""
    import engine.budget
    import engine.trace
    from engine import run
    from engine.verify import finite_differences

    raw = {"model": {"d_model": 32, "d_ff": 128, "n_heads": 2, "n_layers": 2}, "train_steps": 1}
    for spill in (False, True):
        if spill:
            monkeypatch.setattr(engine.budget, "INLINE_MAX_VALUES", 1000)
            monkeypatch.setattr(engine.trace, "INLINE_MAX_VALUES", 1000)
            monkeypatch.setattr(engine.trace, "SPILL_VALUES", 500)
        cfg = config_from_dict(raw, "test")
        seen = []
        full = run(cfg, spill_dir=tmp_path, on_gradients=seen.append)
        (partial,) = seen
        names = partial.names()
        assert names == full.names()[:len(names)]
        assert {r.name for r in full.records if r.phase in ("forward", "backward")} == set(names)
        assert not any(n.startswith(("opt.", "updated.")) for n in names)
        assert (full.values_file is not None) == spill
        assert finite_differences(cfg, partial) == finite_differences(cfg, full)


def test_the_builds_check_covers_a_llama_run():
    """The build's finite differences (engine.verify) on a llama run: every tensor (no wpe, no biases; lm_head.weight
    from the final RMSNorm's input on), and the whole gradient along one direction."""
    from engine import run
    from engine.verify import finite_differences

    cfg = config_from_dict({**MODEL_VARIANTS["llama_gqa"], "train_steps": 0}, "test")
    checks = finite_differences(cfg, run(cfg))
    assert set(checks) == {f"grad.{name}" for name, _, _, _ in model.param_specs(cfg)} | {"direction"}
    assert "grad.L0.attn.k_proj.weight" in checks and "grad.wpe" not in checks
    assert all(c["ok"] for c in checks.values()), {k: c["max_abs_err"] for k, c in checks.items()}
