"""GPT-2 (Hugging Face `GPT2LMHeadModel` without dropout), forward and backward, one recorded op a line.

Read `forward` beside nanoGPT's `GPT.forward` and `block_forward` beside its `Block.forward`; each `*_backward`
calls the ops of its forward in exactly reverse order. Every line makes trace records named in docs/records.md
(the ops are in `engine.tape`, the arithmetic in `engine.layers`, the notation in `engine.notation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import checkpoint
from .config import Config
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


def param_specs(cfg: Config) -> list[tuple[str, str, tuple[int, ...], tuple[str, ...]]]:
    """(record name, HF state_dict key, shape, axes) for every parameter, in HF order."""
    m = cfg.model
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
    s = t.scores(A + ".scores", q, k)
    s = t.scale(A + ".scaled", s, head_dim(t, q))
    s = t.causal_mask(A + ".masked", s)
    a = t.softmax(A + ".weights", s)
    z = t.context(A + ".context", a, v)
    z = t.merge_heads(A + ".merged", z)
    return t.linear(A + ".out", z, A + ".c_proj")


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
    g = t.split_heads_backward(g, f"grad.{A}.context", n_heads)
    ga, gv = t.context_backward(g, A + ".weights", A + ".v")
    g = t.softmax_backward(ga, A + ".weights", f"grad.{A}.masked")
    g = t.causal_mask_backward(g, f"grad.{A}.scaled")
    g = t.scale_backward(g, f"grad.{A}.scores", head_dim(t, A + ".q"))
    gq, gk = t.scores_backward(g, A + ".q", A + ".k")
    g = t.merge_qkv(f"grad.{A}.qkv", gq, gk, gv, n_heads)
    return t.linear_backward(g, x, A + ".c_attn")


def mlp_backward(t: Tape, M: str, g: str, x: str) -> str:
    """mlp_forward in reverse; `x` is the MLP's input."""
    g = t.linear_backward(g, M + ".gelu", M + ".c_proj")
    g = t.gelu_backward(g, M + ".fc")
    return t.linear_backward(g, x, M + ".c_fc")


def loss(cfg: Config, params: dict[str, np.ndarray], ids: np.ndarray, targets: np.ndarray,
         start: int = 0, x: np.ndarray | None = None) -> float:
    """The loss alone, recording nothing (finite differences); from block `start`, whose input is `x`, when given
    (the blocks before it would compute exactly that again)."""
    t = tape(cfg, params, ids, targets)
    if start:
        t.v[block_input(start)], t.axes[block_input(start)] = x, BTC
    return float(t.v[forward(t, cfg, start)])
