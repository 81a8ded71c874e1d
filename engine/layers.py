"""Forward/backward pairs, each `X_forward` directly above its `X_backward`, in float64 NumPy.

Axis letters used in the shape comments:
B batch (texts), T tokens (query positions), S key positions, C d_model, H heads,
D head size (C / H), F d_ff, V vocab, P n_positions, N 3*C (packed Q|K|V),
G key/value heads (Llama's grouped-query attention: each serves H / G query heads), R = H / G.
No autograd: every backward is the chain rule written out, and the tests check each one
against finite differences and against PyTorch.
"""

from __future__ import annotations

import math

import numpy as np

GELU_K = math.sqrt(2.0 / math.pi)  # the tanh approximation's constant
GELU_C = 0.044715


def token_embedding_forward(wte, ids):
    return wte[ids]  # (B, T, C): row ids[b, t] of the token table


def token_embedding_backward(dout, ids, vocab_size):
    dwte = np.zeros((vocab_size, dout.shape[-1]))  # (V, C)
    np.add.at(dwte, ids, dout)  # scatter-add: a word used twice receives two rows
    return dwte


def embedding_forward(wte, wpe, ids):
    tok = token_embedding_forward(wte, ids)  # (B, T, C)
    pos = wpe[: ids.shape[1]]  # (T, C): one row per position
    return tok, pos, tok + pos  # (B, T, C) broadcast over the batch


def embedding_backward(dout, ids, vocab_size, n_positions):
    dwte = token_embedding_backward(dout, ids, vocab_size)  # (V, C)
    dwpe = np.zeros((n_positions, dout.shape[-1]))  # (P, C); positions past T get zero
    dwpe[: ids.shape[1]] = dout.sum(axis=0)  # each position summed over the batch
    return dwte, dwpe


def layernorm_forward(x, w, b, eps):
    mean = x.mean(axis=-1)  # (B, T)
    var = ((x - mean[..., None]) ** 2).mean(axis=-1)  # (B, T) biased variance, as torch
    xhat = (x - mean[..., None]) / np.sqrt(var[..., None] + eps)  # (B, T, C)
    out = xhat * w + b  # (B, T, C)
    return mean, var, xhat, out


def layernorm_backward(dout, xhat, var, w, eps):
    dw = (dout * xhat).sum(axis=(0, 1))  # (C,)
    db = dout.sum(axis=(0, 1))  # (C,)
    dxhat = dout * w  # (B, T, C)
    rstd = 1.0 / np.sqrt(var[..., None] + eps)  # (B, T, 1)
    # The Jacobian of xhat w.r.t. x, applied without building it: subtract the mean of dxhat
    # (the mean is subtracted in the forward) and the projection on xhat (the variance divides).
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))  # (B, T, C)
    return dxhat, dx, dw, db


def _rows(x):
    return x.reshape(-1, x.shape[-1])  # (B*T, n): one matrix product for the whole batch, by BLAS


def linear_forward(x, w, b):
    # (B, T, in) @ (in, out) + (out,): GPT-2's Conv1D layout
    return (_rows(x) @ w).reshape(*x.shape[:-1], w.shape[1]) + b


def linear_backward(dout, x, w):
    dx = (_rows(dout) @ w.T).reshape(x.shape)  # (B, T, in): the transpose of W carries the gradient back
    dw = _rows(x).T @ _rows(dout)  # (in, out): summed over batch and tokens
    db = dout.sum(axis=(0, 1))  # (out,)
    return dx, dw, db


def split_heads(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)  # (B, H, T, D)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)  # (B, T, C)


def causal_mask(T):
    return np.tril(np.ones((T, T), dtype=bool))  # (T, S): True where key s <= query t


def split_qkv(qkv, n_heads):
    C = qkv.shape[-1] // 3
    return tuple(split_heads(qkv[..., i * C : (i + 1) * C], n_heads) for i in range(3))  # (B, H, T, D) each


def merge_qkv(dq, dk, dv):
    return np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 3C)


