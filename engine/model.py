"""GPT-2 (Hugging Face `GPT2LMHeadModel` without dropout), forward and backward, recorded op by op.

Axis letters as in `engine.layers`. `forward` and `backward` call the layers in exactly reverse
order; each `rec(...)` line names one record of the trace (see docs/records.md).
"""

from __future__ import annotations

import math

import numpy as np

from . import layers as L
from .config import Config

EPS = 1e-5  # LayerNorm epsilon, as GPT-2

# (record suffix, HF suffix, shape keys, axes) for one block, in HF's named_parameters order
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
    return specs


PARAM_SYMBOLS = {"wte": r"W_{te}", "wpe": r"W_{pe}", "ln_1.weight": r"\gamma_1", "ln_1.bias": r"\beta_1",
                 "attn.c_attn.weight": r"W_{\text{attn}}", "attn.c_attn.bias": r"b_{\text{attn}}",
                 "attn.c_proj.weight": "W_O", "attn.c_proj.bias": "b_O", "ln_2.weight": r"\gamma_2",
                 "ln_2.bias": r"\beta_2", "mlp.c_fc.weight": "W_1", "mlp.c_fc.bias": "b_1",
                 "mlp.c_proj.weight": "W_2", "mlp.c_proj.bias": "b_2", "ln_f.weight": r"\gamma_f",
                 "ln_f.bias": r"\beta_f"}


def param_symbol(name: str) -> str:
    """LaTeX symbol of a parameter record: `L0.attn.c_proj.weight` -> `W_O`."""
    head, _, rest = name.partition(".")
    if head.startswith("L") and head[1:].isdigit():
        return PARAM_SYMBOLS[rest]
    return PARAM_SYMBOLS[name]


def init_params(cfg: Config) -> dict[str, np.ndarray]:
    """GPT-2's scheme: normal weights, residual projections scaled by 1/sqrt(2 n_layers), zero biases, LN 1/0."""
    rng = np.random.default_rng(cfg.seed)
    std = cfg.model.init_std
    params = {}
    for name, _, shape, _ in param_specs(cfg):
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            params[name] = np.ones(shape)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape)
        elif name.endswith("c_proj.weight"):  # both residual projections: keeps the stream's variance in check
            params[name] = rng.normal(0.0, std / math.sqrt(2 * cfg.model.n_layers), shape)
        else:
            params[name] = rng.normal(0.0, std, shape)
    return params


def layernorm_fwd(rec, ln, x_name, x, w, b, sym):
    mean, var, xhat, out = L.layernorm_forward(x, w, b, EPS)
    BT = ("batch", "tokens")
    rec(f"{ln}.mean", "mean", [x_name], mean, BT, r"\mu_t = \tfrac{1}{C}\textstyle\sum_c x_{t,c}", rf"\mu^{{{sym}}}")
    rec(f"{ln}.var", "var", [x_name, f"{ln}.mean"], var, BT,
        r"\sigma^2_t = \tfrac{1}{C}\textstyle\sum_c (x_{t,c}-\mu_t)^2", rf"\sigma^{{2\,{sym}}}")
    rec(f"{ln}.xhat", "normalize", [x_name, f"{ln}.mean", f"{ln}.var"], xhat, BT + ("d_model",),
        r"\hat x_{t,c} = \dfrac{x_{t,c}-\mu_t}{\sqrt{\sigma^2_t+\epsilon}}", rf"\hat x^{{{sym}}}", eps=EPS)
    rec(f"{ln}.out", "affine", [f"{ln}.xhat", f"{ln}.weight", f"{ln}.bias"], out, BT + ("d_model",),
        r"y_{t,c} = \gamma_c\,\hat x_{t,c} + \beta_c", rf"\mathrm{{LN}}_{{{sym}}}(x)")
    return dict(xhat=xhat, var=var, out=out)


