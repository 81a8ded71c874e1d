"""GPT-2 (Hugging Face `GPT2LMHeadModel` without dropout) and a Llama (`LlamaForCausalLM`), forward and backward,
one recorded op a line.

Read `forward` beside nanoGPT's `GPT.forward` and `block_forward` beside its `Block.forward`, and `llama_forward`
beside Hugging Face's `LlamaModel.forward` (modeling_llama.py); each `*_backward` calls the ops of its forward in
exactly reverse order. Every line makes trace records named in docs/records.md
(the ops are in `engine.tape`, the arithmetic in `engine.layers`, the notation in `engine.notation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import checkpoint
from .config import Config, ModelConfig
from .tape import BT, BTC, Tape

# (record suffix, shape keys, axes) of one block's parameters, in Hugging Face's named_parameters order
BLOCK_PARAMS = [
    ("ln_1.weight", ("C",), ("d_model",)),
    ("ln_1.bias", ("C",), ("d_model",)),
    ("attn.c_attn.weight", ("C", "N"), ("d_model", "qkv")),
    ("attn.c_attn.bias", ("N",), ("qkv",)),
    ("attn.c_proj.weight", ("C", "C"), ("d_model", "d_model")),
    ("attn.c_proj.bias", ("C",), ("d_model",)),
    ("ln_2.weight", ("C",), ("d_model",)),
    ("ln_2.bias", ("C",), ("d_model",)),
    ("mlp.c_fc.weight", ("C", "F"), ("d_model", "d_ff")),
    ("mlp.c_fc.bias", ("F",), ("d_ff",)),
    ("mlp.c_proj.weight", ("F", "C"), ("d_ff", "d_model")),
    ("mlp.c_proj.bias", ("C",), ("d_model",)),
]


# A Llama block's parameters: (record suffix, Hugging Face suffix, shape keys, axes), in LlamaDecoderLayer's
# named_parameters order. Every matrix is kept in nn.Linear's (out, in) layout, as the state_dict holds it, and
# multiplies as x @ W.T; the norms are ln_1, ln_2 (and ln_f) as in GPT-2, so a block's records read alike.
LLAMA_BLOCK_PARAMS = [
    ("attn.q_proj.weight", "self_attn.q_proj.weight", ("C", "C"), ("d_model", "d_model")),
    ("attn.k_proj.weight", "self_attn.k_proj.weight", ("K", "C"), ("kv_dim", "d_model")),
    ("attn.v_proj.weight", "self_attn.v_proj.weight", ("K", "C"), ("kv_dim", "d_model")),
    ("attn.o_proj.weight", "self_attn.o_proj.weight", ("C", "C"), ("d_model", "d_model")),
    ("mlp.gate_proj.weight", "mlp.gate_proj.weight", ("F", "C"), ("d_ff", "d_model")),
    ("mlp.up_proj.weight", "mlp.up_proj.weight", ("F", "C"), ("d_ff", "d_model")),
    ("mlp.down_proj.weight", "mlp.down_proj.weight", ("C", "F"), ("d_model", "d_ff")),
    ("ln_1.weight", "input_layernorm.weight", ("C",), ("d_model",)),
    ("ln_2.weight", "post_attention_layernorm.weight", ("C",), ("d_model",)),
]


def param_specs(cfg: Config) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    """(record name, HF state_dict key, shape, axes) for every parameter, in HF order."""
    m = cfg.model
    if m.arch == "llama":
        return llama_param_specs(cfg)
    size = {"C": m.d_model, "N": 3 * m.d_model, "F": m.d_ff}
    specs = [("wte", "transformer.wte.weight", (len(m.vocab), m.d_model), ("vocab", "d_model")),
             ("wpe", "transformer.wpe.weight", (m.n_positions, m.d_model), ("positions", "d_model"))]
    for i in range(m.n_layers):
        for suffix, keys, axes in BLOCK_PARAMS:
            specs.append((f"L{i}.{suffix}", f"transformer.h.{i}.{suffix}", tuple(size[k] for k in keys), axes))
    specs += [("ln_f.weight", "transformer.ln_f.weight", (m.d_model,), ("d_model",)),
              ("ln_f.bias", "transformer.ln_f.bias", (m.d_model,), ("d_model",))]
    if not m.tie_embeddings:  # its own output layer, last (as in HF), so the other weights are drawn as when tied
        specs.append(("lm_head.weight", "lm_head.weight", (len(m.vocab), m.d_model), ("vocab", "d_model")))
    return specs


def llama_param_specs(cfg: Config) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    m = cfg.model
    size = {"C": m.d_model, "K": m.kv_heads * (m.d_model // m.n_heads), "F": m.d_ff}
    specs = [("wte", "model.embed_tokens.weight", (len(m.vocab), m.d_model), ("vocab", "d_model"))]
    for i in range(m.n_layers):
        for suffix, hf, keys, axes in LLAMA_BLOCK_PARAMS:
            specs.append((f"L{i}.{suffix}", f"model.layers.{i}.{hf}", tuple(size[k] for k in keys), axes))
    specs.append(("ln_f.weight", "model.norm.weight", (m.d_model,), ("d_model",)))
    if not m.tie_embeddings:
        specs.append(("lm_head.weight", "lm_head.weight", (len(m.vocab), m.d_model), ("vocab", "d_model")))
    return specs


def output_weight(cfg: Config) -> str:
    """The parameter the logits are made with: the token table when tied (GPT-2), else `lm_head.weight`."""
    return "wte" if cfg.model.tie_embeddings else "lm_head.weight"


def init_params(cfg: Config) -> dict[str, np.ndarray]:
    """GPT-2's scheme: normal weights, residual projections scaled by 1/sqrt(2 n_layers), zero biases, LN 1/0;
    or the weights of the checkpoint the config names."""
    if cfg.model.checkpoint_dir:
        return checkpoint.weights(checkpoint.load(cfg.model.checkpoint_dir, cfg.source), param_specs(cfg), cfg.source)
    rng = np.random.default_rng(cfg.seed)
    std = cfg.model.init_std
    params = {}
    if cfg.model.arch == "llama":  # LlamaPreTrainedModel._init_weights: every matrix N(0, std²), the norms' weights 1
        for name, _, shape, _ in param_specs(cfg):
            params[name] = np.ones(shape) if len(shape) == 1 else rng.normal(0.0, std, shape)
        return params
    for name, _, shape, _ in param_specs(cfg):
        if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
            params[name] = np.ones(shape)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape)
        elif name.endswith("c_proj.weight"):  # both residual projections: keeps the stream's variance in check
            params[name] = rng.normal(0.0, std / math.sqrt(2 * cfg.model.n_layers), shape)
        else:
            params[name] = rng.normal(0.0, std, shape)
    return params


def tape(cfg: Config, params: dict[str, np.ndarray], ids: np.ndarray, targets: np.ndarray,
         record: Callable[..., Any] | None = None) -> Tape:
    """A tape holding the parameters and the batch, ready for `forward`."""
    axes = {name: ax for name, _, _, ax in param_specs(cfg)}
    return Tape({**params, "input_ids": ids, "targets": targets}, {**axes, "input_ids": BT, "targets": BT}, record)


# -- forward ---------------------------------------------------------------------------------------------------------
def forward(t: Tape, cfg: Config, start: int = 0) -> str:
    """Embeddings, the blocks, the final LayerNorm, the logits (through the token table when tied, else through
    `lm_head.weight`) and the loss; returns the loss's record name.

    From block `start` on when the tape already holds that block's input (`block_input(start)`)."""
    if cfg.model.arch == "llama":
        return llama_forward(t, cfg, start)
    x = t.embed("input_ids") if start == 0 else block_input(start)
    for i in range(start, cfg.model.n_layers):
        x = block_forward(t, f"L{i}.", x, cfg.model.n_heads)
    x = t.layernorm("ln_f", x)
    logits = t.logits(x, output_weight(cfg))
    return t.cross_entropy(logits, "targets")