def scores_forward(q, k):
    return q @ k.swapaxes(-1, -2)  # (B, H, T, S): every query against every key


def scores_backward(dscores, q, k):
    dq = dscores @ k  # (B, H, T, D)
    dk = dscores.swapaxes(-1, -2) @ q  # (B, H, S, D)
    return dq, dk


def causal_mask_forward(x):
    return np.where(causal_mask(x.shape[-1]), x, -np.inf)  # (B, H, T, S): no peeking ahead


def causal_mask_backward(dout):
    return np.where(causal_mask(dout.shape[-1]), dout, 0.0)  # masked entries had no say


def context_forward(weights, v):
    return weights @ v  # (B, H, T, D): each query's weighted mix of the values


def context_backward(dcontext, weights, v):
    dweights = dcontext @ v.swapaxes(-1, -2)  # (B, H, T, S)
    dv = weights.swapaxes(-1, -2) @ dcontext  # (B, H, S, D)
    return dweights, dv


def attention_forward(qkv, n_heads):
    """Causal multi-head attention from the packed [Q|K|V] (the model records each step of it separately)."""
    q, k, v = split_qkv(qkv, n_heads)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = scores_forward(q, k)
    scaled = scores * scale
    masked = causal_mask_forward(scaled)
    weights = softmax_forward(masked)
    context = context_forward(weights, v)
    return dict(q=q, k=k, v=v, scale=scale, scores=scores, scaled=scaled, masked=masked,
                weights=weights, context=context, merged=merge_heads(context))


def attention_backward(dmerged, a):
    dcontext = split_heads(dmerged, a["q"].shape[1])  # (B, H, T, D)
    dweights, dv = context_backward(dcontext, a["weights"], a["v"])
    dmasked = softmax_backward(dweights, a["weights"])  # (B, H, T, S)
    dscaled = causal_mask_backward(dmasked)
    dscores = dscaled * a["scale"]  # (B, H, T, S)
    dq, dk = scores_backward(dscores, a["q"], a["k"])
    return dict(context=dcontext, weights=dweights, v=dv, masked=dmasked, scaled=dscaled,
                scores=dscores, q=dq, k=dk, qkv=merge_qkv(dq, dk, dv))


def softmax_forward(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # shift by the row max: same result, no overflow
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dout, y):
    # Jacobian diag(y) - y y^T applied to dout: y * (dout - <dout, y>)
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))


def gelu_forward(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_K * (x + GELU_C * (x * x * x))))  # GPT-2's tanh approximation


def gelu_backward(dout, x):
    t = np.tanh(GELU_K * (x + GELU_C * (x * x * x)))
    dt = (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * (x * x))  # d tanh(u)/dx
    return dout * (0.5 * (1.0 + t) + 0.5 * x * dt)  # product rule on 0.5 x (1 + t)


def projection_forward(x, w):
    # (B, T, in) @ (out, in)^T: nn.Linear's layout, without a bias (Llama's projections, and the logits)
    return (_rows(x) @ w.T).reshape(*x.shape[:-1], len(w))


def projection_backward(dout, x, w):
    dx = (_rows(dout) @ w).reshape(x.shape)  # (B, T, in)
    dw = _rows(dout).T @ _rows(x)  # (out, in): summed over batch and tokens
    return dx, dw


def logits_forward(x, w):
    # (B, T, V): x times the output layer w (V, C), transposed; GPT-2's w is the token table (tied)
    return projection_forward(x, w)


def logits_backward(dlogits, x, w):
    return projection_backward(dlogits, x, w)  # (B, T, C) and (V, C)


def cross_entropy_forward(logits, targets):
    valid = targets >= 0  # (B, T): padding carries target -100 and is ignored
    probs = softmax_forward(logits)  # (B, T, V)
    safe = np.where(valid, targets, 0)
    target_logit = np.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]  # (B, T)
    m = logits.max(axis=-1)
    logsumexp = m + np.log(np.exp(logits - m[..., None]).sum(axis=-1))  # (B, T)
    per_token = np.where(valid, logsumexp - target_logit, 0.0)  # (B, T)
    target_prob = np.where(valid, np.take_along_axis(probs, safe[..., None], axis=-1)[..., 0], 0.0)
    n = int(valid.sum())
    return probs, target_prob, per_token, per_token.sum() / n


