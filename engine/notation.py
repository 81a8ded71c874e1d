"""How each record is written: its defining formula and its symbol, in LaTeX, keyed by record name.

The model computes; this module only names. `describe(name, op, cfg)` gives (formula, symbol) for every record
the engine makes; per-layer records are looked up without their `L{i}.` prefix. `latex_escape` is the one
escaper for config text inside LaTeX (the site and the explanations use it too).
"""

from __future__ import annotations

import re

from .config import Config

# -- parameters ------------------------------------------------------------------------------------------------
PARAM_SYMBOLS = {
    "wte": r"W_{te}", "wpe": r"W_{pe}", "ln_1.weight": r"\gamma_1", "ln_1.bias": r"\beta_1",
    "attn.c_attn.weight": r"W_{\text{attn}}", "attn.c_attn.bias": r"b_{\text{attn}}", "attn.c_proj.weight": "W_O",
    "attn.c_proj.bias": "b_O", "ln_2.weight": r"\gamma_2", "ln_2.bias": r"\beta_2", "mlp.c_fc.weight": "W_1",
    "mlp.c_fc.bias": "b_1", "mlp.c_proj.weight": "W_2", "mlp.c_proj.bias": "b_2", "ln_f.weight": r"\gamma_f",
    "ln_f.bias": r"\beta_f",
}
_LAYER = re.compile(r"(^|\.)L\d+\.")


def generic(name: str) -> str:
    """`L3.attn.q` -> `attn.q`, `grad.L3.attn.q` -> `grad.attn.q`: a per-layer record's name without its layer."""
    return _LAYER.sub(r"\1", name, count=1)


def param_symbol(name: str) -> str:
    """LaTeX symbol of a parameter record: `L0.attn.c_proj.weight` -> `W_O`."""
    return PARAM_SYMBOLS[generic(name)]


def is_param(name: str) -> bool:
    return generic(name) in PARAM_SYMBOLS


def init_formula(name: str, cfg: Config) -> str:
    """How a parameter is drawn (GPT-2's scheme, see model.init_params)."""
    std, rest = cfg.model.init_std, generic(name)
    if cfg.model.checkpoint:
        return r"\theta_0 = \theta_{\text{checkpoint}}"
    if rest.startswith("ln_") and rest.endswith(".weight"):
        return r"\gamma = 1"
    if rest.endswith(".bias"):
        return r"b = 0"
    if rest.endswith("c_proj.weight"):
        return rf"W \sim \mathcal{{N}}\!\left(0,\ ({std}/\sqrt{{2\cdot{cfg.model.n_layers}}})^2\right)"
    return rf"W \sim \mathcal{{N}}(0,\ {std}^2)"


# -- activations (per-layer names without `L{i}.`) ------------------------------------------------------------------
D = r"\tfrac{\partial\mathcal L}{\partial"  # the start of a partial derivative of the loss
LN_BACKWARD = (rf"{D} x_{{t}}}} = \tfrac{{1}}{{\sqrt{{\sigma^2_t+\epsilon}}}}\Big(g - \overline{{g}} - \hat x_t\,"
               rf"\overline{{g\odot\hat x_t}}\Big),\ g = {D}\hat x_t}}")
LINEAR_DW = rf"{D} W}} = \textstyle\sum_{{b,t}} x_t^{{\top}}\,{D}\,\mathrm{{out}}_t}}"
LINEAR_DB = rf"{D} b}} = \textstyle\sum_{{b,t}} {D}\,\mathrm{{out}}_{{t}}}}"