def forward(p, ids, targets, cfg: Config, rec):
    """Embeddings, n_layers blocks, ln_f, tied logits, cross-entropy. Returns the caches for backward."""
    H = cfg.model.n_heads
    BTC = ("batch", "tokens", "d_model")
    BHTD = ("batch", "heads", "tokens", "head_dim")
    BHTS = ("batch", "heads", "tokens", "keys")
    tok, pos, x = L.embedding_forward(p["wte"], p["wpe"], ids)
    rec("embed.tok", "embedding", ["wte", "input_ids"], tok, BTC, r"E^{\text{tok}}_t = W_{te}[\mathrm{id}_t]", r"E^{\text{tok}}")
    rec("embed.pos", "embedding", ["wpe"], pos, ("tokens", "d_model"), r"E^{\text{pos}}_t = W_{pe}[t]", r"E^{\text{pos}}")
    rec("embed.out", "add", ["embed.tok", "embed.pos"], x, BTC, r"X = E^{\text{tok}} + E^{\text{pos}}", "X")
    caches = []
    x_name = "embed.out"
    for i in range(cfg.model.n_layers):
        P = f"L{i}."
        ln1 = layernorm_fwd(rec, P + "ln_1", x_name, x, p[P + "ln_1.weight"], p[P + "ln_1.bias"], "1")
        qkv = L.linear_forward(ln1["out"], p[P + "attn.c_attn.weight"], p[P + "attn.c_attn.bias"])
        rec(P + "attn.qkv", "linear", [P + "ln_1.out", P + "attn.c_attn.weight", P + "attn.c_attn.bias"], qkv,
            ("batch", "tokens", "qkv"), r"[Q\,|\,K\,|\,V] = \mathrm{LN}_1(X)\,W_{\text{attn}} + b_{\text{attn}}",
            r"[Q|K|V]", einsum="bti,io->bto")
        a = L.attention_forward(qkv, H)
        for part, key in enumerate("qkv"):
            rec(P + f"attn.{key}", "split_heads", [P + "attn.qkv"], a[key], BHTD,
                rf"{key.upper()}_h = [Q|K|V]_{{:,\,\text{{{key.upper()} block, columns of head }}h}}", key.upper(),
                part=part, n_heads=H)
        rec(P + "attn.scores", "matmul", [P + "attn.q", P + "attn.k"], a["scores"], BHTS, r"S_h = Q_h K_h^{\top}", "S",
            einsum="bhtd,bhsd->bhts")
        rec(P + "attn.scaled", "scale", [P + "attn.scores"], a["scaled"], BHTS, r"S'_h = S_h / \sqrt{D}", "S'",
            factor=a["scale"], factor_tex=rf"\sqrt{{{cfg.model.d_model // H}}}", divide=True)
        rec(P + "attn.masked", "causal_mask", [P + "attn.scaled"], a["masked"], BHTS,
            r"M_{t,s} = S'_{t,s} \text{ if } s \le t \text{ else } -\infty", "M")
        rec(P + "attn.weights", "softmax", [P + "attn.masked"], a["weights"], BHTS,
            r"A_{t,s} = \dfrac{e^{M_{t,s}}}{\sum_{s'} e^{M_{t,s'}}}", "A")
        rec(P + "attn.context", "matmul", [P + "attn.weights", P + "attn.v"], a["context"], BHTD, r"Z_h = A_h V_h", "Z",
            einsum="bhts,bhsd->bhtd")
        rec(P + "attn.merged", "merge_heads", [P + "attn.context"], a["merged"], BTC,
            r"Z = [Z_1\,|\,\cdots\,|\,Z_H]", r"Z_{\text{cat}}")
        att = L.linear_forward(a["merged"], p[P + "attn.c_proj.weight"], p[P + "attn.c_proj.bias"])
        rec(P + "attn.out", "linear", [P + "attn.merged", P + "attn.c_proj.weight", P + "attn.c_proj.bias"], att, BTC,
            r"O = Z\,W_O + b_O", "O", einsum="bti,io->bto")
        h = x + att
        rec(P + "resid_1", "add", [x_name, P + "attn.out"], h, BTC, r"H = X + O", "H")
        ln2 = layernorm_fwd(rec, P + "ln_2", P + "resid_1", h, p[P + "ln_2.weight"], p[P + "ln_2.bias"], "2")
        fc = L.linear_forward(ln2["out"], p[P + "mlp.c_fc.weight"], p[P + "mlp.c_fc.bias"])
        rec(P + "mlp.fc", "linear", [P + "ln_2.out", P + "mlp.c_fc.weight", P + "mlp.c_fc.bias"], fc,
            ("batch", "tokens", "d_ff"), r"U = \mathrm{LN}_2(H)\,W_1 + b_1", "U", einsum="bti,io->bto")
        g = L.gelu_forward(fc)
        rec(P + "mlp.gelu", "gelu", [P + "mlp.fc"], g, ("batch", "tokens", "d_ff"),
            r"G = \tfrac12 U\left(1+\tanh\!\left(\sqrt{2/\pi}\,(U+0.044715\,U^3)\right)\right)", "G")
        mlp = L.linear_forward(g, p[P + "mlp.c_proj.weight"], p[P + "mlp.c_proj.bias"])
        rec(P + "mlp.out", "linear", [P + "mlp.gelu", P + "mlp.c_proj.weight", P + "mlp.c_proj.bias"], mlp, BTC,
            r"F = G\,W_2 + b_2", "F", einsum="bti,io->bto")
        x_new = h + mlp
        rec(P + "resid_2", "add", [P + "resid_1", P + "mlp.out"], x_new, BTC, r"X' = H + F", "X'")
        caches.append(dict(x=x, x_name=x_name, ln1=ln1, a=a, h=h, ln2=ln2, fc=fc, g=g))
        x, x_name = x_new, P + "resid_2"
    lnf = layernorm_fwd(rec, "ln_f", x_name, x, p["ln_f.weight"], p["ln_f.bias"], "f")
    logits = L.logits_forward(lnf["out"], p["wte"])
    rec("logits", "matmul", ["ln_f.out", "wte"], logits, ("batch", "tokens", "vocab"),
        r"\mathrm{logits} = \mathrm{LN}_f(X_L)\,W_{te}^{\top}", r"\mathrm{logits}", einsum="btc,vc->btv")
    probs, target_prob, per_token, loss = L.cross_entropy_forward(logits, targets)
    rec("probs", "softmax", ["logits"], probs, ("batch", "tokens", "vocab"),
        r"p_{t,v} = \dfrac{e^{\mathrm{logit}_{t,v}}}{\sum_{v'} e^{\mathrm{logit}_{t,v'}}}", "p")
    rec("loss.target_prob", "gather", ["probs", "targets"], target_prob, ("batch", "tokens"),
        r"p_t(y_t) = p_{t,\,y_t}", r"p(y)")
    rec("loss.per_token", "cross_entropy", ["logits", "targets"], per_token, ("batch", "tokens"),
        r"\ell_t = -\log p_{t,y_t} = \log\textstyle\sum_v e^{\mathrm{logit}_{t,v}} - \mathrm{logit}_{t,y_t}", r"\ell")
    rec("loss", "loss_mean", ["loss.per_token", "targets"], np.float64(loss), (),
        r"\mathcal{L} = \tfrac{1}{N}\textstyle\sum_{t} \ell_t", r"\mathcal{L}")
    return dict(blocks=caches, lnf=lnf, x_last=x, x_last_name=x_name, probs=probs, target_prob=target_prob,
                per_token=per_token, loss=loss, logits=logits)