def cross_entropy_backward(probs, targets):
    valid = targets >= 0
    onehot = np.zeros_like(probs)
    np.put_along_axis(onehot, np.where(valid, targets, 0)[..., None], 1.0, axis=-1)
    return np.where(valid[..., None], (probs - onehot) / valid.sum(), 0.0)  # (B, T, V)


# -- Llama: RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU ---------------------------------------
def rmsnorm_forward(x, w, eps):
    ms = (x * x).mean(axis=-1)  # (B, T): the mean of the squares; unlike LayerNorm, no mean is subtracted
    xhat = x / np.sqrt(ms[..., None] + eps)  # (B, T, C): each row divided by its root mean square
    return ms, xhat, xhat * w  # (B, T, C): scaled by the learned weight, no bias


def rmsnorm_backward(dout, xhat, ms, w, eps):
    dw = (dout * xhat).sum(axis=(0, 1))  # (C,)
    dxhat = dout * w  # (B, T, C)
    rstd = 1.0 / np.sqrt(ms[..., None] + eps)  # (B, T, 1)
    # LayerNorm's Jacobian without its mean term (no mean was subtracted): only the projection on xhat remains
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdims=True))  # (B, T, C)
    return dxhat, dx, dw


def rope_tables(T, D, theta):
    """cos and sin of the rotary angles, (T, D) each, in Hugging Face's layout: dimension d and d + D/2 form a pair
    and share the angle t · theta^(-2j/D), j = d mod D/2. Constants of the positions: no gradient flows into them."""
    inv_freq = 1.0 / theta ** (np.arange(0, D, 2) / D)  # (D/2,): pair j turns theta^(-2j/D) radians per position
    angle = np.arange(T)[:, None] * inv_freq  # (T, D/2)
    angle = np.concatenate([angle, angle], axis=-1)  # (T, D): both halves of a pair
    return np.cos(angle), np.sin(angle)


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # (..., D): each pair (a, b) becomes (-b, a)


def rope_forward(x, cos, sin):
    # (B, H, T, D): pair (d, d + D/2) at position t turned by its angle, (a, b) -> (a cos - b sin, b cos + a sin)
    return x * cos + rotate_half(x) * sin


def rope_backward(dout, cos, sin):
    # the transpose of a rotation turns back by the same angle; rotate_half's transpose is -rotate_half
    return dout * cos - rotate_half(dout * sin)  # (B, H, T, D)


def repeat_kv_forward(x, n_rep):
    return np.repeat(x, n_rep, axis=1)  # (B, G, S, D) -> (B, H, S, D): K/V head g serves query heads gR .. gR + R - 1


def repeat_kv_backward(dout, n_rep):
    B, H, S, D = dout.shape
    return dout.reshape(B, H // n_rep, n_rep, S, D).sum(axis=2)  # (B, G, S, D): a K/V head sums its group's gradients


def silu_forward(x):
    return x / (1.0 + np.exp(-x))  # x · sigmoid(x)


def silu_backward(dout, x):
    s = 1.0 / (1.0 + np.exp(-x))  # sigmoid(x)
    return dout * (s * (1.0 + x * (1.0 - s)))  # product rule on x · s, with s' = s (1 - s)


def swiglu_forward(gate, up):
    act = silu_forward(gate)  # (B, T, F)
    return act, act * up  # (B, T, F): SiLU of the gate scales the up projection, entry by entry


def swiglu_backward(dhidden, gate, up, act):
    dup = dhidden * act  # (B, T, F)
    dact = dhidden * up  # (B, T, F)
    return dup, dact, silu_backward(dact, gate)  # the last: the gradient of the gate