NOTATION: dict[str, tuple[str, str]] = {  # name -> (formula, symbol)
    "input_ids": (r"\mathrm{id}_t = \mathrm{vocab}[w_t]", r"\mathrm{id}"),
    "targets": (r"y_t = \mathrm{id}_{t+1}", "y"),
    "embed.tok": (r"E^{\text{tok}}_t = W_{te}[\mathrm{id}_t]", r"E^{\text{tok}}"),
    "embed.pos": (r"E^{\text{pos}}_t = W_{pe}[t]", r"E^{\text{pos}}"),
    "embed.out": (r"X = E^{\text{tok}} + E^{\text{pos}}", "X"),
    "attn.qkv": (r"[Q\,|\,K\,|\,V] = \mathrm{LN}_1(X)\,W_{\text{attn}} + b_{\text{attn}}", r"[Q|K|V]"),
    "attn.q": (r"Q_h = [Q|K|V]_{:,\,\text{Q block, columns of head }h}", "Q"),
    "attn.k": (r"K_h = [Q|K|V]_{:,\,\text{K block, columns of head }h}", "K"),
    "attn.v": (r"V_h = [Q|K|V]_{:,\,\text{V block, columns of head }h}", "V"),
    "attn.scores": (r"S_h = Q_h K_h^{\top}", "S"),
    "attn.scaled": (r"S'_h = S_h / \sqrt{D}", "S'"),
    "attn.masked": (r"M_{t,s} = S'_{t,s} \text{ if } s \le t \text{ else } -\infty", "M"),
    "attn.weights": (r"A_{t,s} = \dfrac{e^{M_{t,s}}}{\sum_{s'} e^{M_{t,s'}}}", "A"),
    "attn.context": (r"Z_h = A_h V_h", "Z"),
    "attn.merged": (r"Z = [Z_1\,|\,\cdots\,|\,Z_H]", r"Z_{\text{cat}}"),
    "attn.out": (r"O = Z\,W_O + b_O", "O"),
    "resid_1": (r"H = X + O", "H"),
    "mlp.fc": (r"U = \mathrm{LN}_2(H)\,W_1 + b_1", "U"),
    "mlp.gelu": (r"G = \tfrac12 U\left(1+\tanh\!\left(\sqrt{2/\pi}\,(U+0.044715\,U^3)\right)\right)", "G"),
    "mlp.out": (r"F = G\,W_2 + b_2", "F"),
    "resid_2": (r"X' = H + F", "X'"),
    "logits": (r"\mathrm{logits} = \mathrm{LN}_f(X_L)\,W_{te}^{\top}", r"\mathrm{logits}"),
    "probs": (r"p_{t,v} = \dfrac{e^{\mathrm{logit}_{t,v}}}{\sum_{v'} e^{\mathrm{logit}_{t,v'}}}", "p"),
    "loss.target_prob": (r"p_t(y_t) = p_{t,\,y_t}", r"p(y)"),
    "loss.per_token": (r"\ell_t = -\log p_{t,y_t} = \log\textstyle\sum_v e^{\mathrm{logit}_{t,v}} - "
                       r"\mathrm{logit}_{t,y_t}", r"\ell"),
    "loss": (r"\mathcal{L} = \tfrac{1}{N}\textstyle\sum_{t} \ell_t", r"\mathcal{L}"),
    # backward
    "grad.logits": (rf"{D}\,\mathrm{{logit}}_{{t,v}}}} = \tfrac{{1}}{{N}}\big(p_{{t,v}} - [v = y_t]\big)",
                    r"\nabla\mathrm{logits}"),
    "grad.ln_f.out": (rf"{D}\,\mathrm{{LN}}_f}} = {D}\,\mathrm{{logits}}}}\,W_{{te}}", r"\nabla\mathrm{LN}_f"),
    "grad.wte.from_logits": (r"\nabla W_{te}^{\text{out}} = \textstyle\sum_{b,t} \big(" + D
                             + r"\,\mathrm{logits}_t}\big)^{\top} \mathrm{LN}_f(x_t)", r"\nabla W_{te}^{\text{out}}"),
    "grad.mlp.gelu": (rf"{D} G}} = {D} F}}\,W_2^{{\top}}", r"\nabla G"),
    "grad.mlp.fc": (rf"{D} U}} = {D} G}}\odot \mathrm{{GELU}}'(U)", r"\nabla U"),
    "grad.ln_2.out": (rf"{D}\,\mathrm{{LN}}_2}} = {D} U}}\,W_1^{{\top}}", r"\nabla\mathrm{LN}_2"),
    "grad.resid_1": (rf"{D} H}} = {D} X'}} + {D} H}}\Big|_{{\text{{via }}\mathrm{{LN}}_2}}", r"\nabla H"),
    "grad.attn.merged": (rf"{D} Z}} = {D} O}}\,W_O^{{\top}}", r"\nabla Z"),
    "grad.attn.context": (rf"{D} Z_h}} = \big({D} Z}}\big)_{{:,\,\text{{columns of head }}h}}", r"\nabla Z_h"),
    "grad.attn.weights": (rf"{D} A_h}} = {D} Z_h}}\,V_h^{{\top}}", r"\nabla A"),
    "grad.attn.v": (rf"{D} V_h}} = A_h^{{\top}}\,{D} Z_h}}", r"\nabla V"),
    "grad.attn.masked": (rf"{D} M_{{t,s}}}} = A_{{t,s}}\Big({D} A_{{t,s}}}} - \textstyle\sum_{{s'}} A_{{t,s'}}"
                         rf"{D} A_{{t,s'}}}}\Big)", r"\nabla M"),
    "grad.attn.scaled": (rf"{D} S'_{{t,s}}}} = {D} M_{{t,s}}}} \text{{ if }} s \le t \text{{ else }} 0",
                         r"\nabla S'"),
    "grad.attn.scores": (rf"{D} S}} = {D} S'}} / \sqrt{{D}}", r"\nabla S"),
    "grad.attn.q": (rf"{D} Q_h}} = {D} S_h}}\,K_h", r"\nabla Q"),
    "grad.attn.k": (rf"{D} K_h}} = \big({D} S_h}}\big)^{{\top}} Q_h", r"\nabla K"),
    "grad.attn.qkv": (r"\nabla[Q|K|V] = \big[\nabla Q\,|\,\nabla K\,|\,\nabla V\big]", r"\nabla[Q|K|V]"),
    "grad.ln_1.out": (rf"{D}\,\mathrm{{LN}}_1}} = \nabla[Q|K|V]\,W_{{\text{{attn}}}}^{{\top}}", r"\nabla\mathrm{LN}_1"),
    "grad.wpe": (rf"\nabla W_{{pe}}[t] = \textstyle\sum_b {D} X_{{b,t}}}}", r"\nabla W_{pe}"),
    "grad.wte.from_embed": (rf"\nabla W_{{te}}^{{\text{{in}}}}[v] = \textstyle\sum_{{b,t:\ \mathrm{{id}}_{{b,t}}=v}} "
                            rf"{D} X_{{b,t}}}}", r"\nabla W_{te}^{\text{in}}"),
    "grad.wte": (r"\nabla W_{te} = \nabla W_{te}^{\text{out}} + \nabla W_{te}^{\text{in}}", r"\nabla W_{te}"),
    # the forward pass again on the updated weights, and the training run
    "after.logits": (r"\mathrm{logits}' = \mathrm{model}_{\theta'}(x)", r"\mathrm{logits}'"),
    "after.probs": (r"p'_{t,v} = \mathrm{softmax}(\mathrm{logits}'_t)_v", "p'"),
    "after.target_prob": (r"p'_t(y_t) = p'_{t,y_t}", "p'(y)"),
    "after.per_token": (r"\ell'_t = -\log p'_{t,y_t}", r"\ell'"),
    "after.loss": (r"\mathcal{L}' = \tfrac1N\textstyle\sum_t \ell'_t", r"\mathcal{L}'"),
    "train.loss": (r"\mathcal{L}_k = \mathcal{L}(\theta_k),\ k = 0,\dots,K", r"\mathcal{L}"),
    "train.target_prob.before": (r"p_{\theta_0}(y_t)", r"p_0(y)"),
    "train.target_prob.after": (r"p_{\theta_K}(y_t)", r"p_K(y)"),
}