def layernorm_bwd(rec, ln, dout_name, dout, c, w, x_name, dx_name):
    dxhat, dx, dw, db = L.layernorm_backward(dout, c["xhat"], c["var"], w, EPS)
    BTC = ("batch", "tokens", "d_model")
    rec(f"grad.{ln}.weight", "sum", [dout_name, f"{ln}.xhat"], dw, ("d_model",),
        r"\tfrac{\partial\mathcal L}{\partial\gamma_c} = \textstyle\sum_{b,t} \tfrac{\partial\mathcal L}{\partial y_{t,c}}\,\hat x_{t,c}",
        r"\nabla " + param_symbol(f"{ln}.weight"), einsum="btc,btc->c")
    rec(f"grad.{ln}.bias", "sum", [dout_name], db, ("d_model",),
        r"\tfrac{\partial\mathcal L}{\partial\beta_c} = \textstyle\sum_{b,t} \tfrac{\partial\mathcal L}{\partial y_{t,c}}",
        r"\nabla " + param_symbol(f"{ln}.bias"), einsum="btc->c")
    rec(f"grad.{ln}.xhat", "mul", [dout_name, f"{ln}.weight"], dxhat, BTC,
        r"\tfrac{\partial\mathcal L}{\partial\hat x_{t,c}} = \tfrac{\partial\mathcal L}{\partial y_{t,c}}\,\gamma_c",
        r"\nabla\hat x", einsum="btc,c->btc")
    rec(dx_name, "layernorm_backward", [f"grad.{ln}.xhat", f"{ln}.xhat", f"{ln}.var"], dx, BTC,
        r"\tfrac{\partial\mathcal L}{\partial x_{t}} = \tfrac{1}{\sqrt{\sigma^2_t+\epsilon}}\Big(g - \overline{g} - \hat x_t\,\overline{g\odot\hat x_t}\Big),\ g = \tfrac{\partial\mathcal L}{\partial\hat x_t}",
        r"\nabla x", eps=EPS, x=x_name)
    return dx