def block_input(i: int) -> str:
    """The record that goes into block i (the last block's output goes into the final LayerNorm, i = n_layers)."""
    return "embed.out" if i == 0 else f"L{i - 1}.resid_2"


def first_block(name: str, cfg: Config) -> int:
    """The first block whose input a change of parameter `name` alters: its own block, n_layers for the final
    LayerNorm and an untied output layer, 0 for the embeddings (whose wte is also the output layer when tied)."""
    if name.startswith("L"):
        return int(name[1:name.index(".")])
    return cfg.model.n_layers if name.startswith(("ln_f.", "lm_head.")) else 0


def block_forward(t: Tape, P: str, x: str, n_heads: int) -> str:
    """One block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""
    h = t.layernorm(P + "ln_1", x)
    h = attention_forward(t, P + "attn", h, n_heads)
    x = t.add(P + "resid_1", x, h)
    h = t.layernorm(P + "ln_2", x)
    h = mlp_forward(t, P + "mlp", h)
    return t.add(P + "resid_2", x, h)


def attention_forward(t: Tape, A: str, x: str, n_heads: int) -> str:
    """Causal self-attention, every head at once."""
    qkv = t.linear(A + ".qkv", x, A + ".c_attn")
    q, k, v = t.split_qkv(A, qkv, n_heads)
    z = attend(t, A, q, k, v)
    return t.linear(A + ".out", z, A + ".c_proj")


def attend(t: Tape, A: str, q: str, k: str, v: str) -> str:
    """Every head's scaled, masked scores, their softmax and the weighted values, the heads side by side again."""
    s = t.scores(A + ".scores", q, k)
    s = t.scale(A + ".scaled", s, head_dim(t, q))
    s = t.causal_mask(A + ".masked", s)
    a = t.softmax(A + ".weights", s)
    z = t.context(A + ".context", a, v)
    return t.merge_heads(A + ".merged", z)


