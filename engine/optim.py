"""AdamW, Adam and SGD, each exactly as `torch.optim` defines it, written out step by step.

Parameter groups: with `decay: matrices` only 2-D weights get weight decay (GPT-2/nanoGPT
training); with `decay: all` every tensor does (plain `torch.optim.AdamW(model.parameters())`).
"""

from __future__ import annotations

import numpy as np

from .config import OptimizerConfig
from .model import param_symbol


def decays(value: np.ndarray, rule: str) -> bool:
    return rule == "all" or value.ndim >= 2


def optimizer_step(params, grads, state, t, opt: OptimizerConfig, axes, rec):
    """One update of every parameter at step t (1-based); `state` carries m, v or momentum between steps."""
    new = {}
    for name, p in params.items():
        g = grads[name]
        wd = opt.weight_decay if decays(p, opt.decay) else 0.0
        st = state.setdefault(name, {})
        ax = axes[name]
        if opt.name == "sgd":
            new[name] = _sgd(rec, name, p, g, wd, st, t, opt, ax)
        else:
            new[name] = _adam(rec, name, p, g, wd, st, t, opt, ax)
    return new


def _adam(rec, name, p, g, wd, st, t, opt, ax):
    b1, b2 = opt.betas
    grad_name = f"grad.{name}"
    if opt.name == "adam":  # Adam's weight decay is L2: added to the gradient, so it passes through m and v
        g = g + wd * p
        rec(f"opt.g.{name}", "l2_grad", [grad_name, name], g, ax, r"g = \nabla\theta + \lambda\,\theta", "g", wd=wd)
        grad_name = f"opt.g.{name}"
    m = b1 * st.get("m", 0.0) + (1 - b1) * g  # first moment: a running mean of gradients
    v = b2 * st.get("v", 0.0) + (1 - b2) * g * g  # second moment: a running mean of squared gradients
    st["m"], st["v"] = m, v
    m_hat = m / (1 - b1**t)  # bias correction: m and v start at 0, so early averages are too small
    v_hat = v / (1 - b2**t)
    rec(f"opt.m.{name}", "adam_m", [grad_name], m, ax, r"m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t", "m", beta=b1, step=t)
    rec(f"opt.v.{name}", "adam_v", [grad_name], v, ax, r"v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2", "v", beta=b2, step=t)
    rec(f"opt.m_hat.{name}", "adam_m_hat", [f"opt.m.{name}"], m_hat, ax, r"\hat m_t = m_t / (1-\beta_1^t)", r"\hat m",
        beta=b1, step=t)
    rec(f"opt.v_hat.{name}", "adam_v_hat", [f"opt.v.{name}"], v_hat, ax, r"\hat v_t = v_t / (1-\beta_2^t)", r"\hat v",
        beta=b2, step=t)
    step = opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)  # about lr * sign(g) on the first step
    if opt.name == "adamw":
        out = p * (1 - opt.lr * wd) - step  # decoupled decay: shrink the weight, apart from the gradient
        formula = r"\theta_t = \theta_{t-1}(1-\eta\lambda) - \eta\,\hat m_t / (\sqrt{\hat v_t}+\epsilon)"
    else:
        out = p - step
        formula = r"\theta_t = \theta_{t-1} - \eta\,\hat m_t / (\sqrt{\hat v_t}+\epsilon)"
    rec(f"updated.{name}", f"{opt.name}_update", [name, f"opt.m_hat.{name}", f"opt.v_hat.{name}"], out, ax, formula,
        param_symbol(name) + "'", lr=opt.lr, wd=wd if opt.name == "adamw" else 0.0, eps=opt.eps)
    return out


def _sgd(rec, name, p, g, wd, st, t, opt, ax):
    g = g + wd * p  # SGD's weight decay is L2, added to the gradient
    rec(f"opt.g.{name}", "l2_grad", [f"grad.{name}", name], g, ax, r"g = \nabla\theta + \lambda\,\theta", "g", wd=wd)
    step_name = f"opt.g.{name}"
    if opt.momentum:
        buf = g if t == 1 else opt.momentum * st["buf"] + g  # torch starts the buffer at the first gradient
        st["buf"] = buf
        rec(f"opt.buf.{name}", "sgd_buf", [step_name], buf, ax, r"b_t = \mu\,b_{t-1} + g_t \quad (b_1 = g_1)", "b",
            momentum=opt.momentum, step=t)
        g, step_name = buf, f"opt.buf.{name}"
    out = p - opt.lr * g
    rec(f"updated.{name}", "sgd_update", [name, step_name], out, ax, r"\theta_t = \theta_{t-1} - \eta\,g_t", param_symbol(name) + "'",
        lr=opt.lr)
    return out