GRAD_SYMBOLS = {"mlp.gelu": r"\nabla G", "ln_2.out": r"\nabla\mathrm{LN}_2", "attn.merged": r"\nabla Z",
                "ln_1.out": r"\nabla\mathrm{LN}_1"}


def _linear_bwd(rec, x_name, w_name, dout_name, dout, x, w, x_axes, dx_tex):
    """Records grad.<x>, grad.<w>, grad.<b> of `out = x @ w + b` and returns dx."""
    dx, dw, db = L.linear_backward(dout, x, w)
    b_name = w_name[: -len("weight")] + "bias"
    out_axis = {"c_attn": "qkv", "c_fc": "d_ff"}.get(w_name.split(".")[-2], "d_model")
    rec(f"grad.{x_name}", "matmul", [dout_name, w_name], dx, x_axes, dx_tex, GRAD_SYMBOLS[x_name.split(".", 1)[1]],
        einsum="bto,io->bti")
    rec(f"grad.{w_name}", "matmul", [x_name, dout_name], dw, (x_axes[-1], out_axis),
        r"\tfrac{\partial\mathcal L}{\partial W} = \textstyle\sum_{b,t} x_t^{\top}\,\tfrac{\partial\mathcal L}{\partial\,\mathrm{out}_t}",
        r"\nabla " + param_symbol(w_name), einsum="bti,bto->io")
    rec(f"grad.{b_name}", "sum", [dout_name], db, (out_axis,),
        r"\tfrac{\partial\mathcal L}{\partial b} = \textstyle\sum_{b,t} \tfrac{\partial\mathcal L}{\partial\,\mathrm{out}_{t}}",
        r"\nabla " + param_symbol(b_name), einsum="bto->o")
    return dx