def mlp_forward(t: Tape, M: str, x: str) -> str:
    """The feed-forward network: widen, GELU, project back."""
    h = t.linear(M + ".fc", x, M + ".c_fc")
    h = t.gelu(M + ".gelu", h)
    return t.linear(M + ".out", h, M + ".c_proj")


def head_dim(t: Tape, q: str) -> int:
    return int(t.v[q].shape[-1])


# -- backward: each function is its forward read from the bottom up ----------------------------------------------------
def backward(t: Tape, cfg: Config) -> dict[str, np.ndarray]:
    """The gradient of the loss for every record of `forward`, in reverse; returns {parameter: its gradient}."""
    if cfg.model.arch == "llama":
        return llama_backward(t, cfg)
    last = f"L{cfg.model.n_layers - 1}.resid_2"
    g = t.cross_entropy_backward("probs", "targets")
    g = t.logits_backward(g, "ln_f.out", output_weight(cfg))
    g = t.layernorm_backward("ln_f", g, last, f"grad.{last}")
    for i in reversed(range(cfg.model.n_layers)):
        x = f"L{i - 1}.resid_2" if i else "embed.out"
        g = block_backward(t, f"L{i}.", g, x, cfg.model.n_heads)
    t.embed_backward(g, "input_ids", tied=cfg.model.tie_embeddings)
    return t.grads


def block_backward(t: Tape, P: str, g: str, x: str, n_heads: int) -> str:
    """block_forward in reverse. `g` is the gradient of resid_2; a residual copies it into both branches, and
    where a value fed both a branch and the stream, the two gradients add."""
    h = mlp_backward(t, P + "mlp", g, P + "ln_2.out")
    h = t.layernorm_backward(P + "ln_2", h, P + "resid_1", f"grad.{P}resid_1.via_ln")
    g = t.add_grads(f"grad.{P}resid_1", g, h)
    h = attention_backward(t, P + "attn", g, P + "ln_1.out", n_heads)
    h = t.layernorm_backward(P + "ln_1", h, x, f"grad.{x}.via_ln")
    return t.add_grads(f"grad.{x}", g, h)


def attention_backward(t: Tape, A: str, g: str, x: str, n_heads: int) -> str:
    """attention_forward in reverse; `x` is the attention's input."""
    g = t.linear_backward(g, A + ".merged", A + ".c_proj")
    gq, gk, gv = attend_backward(t, A, g, A + ".k", A + ".v", n_heads)
    g = t.merge_qkv(f"grad.{A}.qkv", gq, gk, gv, n_heads)
    return t.linear_backward(g, x, A + ".c_attn")


