"""Greedy generation, one new token at a time, with a cache of each block's keys and values.

The model's `forward` recomputes every position and the loss; decoding 64 words that way runs 64 forward passes
over ever longer prefixes (half a minute at GPT-2-small sizes). Here each new token passes through the blocks
alone, its query attending to the cached keys and values of the tokens before it: the same arithmetic as
`model.forward` at the last position (the causal mask makes later positions irrelevant), one token-pass per word.
tests/engine/test_generate.py checks the words against decoding with `model.forward`.
"""

from __future__ import annotations

import math

import numpy as np

from engine import layers as L
from engine.config import Config
from engine.tape import EPS

GENERATE_READS = 2_000_000_000  # weights the greedy text may read: each word reads every weight once


def words_to_generate(tokens: int, n_params: int) -> int:
    """As many words as the text has tokens, but at most GENERATE_READS / n_params of them (and at least 8): a
    word of GPT-2 small reads its 124M weights, 1 GB, so it writes 16 words, not 64."""
    return max(1, min(tokens, max(8, GENERATE_READS // max(1, n_params))))


def generate(params: dict[str, np.ndarray], cfg: Config, bos: int, length: int) -> np.ndarray:
    """From `<bos>` alone, append the word of the highest logit, `length` times (int64 ids)."""
    if cfg.model.arch == "llama":
        return _generate_llama(params, cfg, bos, length)
    n_heads = cfg.model.n_heads
    cache: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in range(cfg.model.n_layers)]
    seq = [int(bos)]
    out = "wte" if cfg.model.tie_embeddings else "lm_head.weight"  # the output layer (model.output_weight)
    for pos in range(length):
        x = (params["wte"][seq[-1]] + params["wpe"][pos])[None, None, :]  # (1, 1, C): the newest token
        for i, (keys, values) in enumerate(cache):
            P = f"L{i}."
            h = _layernorm(params, P + "ln_1", x)
            q, k, v = L.split_qkv(L.linear_forward(h, params[P + "attn.c_attn.weight"],
                                                   params[P + "attn.c_attn.bias"]), n_heads)  # (1, H, 1, D) each
            keys.append(k)
            values.append(v)
            K, V = np.concatenate(keys, axis=2), np.concatenate(values, axis=2)  # (1, H, S, D): itself and before
            weights = L.softmax_forward(L.scores_forward(q, K) * (1.0 / math.sqrt(q.shape[-1])))
            z = L.merge_heads(L.context_forward(weights, V))
            x = x + L.linear_forward(z, params[P + "attn.c_proj.weight"], params[P + "attn.c_proj.bias"])
            h = _layernorm(params, P + "ln_2", x)
            h = L.gelu_forward(L.linear_forward(h, params[P + "mlp.c_fc.weight"], params[P + "mlp.c_fc.bias"]))
            x = x + L.linear_forward(h, params[P + "mlp.c_proj.weight"], params[P + "mlp.c_proj.bias"])
        logits = L.logits_forward(_layernorm(params, "ln_f", x), params[out])  # (1, 1, V)
        seq.append(int(np.argmax(logits[0, -1])))
    return np.array(seq[1:], dtype=np.int64)


def _layernorm(params: dict[str, np.ndarray], ln: str, x: np.ndarray) -> np.ndarray:
    return L.layernorm_forward(x, params[ln + ".weight"], params[ln + ".bias"], EPS)[3]


def _generate_llama(params: dict[str, np.ndarray], cfg: Config, bos: int, length: int) -> np.ndarray:
    """`generate` for model.llama_forward: the newest token's query and key turned by its position's angle, each
    cached K/V head read by its group of query heads."""
    m = cfg.model
    cos, sin = L.rope_tables(length, m.d_model // m.n_heads, m.rope_theta)  # (length, D) each
    group = m.n_heads // m.kv_heads
    cache: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in range(m.n_layers)]
    seq = [int(bos)]
    out = "wte" if m.tie_embeddings else "lm_head.weight"
    for pos in range(length):
        x = params["wte"][seq[-1]][None, None, :]  # (1, 1, C): the newest token
        turn = cos[pos:pos + 1], sin[pos:pos + 1]  # (1, D): its position's angles
        for i, (keys, values) in enumerate(cache):
            P = f"L{i}."
            h = L.rmsnorm_forward(x, params[P + "ln_1.weight"], m.norm_eps)[2]
            q = L.rope_forward(_heads(h, params[P + "attn.q_proj.weight"], m.n_heads), *turn)  # (1, H, 1, D)
            keys.append(L.rope_forward(_heads(h, params[P + "attn.k_proj.weight"], m.kv_heads), *turn))
            values.append(_heads(h, params[P + "attn.v_proj.weight"], m.kv_heads))  # (1, G, 1, D)
            K = L.repeat_kv_forward(np.concatenate(keys, axis=2), group)  # (1, H, S, D)
            V = L.repeat_kv_forward(np.concatenate(values, axis=2), group)
            weights = L.softmax_forward(L.scores_forward(q, K) * (1.0 / math.sqrt(q.shape[-1])))
            x = x + L.projection_forward(L.merge_heads(L.context_forward(weights, V)), params[P + "attn.o_proj.weight"])
            h = L.rmsnorm_forward(x, params[P + "ln_2.weight"], m.norm_eps)[2]
            gate = L.projection_forward(h, params[P + "mlp.gate_proj.weight"])
            up = L.projection_forward(h, params[P + "mlp.up_proj.weight"])
            x = x + L.projection_forward(L.swiglu_forward(gate, up)[1], params[P + "mlp.down_proj.weight"])
        logits = L.logits_forward(L.rmsnorm_forward(x, params["ln_f.weight"], m.norm_eps)[2], params[out])
        seq.append(int(np.argmax(logits[0, -1])))
    return np.array(seq[1:], dtype=np.int64)


def _heads(x: np.ndarray, w: np.ndarray, n_heads: int) -> np.ndarray:
    return L.split_heads(L.projection_forward(x, w), n_heads)  # (1, n_heads, 1, D)
