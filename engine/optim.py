"""AdamW, Adam and SGD, each exactly as `torch.optim` defines it, written out step by step.

Parameter groups: `decays` is the one rule for which tensors get weight decay: with `decay: matrices` only
2-D weights (GPT-2/nanoGPT training), with `decay: all` every tensor (plain `torch.optim.AdamW(model.parameters())`).
Every parameter record carries its answer in `meta["decays"]`; pages and the PyTorch snippet read it there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .config import OptimizerConfig


def decays(value: np.ndarray, rule: str) -> bool:
    """Whether weight decay applies to a tensor of this shape under `optimizer.decay`."""
    return rule == "all" or value.ndim >= 2


def _decay(p: np.ndarray, opt: OptimizerConfig) -> float:
    """The weight decay of one tensor: the optimizer's, or none where `decays` says so."""
    return opt.weight_decay if decays(p, opt.decay) else 0.0


def _skip(*args: Any, **kwargs: Any) -> None:
    pass


def optimizer_step(params: dict[str, np.ndarray], grads: dict[str, np.ndarray], state: dict | None, t: int,
                   opt: OptimizerConfig, axes: dict[str, tuple[str, ...]],
                   record: Callable[..., Any] | None = None) -> dict[str, np.ndarray]:
    """One update of every parameter at step t (1-based); `state` carries m, v or momentum between steps (None: a
    last step, whose m and v go as soon as each tensor is updated: GPT-2's would hold 2 GB to the end)."""
    rec = record or _skip
    if record is None and opt.name != "sgd" and sum(p.size for p in params.values()) <= CHUNK:
        return _adam_together(params, grads, state, t, opt)
    new = {}
    for name, p in params.items():
        wd = _decay(p, opt)
        st = state.setdefault(name, {}) if state is not None else {}
        step = _sgd if opt.name == "sgd" else _adam
        new[name] = step(rec, name, p, grads[name], wd, st, t, opt, axes[name])
    return new


def _adam(rec, name, p, g, wd, st, t, opt, ax):
    b1, b2 = opt.betas
    grad_name = f"grad.{name}"
    if opt.name == "adam":  # Adam's weight decay is L2: added to the gradient, so it passes through m and v
        g = g + wd * p
        grad_name = rec_as(rec, f"opt.g.{name}", g, "l2_grad", (grad_name, name), ax, wd=wd)
    m, v, out = (np.empty(g.shape) for _ in range(3))
    # m̂ and v̂ are records of the recorded step; a training run (nothing recorded) needs them one slice at a time
    whole = rec is not _skip or g.size <= CHUNK
    m_hat, v_hat = (np.empty(g.shape if whole else CHUNK) for _ in range(2))
    if g.size <= CHUNK:
        _adam_chunk(..., p, g, m, v, m_hat, v_hat, out, st, t, opt, wd)
    else:  # the same arithmetic element by element, a slice at a time: the temporaries stay in the cache
        flat = [a.reshape(-1) for a in (p, g, m, v, m_hat, v_hat, out)]
        old = {key: st[key].reshape(-1) for key in ("m", "v") if key in st}
        for start in range(0, g.size, CHUNK):
            k = slice(start, start + CHUNK)
            _adam_chunk(k, *flat, old, t, opt, wd, k if whole else slice(0, min(CHUNK, g.size - start)))
    st["m"], st["v"] = m, v
    rec_as(rec, f"opt.m.{name}", m, "adam_m", (grad_name,), ax, beta=b1, step=t)
    rec_as(rec, f"opt.v.{name}", v, "adam_v", (grad_name,), ax, beta=b2, step=t)
    rec_as(rec, f"opt.m_hat.{name}", m_hat, "adam_m_hat", (f"opt.m.{name}",), ax, beta=b1, step=t)
    rec_as(rec, f"opt.v_hat.{name}", v_hat, "adam_v_hat", (f"opt.v.{name}",), ax, beta=b2, step=t)
    rec_as(rec, f"updated.{name}", out, f"{opt.name}_update", (name, f"opt.m_hat.{name}", f"opt.v_hat.{name}"), ax,
           lr=opt.lr, wd=wd if opt.name == "adamw" else 0.0, eps=opt.eps)
    return out