LAYERNORM = {  # a LayerNorm's records, by part; {k} is the LayerNorm's label (1, 2 or f)
    "mean": (r"\mu_t = \tfrac{1}{C}\textstyle\sum_c x_{t,c}", r"\mu^{{{k}}}"),
    "var": (r"\sigma^2_t = \tfrac{1}{C}\textstyle\sum_c (x_{t,c}-\mu_t)^2", r"\sigma^{{2\,{k}}}"),
    "xhat": (r"\hat x_{t,c} = \dfrac{x_{t,c}-\mu_t}{\sqrt{\sigma^2_t+\epsilon}}", r"\hat x^{{{k}}}"),
    "out": (r"y_{t,c} = \gamma_c\,\hat x_{t,c} + \beta_c", r"\mathrm{{LN}}_{{{k}}}(x)"),
}
LAYERNORM_GRADS = {
    "weight": (rf"{D}\gamma_c}} = \textstyle\sum_{{b,t}} {D} y_{{t,c}}}}\,\hat x_{{t,c}}", None),
    "bias": (rf"{D}\beta_c}} = \textstyle\sum_{{b,t}} {D} y_{{t,c}}}}", None),
    "xhat": (rf"{D}\hat x_{{t,c}}}} = {D} y_{{t,c}}}}\,\gamma_c", r"\nabla\hat x"),
}
RESIDUAL_GRAD = (rf"{D} X}} = {D} H}} + {D} X}}\Big|_{{\text{{via }}\mathrm{{LN}}_1}}", r"\nabla X")