def backward(p, ids, targets, fw, cfg: Config, rec) -> dict[str, np.ndarray]:
    """The forward in exactly reverse order; returns dLoss/dparam for every parameter."""
    grads: dict[str, np.ndarray] = {}
    record = rec

    def rec(name, op, inputs, value, *args, **meta):  # also keep the parameter gradients for the optimizer
        record(name, op, inputs, value, *args, **meta)
        if name.startswith("grad.") and name[5:] in p:
            grads[name[5:]] = value

    BTC = ("batch", "tokens", "d_model")
    BHTD = ("batch", "heads", "tokens", "head_dim")
    BHTS = ("batch", "heads", "tokens", "keys")
    dlogits = L.cross_entropy_backward(fw["probs"], targets)
    rec("grad.logits", "cross_entropy_backward", ["probs", "targets"], dlogits, ("batch", "tokens", "vocab"),
        r"\tfrac{\partial\mathcal L}{\partial\,\mathrm{logit}_{t,v}} = \tfrac{1}{N}\big(p_{t,v} - [v = y_t]\big)",
        r"\nabla\mathrm{logits}")
    dx, dwte_out = L.logits_backward(dlogits, fw["lnf"]["out"], p["wte"])
    rec("grad.ln_f.out", "matmul", ["grad.logits", "wte"], dx, BTC,
        r"\tfrac{\partial\mathcal L}{\partial\,\mathrm{LN}_f} = \tfrac{\partial\mathcal L}{\partial\,\mathrm{logits}}\,W_{te}",
        r"\nabla\mathrm{LN}_f", einsum="btv,vc->btc")
    rec("grad.wte.from_logits", "matmul", ["grad.logits", "ln_f.out"], dwte_out, ("vocab", "d_model"),
        r"\nabla W_{te}^{\text{out}} = \textstyle\sum_{b,t} \big(\tfrac{\partial\mathcal L}{\partial\,\mathrm{logits}_t}\big)^{\top} \mathrm{LN}_f(x_t)",
        r"\nabla W_{te}^{\text{out}}", einsum="btv,btc->vc")
    x_name = fw["x_last_name"]
    dx = layernorm_bwd(rec, "ln_f", "grad.ln_f.out", dx, fw["lnf"], p["ln_f.weight"], x_name, f"grad.{x_name}")
    for i in reversed(range(cfg.model.n_layers)):
        P = f"L{i}."
        c = fw["blocks"][i]
        dres2 = f"grad.{P}resid_2"  # dx flows unchanged into both branches of resid_2 = resid_1 + mlp.out
        dg = _linear_bwd(rec, P + "mlp.gelu", P + "mlp.c_proj.weight", dres2, dx, c["g"], p[P + "mlp.c_proj.weight"],
                         ("batch", "tokens", "d_ff"),
                         r"\tfrac{\partial\mathcal L}{\partial G} = \tfrac{\partial\mathcal L}{\partial F}\,W_2^{\top}")
        dfc = L.gelu_backward(dg, c["fc"])
        rec(f"grad.{P}mlp.fc", "gelu_backward", [f"grad.{P}mlp.gelu", P + "mlp.fc"], dfc, ("batch", "tokens", "d_ff"),
            r"\tfrac{\partial\mathcal L}{\partial U} = \tfrac{\partial\mathcal L}{\partial G}\odot \mathrm{GELU}'(U)",
            r"\nabla U")
        dln2 = _linear_bwd(rec, P + "ln_2.out", P + "mlp.c_fc.weight", f"grad.{P}mlp.fc", dfc, c["ln2"]["out"],
                           p[P + "mlp.c_fc.weight"], BTC,
                           r"\tfrac{\partial\mathcal L}{\partial\,\mathrm{LN}_2} = \tfrac{\partial\mathcal L}{\partial U}\,W_1^{\top}")
        dh_ln = layernorm_bwd(rec, P + "ln_2", f"grad.{P}ln_2.out", dln2, c["ln2"], p[P + "ln_2.weight"],
                              P + "resid_1", f"grad.{P}resid_1.via_ln")
        dh = dx + dh_ln
        rec(f"grad.{P}resid_1", "add", [dres2, f"grad.{P}resid_1.via_ln"], dh, BTC,
            r"\tfrac{\partial\mathcal L}{\partial H} = \tfrac{\partial\mathcal L}{\partial X'} + \tfrac{\partial\mathcal L}{\partial H}\Big|_{\text{via }\mathrm{LN}_2}",
            r"\nabla H")
        dres1 = f"grad.{P}resid_1"
        dmerged = _linear_bwd(rec, P + "attn.merged", P + "attn.c_proj.weight", dres1, dh, c["a"]["merged"],
                              p[P + "attn.c_proj.weight"], BTC,
                              r"\tfrac{\partial\mathcal L}{\partial Z} = \tfrac{\partial\mathcal L}{\partial O}\,W_O^{\top}")
        ga = L.attention_backward(dmerged, c["a"])
        A = P + "attn."
        rec(f"grad.{A}context", "split_heads", [f"grad.{A}merged"], ga["context"], BHTD,
            r"\tfrac{\partial\mathcal L}{\partial Z_h} = \big(\tfrac{\partial\mathcal L}{\partial Z}\big)_{:,\,\text{columns of head }h}",
            r"\nabla Z_h", part=None, n_heads=cfg.model.n_heads)
        rec(f"grad.{A}weights", "matmul", [f"grad.{A}context", A + "v"], ga["weights"], BHTS,
            r"\tfrac{\partial\mathcal L}{\partial A_h} = \tfrac{\partial\mathcal L}{\partial Z_h}\,V_h^{\top}", r"\nabla A",
            einsum="bhtd,bhsd->bhts")
        rec(f"grad.{A}v", "matmul", [A + "weights", f"grad.{A}context"], ga["v"], BHTD,
            r"\tfrac{\partial\mathcal L}{\partial V_h} = A_h^{\top}\,\tfrac{\partial\mathcal L}{\partial Z_h}", r"\nabla V",
            einsum="bhts,bhtd->bhsd")
        rec(f"grad.{A}masked", "softmax_backward", [f"grad.{A}weights", A + "weights"], ga["masked"], BHTS,
            r"\tfrac{\partial\mathcal L}{\partial M_{t,s}} = A_{t,s}\Big(\tfrac{\partial\mathcal L}{\partial A_{t,s}} - \textstyle\sum_{s'} A_{t,s'}\tfrac{\partial\mathcal L}{\partial A_{t,s'}}\Big)",
            r"\nabla M")
        rec(f"grad.{A}scaled", "mask_backward", [f"grad.{A}masked"], ga["scaled"], BHTS,
            r"\tfrac{\partial\mathcal L}{\partial S'_{t,s}} = \tfrac{\partial\mathcal L}{\partial M_{t,s}} \text{ if } s \le t \text{ else } 0",
            r"\nabla S'")
        rec(f"grad.{A}scores", "scale", [f"grad.{A}scaled"], ga["scores"], BHTS,
            r"\tfrac{\partial\mathcal L}{\partial S} = \tfrac{\partial\mathcal L}{\partial S'} / \sqrt{D}", r"\nabla S",
            factor=c["a"]["scale"], factor_tex=rf"\sqrt{{{cfg.model.d_model // cfg.model.n_heads}}}", divide=True)
        rec(f"grad.{A}q", "matmul", [f"grad.{A}scores", A + "k"], ga["q"], BHTD,
            r"\tfrac{\partial\mathcal L}{\partial Q_h} = \tfrac{\partial\mathcal L}{\partial S_h}\,K_h", r"\nabla Q",
            einsum="bhts,bhsd->bhtd")
        rec(f"grad.{A}k", "matmul", [f"grad.{A}scores", A + "q"], ga["k"], BHTD,
            r"\tfrac{\partial\mathcal L}{\partial K_h} = \big(\tfrac{\partial\mathcal L}{\partial S_h}\big)^{\top} Q_h",
            r"\nabla K", einsum="bhts,bhtd->bhsd")
        rec(f"grad.{A}qkv", "merge_qkv", [f"grad.{A}q", f"grad.{A}k", f"grad.{A}v"], ga["qkv"], ("batch", "tokens", "qkv"),
            r"\nabla[Q|K|V] = \big[\nabla Q\,|\,\nabla K\,|\,\nabla V\big]", r"\nabla[Q|K|V]", n_heads=cfg.model.n_heads)
        dln1 = _linear_bwd(rec, P + "ln_1.out", P + "attn.c_attn.weight", f"grad.{A}qkv", ga["qkv"], c["ln1"]["out"],
                           p[P + "attn.c_attn.weight"], BTC,
                           r"\tfrac{\partial\mathcal L}{\partial\,\mathrm{LN}_1} = \nabla[Q|K|V]\,W_{\text{attn}}^{\top}")
        x_name = c["x_name"]
        dx_ln = layernorm_bwd(rec, P + "ln_1", f"grad.{P}ln_1.out", dln1, c["ln1"], p[P + "ln_1.weight"],
                              x_name, f"grad.{x_name}.via_ln")
        dx = dh + dx_ln
        rec(f"grad.{x_name}", "add", [dres1, f"grad.{x_name}.via_ln"], dx, BTC,
            r"\tfrac{\partial\mathcal L}{\partial X} = \tfrac{\partial\mathcal L}{\partial H} + \tfrac{\partial\mathcal L}{\partial X}\Big|_{\text{via }\mathrm{LN}_1}",
            r"\nabla X")
    V, C = p["wte"].shape
    dwte_in, dwpe = L.embedding_backward(dx, ids, V, cfg.model.n_positions)
    rec("grad.wpe", "embedding_backward", ["grad.embed.out"], dwpe, ("positions", "d_model"),
        r"\nabla W_{pe}[t] = \textstyle\sum_b \tfrac{\partial\mathcal L}{\partial X_{b,t}}", r"\nabla W_{pe}")
    rec("grad.wte.from_embed", "embedding_backward", ["grad.embed.out", "input_ids"], dwte_in, ("vocab", "d_model"),
        r"\nabla W_{te}^{\text{in}}[v] = \textstyle\sum_{b,t:\ \mathrm{id}_{b,t}=v} \tfrac{\partial\mathcal L}{\partial X_{b,t}}",
        r"\nabla W_{te}^{\text{in}}")
    rec("grad.wte", "add", ["grad.wte.from_logits", "grad.wte.from_embed"], dwte_out + dwte_in, ("vocab", "d_model"),
        r"\nabla W_{te} = \nabla W_{te}^{\text{out}} + \nabla W_{te}^{\text{in}}", r"\nabla W_{te}")
    return grads