def attend_backward(t: Tape, A: str, g: str, k: str, v: str, n_heads: int) -> tuple[str, str, str]:
    """attend in reverse, from the gradient of the merged heads to those of the queries, the keys and the values."""
    g = t.split_heads_backward(g, f"grad.{A}.context", n_heads)
    ga, gv = t.context_backward(g, A + ".weights", v)
    g = t.softmax_backward(ga, A + ".weights", f"grad.{A}.masked")
    g = t.causal_mask_backward(g, f"grad.{A}.scaled")
    g = t.scale_backward(g, f"grad.{A}.scores", head_dim(t, A + ".q"))
    gq, gk = t.scores_backward(g, A + ".q", k)
    return gq, gk, gv


def mlp_backward(t: Tape, M: str, g: str, x: str) -> str:
    """mlp_forward in reverse; `x` is the MLP's input."""
    g = t.linear_backward(g, M + ".gelu", M + ".c_proj")
    g = t.gelu_backward(g, M + ".fc")
    return t.linear_backward(g, x, M + ".c_fc")


# -- Llama: RMSNorm, rotary positions, grouped-query attention, SwiGLU; no biases, no position table ---------------
def llama_forward(t: Tape, cfg: Config, start: int = 0) -> str:
    """The token embeddings, the rotary tables, the blocks, the final RMSNorm, the logits and the loss."""
    m = cfg.model
    x = t.token_embed("input_ids") if start == 0 else block_input(start)
    t.rope_tables(int(t.v["input_ids"].shape[1]), m.d_model // m.n_heads, m.rope_theta)
    for i in range(start, m.n_layers):
        x = llama_block_forward(t, f"L{i}.", x, m)
    x = t.rmsnorm("ln_f", x, m.norm_eps)
    logits = t.logits(x, output_weight(cfg))
    return t.cross_entropy(logits, "targets")


def llama_block_forward(t: Tape, P: str, x: str, m: ModelConfig) -> str:
    """One block: x + attn(rmsnorm_1(x)), then x + swiglu(rmsnorm_2(x))."""
    h = t.rmsnorm(P + "ln_1", x, m.norm_eps)
    h = llama_attention_forward(t, P + "attn", h, m)
    x = t.add(P + "resid_1", x, h)
    h = t.rmsnorm(P + "ln_2", x, m.norm_eps)
    h = llama_mlp_forward(t, P + "mlp", h)
    return t.add(P + "resid_2", x, h)


def llama_attention_forward(t: Tape, A: str, x: str, m: ModelConfig) -> str:
    """Causal grouped-query attention: queries and keys turned by their position, each K/V head shared by a group."""
    q = t.project(A + ".xq", x, A + ".q_proj")
    k = t.project(A + ".xk", x, A + ".k_proj")
    v = t.project(A + ".xv", x, A + ".v_proj")
    q = t.split_heads(A + ".q_heads", q, m.n_heads)
    k = t.split_heads(A + ".k_heads", k, m.kv_heads, kv=True)
    v = t.split_heads(A + ".v", v, m.kv_heads, kv=True)
    q = t.rope(A + ".q", q)
    k = t.rope(A + ".k", k)
    k = t.repeat_kv(A + ".k_rep", k, group_size(m))
    v = t.repeat_kv(A + ".v_rep", v, group_size(m))
    z = attend(t, A, q, k, v)
    return t.project(A + ".out", z, A + ".o_proj")


def llama_mlp_forward(t: Tape, M: str, x: str) -> str:
    """SwiGLU: a gate and an up projection, SiLU of the gate times the up, projected down."""
    gate = t.project(M + ".gate", x, M + ".gate_proj")
    up = t.project(M + ".up", x, M + ".up_proj")
    h = t.swiglu(M, gate, up)
    return t.project(M + ".out", h, M + ".down_proj")


def group_size(m: ModelConfig) -> int:
    """Query heads per key/value head."""
    return m.n_heads // m.kv_heads


def llama_backward(t: Tape, cfg: Config) -> dict[str, np.ndarray]:
    m = cfg.model
    last = f"L{m.n_layers - 1}.resid_2"
    g = t.cross_entropy_backward("probs", "targets")
    g = t.logits_backward(g, "ln_f.out", output_weight(cfg))
    g = t.rmsnorm_backward("ln_f", g, last, f"grad.{last}", m.norm_eps)
    for i in reversed(range(m.n_layers)):
        g = llama_block_backward(t, f"L{i}.", g, block_input(i), m)
    t.token_embed_backward(g, "input_ids", tied=m.tie_embeddings)
    return t.grads


def llama_block_backward(t: Tape, P: str, g: str, x: str, m: ModelConfig) -> str:
    """llama_block_forward in reverse; as in GPT-2, a residual copies the gradient into both branches."""
    h = llama_mlp_backward(t, P + "mlp", g, P + "ln_2.out")
    h = t.rmsnorm_backward(P + "ln_2", h, P + "resid_1", f"grad.{P}resid_1.via_ln", m.norm_eps)
    g = t.add_grads(f"grad.{P}resid_1", g, h)
    h = llama_attention_backward(t, P + "attn", g, P + "ln_1.out", m)
    h = t.rmsnorm_backward(P + "ln_1", h, x, f"grad.{x}.via_ln", m.norm_eps)
    return t.add_grads(f"grad.{x}", g, h)


def llama_attention_backward(t: Tape, A: str, g: str, x: str, m: ModelConfig) -> str:
    """llama_attention_forward in reverse. A K/V head served a group of query heads, so its gradient is the sum of
    theirs (repeat_kv_backward); x fed three projections, so its gradient is the sum of three."""
    g = t.project_backward(g, A + ".merged", A + ".o_proj")
    gq, gk, gv = attend_backward(t, A, g, A + ".k_rep", A + ".v_rep", m.n_heads)
    gv = t.repeat_kv_backward(gv, f"grad.{A}.v", group_size(m))
    gk = t.repeat_kv_backward(gk, f"grad.{A}.k", group_size(m))
    gk = t.rope_backward(gk, f"grad.{A}.k_heads")
    gq = t.rope_backward(gq, f"grad.{A}.q_heads")
    gv = t.merge_heads_grad(f"grad.{A}.xv", gv)
    gk = t.merge_heads_grad(f"grad.{A}.xk", gk)
    gq = t.merge_heads_grad(f"grad.{A}.xq", gq)
    hv = t.project_backward(gv, x, A + ".v_proj", f"grad.{x}.from_v")
    hk = t.project_backward(gk, x, A + ".k_proj", f"grad.{x}.from_k")
    hq = t.project_backward(gq, x, A + ".q_proj", f"grad.{x}.from_q")
    h = t.add_grads(f"grad.{x}.from_kv", hk, hv)
    return t.add_grads(f"grad.{x}", hq, h)


def llama_mlp_backward(t: Tape, M: str, g: str, x: str) -> str:
    """llama_mlp_forward in reverse; x fed the gate and the up projection, so its gradient is the sum of two."""
    g = t.project_backward(g, M + ".hidden", M + ".down_proj")
    ggate, gup = t.swiglu_backward(M, g, M + ".gate", M + ".up")
    hu = t.project_backward(gup, x, M + ".up_proj", f"grad.{x}.from_up")
    hg = t.project_backward(ggate, x, M + ".gate_proj", f"grad.{x}.from_gate")
    return t.add_grads(f"grad.{x}", hg, hu)


def loss(cfg: Config, params: dict[str, np.ndarray], ids: np.ndarray, targets: np.ndarray,
         start: int = 0, x: np.ndarray | None = None) -> float:
    """The loss alone, recording nothing (finite differences); from block `start`, whose input is `x`, when given
    (the blocks before it would compute exactly that again)."""
    t = tape(cfg, params, ids, targets)
    if start:
        t.v[block_input(start)], t.axes[block_input(start)] = x, BTC
    return float(t.v[forward(t, cfg, start)])