# -- the optimizer ---------------------------------------------------------------------------------------------------
OPTIMIZER = {
    "opt.g": (r"g = \nabla\theta + \lambda\,\theta", "g"),
    "opt.buf": (r"b_t = \mu\,b_{t-1} + g_t \quad (b_1 = g_1)", "b"),
    "opt.m": (r"m_t = \beta_1 m_{t-1} + (1-\beta_1)\,g_t", "m"),
    "opt.v": (r"v_t = \beta_2 v_{t-1} + (1-\beta_2)\,g_t^2", "v"),
    "opt.m_hat": (r"\hat m_t = m_t / (1-\beta_1^t)", r"\hat m"),
    "opt.v_hat": (r"\hat v_t = v_t / (1-\beta_2^t)", r"\hat v"),
}
UPDATES = {
    "adamw_update": r"\theta_t = \theta_{t-1}(1-\eta\lambda) - \eta\,\hat m_t / (\sqrt{\hat v_t}+\epsilon)",
    "adam_update": r"\theta_t = \theta_{t-1} - \eta\,\hat m_t / (\sqrt{\hat v_t}+\epsilon)",
    "sgd_update": r"\theta_t = \theta_{t-1} - \eta\,g_t",
    "sgd_momentum_update": r"\theta_t = \theta_{t-1} - \eta\,b_t",
}


def describe(name: str, op: str, cfg: Config) -> tuple[str, str]:
    """(formula, symbol) of the record `name` made by op `op` under `cfg`."""
    rest = generic(name)
    if op == "param":
        return init_formula(name, cfg), param_symbol(name)
    head, _, target = name.partition(".")
    if head in ("opt", "updated"):
        kind, _, param = target.partition(".") if head == "opt" else ("", "", target)
        if head == "updated":
            key = "sgd_momentum_update" if op == "sgd_update" and cfg.optimizer.momentum else op
            return UPDATES[key], param_symbol(param) + "'"
        return OPTIMIZER[f"opt.{kind}"]
    if rest in NOTATION:
        return NOTATION[rest]
    ln, _, part = rest.partition(".")
    if ln in ("ln_1", "ln_2", "ln_f") and part in LAYERNORM:
        formula, symbol = LAYERNORM[part]
        return formula, symbol.format(k=ln[3:])
    if head == "grad":
        return _gradient(name, generic(target), op)
    raise KeyError(f"no notation for record {name!r} (op {op}): add it to engine/notation.py")


def _gradient(name: str, target: str, op: str) -> tuple[str, str]:
    if op == "layernorm_backward":
        return LN_BACKWARD, r"\nabla x"
    if op == "add":  # the gradient of a residual stream: both branches' gradients summed
        return RESIDUAL_GRAD
    if target in PARAM_SYMBOLS:
        ln, _, part = target.partition(".")
        symbol = r"\nabla " + PARAM_SYMBOLS[target]
        if ln.startswith("ln_") and part in LAYERNORM_GRADS:
            return LAYERNORM_GRADS[part][0], symbol
        return (LINEAR_DW if part == "weight" or target.endswith(".weight") else LINEAR_DB), symbol
    ln, _, part = target.partition(".")
    if ln.startswith("ln_") and part in LAYERNORM_GRADS:
        formula, symbol = LAYERNORM_GRADS[part]
        return formula, symbol or ""
    raise KeyError(f"no notation for record {name!r} (op {op}): add it to engine/notation.py")


# -- config text inside LaTeX -------------------------------------------------------------------------------
LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                  "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: object) -> str:
    """Config text (a vocab word, a training text) for LaTeX text mode: every special character as itself."""
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def latex_text(text: object) -> str:
    r"""Config text as a complete LaTeX text-mode group: `\text{...}`."""
    return r"\text{" + latex_escape(text) + "}"