def _adam_together(params, grads, state, t, opt):
    """Adam (or AdamW) on every tensor of a small model at once, as one flat vector, with each element's weight
    decay beside it: the same arithmetic element by element as `_adam` (a test checks it bit for bit), in a dozen
    NumPy calls a step instead of a dozen per tensor, which was most of a small model's training run."""
    names = list(params)
    p = np.concatenate([params[n].reshape(-1) for n in names])
    g = np.concatenate([grads[n].reshape(-1) for n in names])
    wd = np.concatenate([np.full(params[n].size, _decay(params[n], opt)) for n in names])
    states = [state.setdefault(n, {}) if state is not None else {} for n in names]
    old = {key: np.concatenate([st[key].reshape(-1) for st in states]) for key in ("m", "v") if key in states[0]}
    if opt.name == "adam":
        g = g + wd * p
    m, v, m_hat, v_hat, out = (np.empty(g.shape) for _ in range(5))
    _adam_chunk(slice(None), p, g, m, v, m_hat, v_hat, out, old, t, opt, wd)
    new, start = {}, 0
    for n, st in zip(names, states):
        shape, end = params[n].shape, start + params[n].size
        new[n] = out[start:end].reshape(shape)
        st["m"], st["v"] = m[start:end].reshape(shape), v[start:end].reshape(shape)
        start = end
    return new


CHUNK = 1 << 16  # elements per slice of Adam's update (GPT-2's 38.6M-entry wte would make 1 GB temporaries)


def _adam_chunk(k, p, g, m, v, m_hat, v_hat, out, st, t, opt, wd, kh=None):
    """Adam (or AdamW) on the slice k of the flattened tensors, written into m, v, m_hat, v_hat and out (m_hat and
    v_hat at the slice kh, when they are one slice's scratch)."""
    kh = k if kh is None else kh
    b1, b2 = opt.betas
    gk = g[k]
    np.multiply(gk, 1 - b1, out=m[k])  # first moment: a running mean of gradients (it starts at 0)
    if "m" in st:
        m[k] += b1 * st["m"][k]
    np.multiply(gk, 1 - b2, out=v[k])  # second moment: a running mean of squared gradients
    v[k] *= gk
    if "v" in st:
        v[k] += b2 * st["v"][k]
    np.divide(m[k], 1 - b1**t, out=m_hat[kh])  # bias correction: m and v start at 0, so early averages are too small
    np.divide(v[k], 1 - b2**t, out=v_hat[kh])
    step = opt.lr * m_hat[kh]  # about lr * sign(g) on the first step, once divided
    denom = np.sqrt(v_hat[kh])
    denom += opt.eps
    step /= denom
    if opt.name == "adamw":
        np.multiply(p[k], 1 - opt.lr * wd, out=out[k])  # decoupled decay: shrink the weight, apart from the gradient
        out[k] -= step
    else:
        np.subtract(p[k], step, out=out[k])


def _sgd(rec, name, p, g, wd, st, t, opt, ax):
    g = g + wd * p  # SGD's weight decay is L2, added to the gradient
    step_name = rec_as(rec, f"opt.g.{name}", g, "l2_grad", (f"grad.{name}", name), ax, wd=wd)
    if opt.momentum:
        buf = g if t == 1 else opt.momentum * st["buf"] + g  # torch starts the buffer at the first gradient
        st["buf"] = buf
        step_name = rec_as(rec, f"opt.buf.{name}", buf, "sgd_buf", (step_name,), ax, momentum=opt.momentum, step=t)
        g = buf
    out = p - opt.lr * g
    rec_as(rec, f"updated.{name}", out, "sgd_update", (name, step_name), ax, lr=opt.lr)
    return out


def rec_as(rec: Callable[..., Any], name: str, value: np.ndarray, op: str, inputs: tuple[str, ...],
           axes: tuple[str, ...], **meta: Any) -> str:
    rec(name, value, op=op, inputs=inputs, axes=axes, **meta)
    return name
