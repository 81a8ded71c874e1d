"""How each record is written: its defining formula and its symbol, in LaTeX, keyed by record name.

The model computes; this module only names. Each op kind's entry in engine/ops.py points at the function here
that names its records, `(name, cfg) -> (formula, symbol)`: `by_name` (most kinds: the tables below, per-layer
records looked up without their `L{i}.` prefix, then the rules of a gradient), `parameter`, `optimizer_record`,
`through_layernorm`, `stream_sum`, or an `update(...)` rule; `engine.ops.describe` asks the record's kind.
`latex_escape` is the one escaper for config text inside LaTeX (the site and the explanations use it too).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .config import Config

# -- parameters ------------------------------------------------------------------------------------------------
# One symbol, one meaning, on every page: the LayerNorm shift is δ (β is Adam's), the mid-block residual stream
# is R (H counts heads), the momentum buffer is buf (b_1 is a bias), momentum is ρ (μ is a LayerNorm mean), and the
# optimizer's step is k (t is a position). `SIZES` lists the symbols that are not records; tests check that no two
# records of different meaning share a symbol.
PARAM_SYMBOLS = {
    "wte": r"W_{te}", "wpe": r"W_{pe}", "ln_1.weight": r"\gamma_1", "ln_1.bias": r"\delta_1",
    "attn.c_attn.weight": r"W_{\text{attn}}", "attn.c_attn.bias": r"b_{\text{attn}}", "attn.c_proj.weight": "W_O",
    "attn.c_proj.bias": "b_O", "ln_2.weight": r"\gamma_2", "ln_2.bias": r"\delta_2", "mlp.c_fc.weight": "W_1",
    "mlp.c_fc.bias": "b_1", "mlp.c_proj.weight": "W_2", "mlp.c_proj.bias": "b_2", "ln_f.weight": r"\gamma_f",
    "ln_f.bias": r"\delta_f", "lm_head.weight": r"W_{\text{out}}",
    # Llama's (model.LLAMA_BLOCK_PARAMS), in nn.Linear's (out, in) layout; its norms' gains are γ₁, γ₂, γ_f too
    "attn.q_proj.weight": "W_Q", "attn.k_proj.weight": "W_K", "attn.v_proj.weight": "W_V", "attn.o_proj.weight": "W_O",
    "mlp.gate_proj.weight": r"W_{\text{gate}}", "mlp.up_proj.weight": r"W_{\text{up}}",
    "mlp.down_proj.weight": r"W_{\text{down}}",
}
PARAM_MEANINGS = {
    "wte": "token embedding table: one row per vocabulary word (also the output layer, tied)",
    "wpe": "position embedding table: one row per position",
    "ln_1.weight": "gain of the LayerNorm before attention", "ln_1.bias": "shift of the LayerNorm before attention",
    "attn.c_attn.weight": "packed projection to queries, keys and values",
    "attn.c_attn.bias": "bias of the packed Q, K, V projection",
    "attn.c_proj.weight": "attention output projection", "attn.c_proj.bias": "bias of the attention output projection",
    "ln_2.weight": "gain of the LayerNorm before the feed-forward network",
    "ln_2.bias": "shift of the LayerNorm before the feed-forward network",
    "mlp.c_fc.weight": "feed-forward expansion", "mlp.c_fc.bias": "bias of the feed-forward expansion",
    "mlp.c_proj.weight": "feed-forward projection back", "mlp.c_proj.bias": "bias of the feed-forward projection",
    "ln_f.weight": "gain of the final LayerNorm", "ln_f.bias": "shift of the final LayerNorm",
    "lm_head.weight": "output layer, untied from the token table: one row per vocabulary word",
    "attn.q_proj.weight": "query projection (out × in)", "attn.k_proj.weight": "key projection (out × in)",
    "attn.v_proj.weight": "value projection (out × in)", "attn.o_proj.weight": "attention output projection (out × in)",
    "mlp.gate_proj.weight": "feed-forward gate projection (out × in)",
    "mlp.up_proj.weight": "feed-forward up projection (out × in)",
    "mlp.down_proj.weight": "feed-forward down projection (out × in)",
}
LLAMA_PARAM_MEANINGS = {
    "wte": "token embedding table: one row per vocabulary word (also the output layer when tied)",
    "ln_1.weight": "gain of the RMSNorm before attention",
    "ln_2.weight": "gain of the RMSNorm before the feed-forward network", "ln_f.weight": "gain of the final RMSNorm",
}
UNTIED_MEANINGS = {"wte": "token embedding table: one row per vocabulary word (the output layer is lm_head.weight)"}
_LAYER = re.compile(r"(^|\.)L\d+\.")


def generic(name: str) -> str:
    """`L3.attn.q` -> `attn.q`, `grad.L3.attn.q` -> `grad.attn.q`: a per-layer record's name without its layer."""
    return _LAYER.sub(r"\1", name, count=1)


def param_symbol(name: str) -> str:
    """LaTeX symbol of a parameter record: `L0.attn.c_proj.weight` -> `W_O`."""
    return PARAM_SYMBOLS[generic(name)]


def init_formula(name: str, cfg: Config) -> str:
    """How a parameter is drawn (GPT-2's scheme, see model.init_params)."""
    std, rest = cfg.model.init_std, generic(name)
    if cfg.model.checkpoint:
        return r"\theta_0 = \theta_{\text{checkpoint}}"
    if rest.startswith("ln_") and rest.endswith(".weight"):
        return r"\gamma = 1"
    if rest.startswith("ln_") and rest.endswith(".bias"):
        return r"\delta = 0"
    if rest.endswith(".bias"):
        return r"b = 0"
    if rest.endswith("c_proj.weight"):
        return (rf"W \sim \mathcal{{N}}\!\left(0,\ ({std}/\sqrt{{2\,n_{{\text{{layer}}}}}})^2\right),\ "
                rf"n_{{\text{{layer}}}} = {cfg.model.n_layers}")
    return rf"W \sim \mathcal{{N}}(0,\ {std}^2)"


# -- activations (per-layer names without `L{i}.`) ------------------------------------------------------------------
D = r"\tfrac{\partial\mathcal L}{\partial"  # the start of a partial derivative of the loss
EPS_LN = r"\epsilon_{\text{LN}}"  # LayerNorm's ε (10^-5); plain ε is Adam's
LN_BACKWARD = (rf"{D} x_{{t}}}} = \tfrac{{1}}{{\sqrt{{\sigma^2_t+{EPS_LN}}}}}\Big(g - \overline{{g}} - \hat x_t\,"
               rf"\overline{{g\odot\hat x_t}}\Big),\ g = {D}\hat x_t}}")
LINEAR_DW = rf"{D} W}} = \textstyle\sum_{{b,t}} x_t^{{\top}}\,{D}\,\mathrm{{out}}_t}}"
LINEAR_DB = rf"{D} b}} = \textstyle\sum_{{b,t}} {D}\,\mathrm{{out}}_{{t}}}}"
GELU = r"G = \tfrac12 U\left(1+\tanh\!\left(\sqrt{2/\pi}\,(U+\kappa\,U^3)\right)\right),\ \kappa = 0.044715"

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
    "attn.merged": (r"Z_{\text{cat}} = [Z_0\,|\,\cdots\,|\,Z_{H-1}]", r"Z_{\text{cat}}"),
    "attn.out": (r"O = Z_{\text{cat}}\,W_O + b_O", "O"),
    "resid_1": (r"R = X + O", "R"),
    "mlp.fc": (r"U = \mathrm{LN}_2(R)\,W_1 + b_1", "U"),
    "mlp.gelu": (GELU, "G"),
    "mlp.out": (r"F = G\,W_2 + b_2", "F"),
    "resid_2": (r"X' = R + F", "X'"),
    "logits": (r"\mathrm{logits} = \mathrm{LN}_f(X'_{\text{last}})\,W_{te}^{\top}", r"\mathrm{logits}"),
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
    "grad.resid_1": (rf"{D} R}} = {D} X'}} + {D} R}}\Big|_{{\text{{via }}\mathrm{{LN}}_2}}", r"\nabla R"),
    "grad.attn.merged": (rf"{D} Z_{{\text{{cat}}}}}} = {D} O}}\,W_O^{{\top}}", r"\nabla Z_{\text{cat}}"),
    "grad.attn.context": (rf"{D} Z_h}} = \big({D} Z_{{\text{{cat}}}}}}\big)_{{:,\,\text{{columns of head }}h}}",
                          r"\nabla Z"),
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
    # an untied output layer: its own gradient (the token table's output-side share when tied)
    "grad.lm_head.weight": (r"\nabla W_{\text{out}} = \textstyle\sum_{b,t} \big(" + D
                            + r"\,\mathrm{logits}_t}\big)^{\top} \mathrm{LN}_f(x_t)", r"\nabla W_{\text{out}}"),
    # the forward pass again on the updated weights, and the training run
    "after.logits": (r"\mathrm{logits}' = \mathrm{model}_{\theta'}(x)", r"\mathrm{logits}'"),
    "after.probs": (r"p'_{t,v} = \mathrm{softmax}(\mathrm{logits}'_t)_v", "p'"),
    "after.target_prob": (r"p'_t(y_t) = p'_{t,y_t}", "p'(y)"),
    "after.per_token": (r"\ell'_t = -\log p'_{t,y_t}", r"\ell'"),
    "after.loss": (r"\mathcal{L}' = \tfrac1N\textstyle\sum_t \ell'_t", r"\mathcal{L}'"),
    "train.loss": (r"\mathcal{L}^{\text{run}}_k = \mathcal{L}(\theta_k),\ k = 0,\dots,n_{\text{steps}}",
                   r"\mathcal{L}^{\text{run}}"),
    "train.target_prob.before": (r"p^{\text{init}}_t(y_t) = p_{\theta_0}(y_t \mid \text{the words up to } t)",
                                 r"p^{\text{init}}(y)"),
    "train.target_prob.after": (r"p^{\text{end}}_t(y_t) = p_{\theta_{\text{end}}}(y_t \mid \text{the words up to } t),"
                                r"\ \theta_{\text{end}} = \theta_{n_{\text{steps}}}", r"p^{\text{end}}(y)"),
    "train.attn.weights.after": (r"A^{\text{end}}_h = \mathrm{softmax}\big(\mathrm{mask}(Q_h K_h^{\top}/\sqrt D)\big)"
                                 r"\ \text{on}\ \theta_{\text{end}}", r"A^{\text{end}}"),
    "train.generate.before": (r"\hat w^{\text{init}}_j = \arg\max_v\,\mathrm{logit}_{\theta_0}\big(\langle\text{bos}"
                              r"\rangle\,\hat w_0 \cdots \hat w_{j-1}\big)_v", r"\hat w^{\text{init}}"),
    "train.generate.after": (r"\hat w^{\text{end}}_j = \arg\max_v\,\mathrm{logit}_{\theta_{\text{end}}}\big("
                             r"\langle\text{bos}\rangle\,\hat w_0 \cdots \hat w_{j-1}\big)_v", r"\hat w^{\text{end}}"),
}

# With an untied output layer (`model.tie_embeddings: false`) these records are made with lm_head.weight, and the
# token table's gradient is its scatter-add alone (no grad.wte.from_logits / from_embed).
UNTIED: dict[str, tuple[str, str]] = {
    "logits": (r"\mathrm{logits} = \mathrm{LN}_f(X'_{\text{last}})\,W_{\text{out}}^{\top}", r"\mathrm{logits}"),
    "grad.ln_f.out": (rf"{D}\,\mathrm{{LN}}_f}} = {D}\,\mathrm{{logits}}}}\,W_{{\text{{out}}}}",
                      r"\nabla\mathrm{LN}_f"),
    "grad.wte": (rf"\nabla W_{{te}}[v] = \textstyle\sum_{{b,t:\ \mathrm{{id}}_{{b,t}}=v}} {D} X_{{b,t}}}}",
                 r"\nabla W_{te}"),
}

MEANINGS: dict[str, str] = {  # name (without its layer) -> what the record is, in a few words
    "input_ids": "the input token ids: each text with its last token dropped",
    "targets": "the target ids: each text shifted one place left (−100: padding, ignored)",
    "embed.tok": "token embeddings: the row of W_te of each input word",
    "embed.pos": "position embeddings: row t of W_pe",
    "embed.out": "the input of the first block: token plus position embeddings",
    "attn.qkv": "queries, keys and values of every head, packed side by side",
    "attn.q": "queries, per head", "attn.k": "keys, per head (row s: key position s)",
    "attn.v": "values, per head (row s: key position s)", "attn.scores": "query-key dot products",
    "attn.scaled": "scores divided by √D", "attn.masked": "scaled scores with the future set to −∞",
    "attn.weights": "attention weights: the row-wise softmax", "attn.context": "weighted sums of the values, per head",
    "attn.merged": "the heads' outputs side by side", "attn.out": "attention output, after the projection W_O",
    "resid_1": "the residual stream after attention: X + O",
    "mlp.fc": "feed-forward pre-activations", "mlp.gelu": "feed-forward activations: GELU(U)",
    "mlp.out": "feed-forward output, after the projection W_2",
    "resid_2": "the block's output X': the residual stream after the feed-forward network",
    "logits": "a score for every vocabulary word at every position", "probs": "the softmax of the logits",
    "loss.target_prob": "the probability of the right next word", "loss.per_token": "cross-entropy per position",
    "loss": "the loss: mean cross-entropy over the N targets",
    "grad.logits": "gradient of the logits", "grad.ln_f.out": "gradient of the final LayerNorm's output",
    "grad.wte.from_logits": "the output side's share of W_te's gradient",
    "grad.wte.from_embed": "the input side's share of W_te's gradient (a scatter-add)",
    "grad.attn.qkv": "the gradients of Q, K and V packed back side by side",
    "after.logits": "logits of the forward pass re-run on the updated weights",
    "after.probs": "probabilities on the updated weights", "after.target_prob": "the right word's probability, updated",
    "after.per_token": "cross-entropy per position, updated", "after.loss": "the loss on the updated weights",
    "train.loss": "the loss before each step of the training run, and after its last",
    "train.target_prob.before": "the right word's probability before the training run",
    "train.target_prob.after": "the right word's probability after the training run",
    "train.attn.weights.after": "attention weights of the trained model",
    "train.generate.before": "greedy text from the first input token, initial weights",
    "train.generate.after": "greedy text from the first input token, trained weights",
}

LAYERNORM = {  # a LayerNorm's records, by part; {k} is the LayerNorm's label (1, 2 or f), a superscript label
    "mean": (r"\mu_t = \tfrac{1}{C}\textstyle\sum_c x_{t,c}", r"\mu^{{\mathrm{{LN}}_{k}}}", "row means"),
    "var": (r"\sigma^2_t = \tfrac{1}{C}\textstyle\sum_c (x_{t,c}-\mu_t)^2", r"(\sigma^2)^{{\mathrm{{LN}}_{k}}}",
            "row variances"),
    "xhat": (rf"\hat x_{{t,c}} = \dfrac{{x_{{t,c}}-\mu_t}}{{\sqrt{{\sigma^2_t+{EPS_LN}}}}}",
             r"\hat x^{{\mathrm{{LN}}_{k}}}", "normalised rows: mean 0, variance 1"),
    "out": (r"\mathrm{LN}(x)_{t,c} = \gamma_c\,\hat x_{t,c} + \delta_c", r"\mathrm{{LN}}_{{{k}}}(x)",
            "the LayerNorm's output: gain times x̂ plus shift"),
}
LN_INPUT = {"ln_1": "the block's input", "ln_2": "R", "ln_f": "the last block's output"}
LAYERNORM_GRADS = {
    "weight": (rf"{D}\gamma_c}} = \textstyle\sum_{{b,t}} {D}\,\mathrm{{LN}}(x)_{{t,c}}}}\,\hat x_{{t,c}}", None),
    "bias": (rf"{D}\delta_c}} = \textstyle\sum_{{b,t}} {D}\,\mathrm{{LN}}(x)_{{t,c}}}}", None),
    "xhat": (rf"{D}\hat x_{{t,c}}}} = {D}\,\mathrm{{LN}}(x)_{{t,c}}}}\,\gamma_c",
             r"\nabla\hat x^{{\mathrm{{LN}}_{k}}}"),
}
RESIDUAL_GRAD = (rf"{D} X}} = {D} R}} + {D} X}}\Big|_{{\text{{via }}\mathrm{{LN}}_1}}", r"\nabla X")
# Which LayerNorm a gradient passed through on its way to a stream (the `.via_ln` records)
VIA_LN = {"embed.out": ("X", "1"), "resid_1": ("R", "2"), "resid_2": ("X'", "1")}

# -- Llama (`model.arch: llama`): its records' own formulas; a name not listed here reads the GPT-2 tables above ------
RMS_EPS = r"\epsilon_{\text{RMS}}"  # RMSNorm's ε (model.norm_eps)
ANGLE = r"\Theta_{t,d} = t\,\theta_{\text{rope}}^{-2j/D},\ j = d \bmod \tfrac D2"  # HF's pairing: d with d + D/2
ROT = r"\mathrm{rot}(x) = (-x_{D/2:},\ x_{:D/2})"  # rotate_half: each pair (a, b) becomes (-b, a)
LLAMA_DW = rf"{D} W}} = \textstyle\sum_{{b,t}} \big({D}\,\mathrm{{out}}_t}}\big)^{{\top}} x_t"  # W is (out, in)
LLAMA: dict[str, tuple[str, str]] = {
    "embed.out": (r"X_t = W_{te}[\mathrm{id}_t]", "X"),
    "rope.cos": (rf"\cos\Theta_{{t,d}},\ {ANGLE}", r"\cos\Theta"),
    "rope.sin": (rf"\sin\Theta_{{t,d}},\ {ANGLE}", r"\sin\Theta"),
    "attn.xq": (r"Q_{\text{cat}} = \mathrm{RMS}_1(X)\,W_Q^{\top}", r"Q_{\text{cat}}"),
    "attn.xk": (r"K_{\text{cat}} = \mathrm{RMS}_1(X)\,W_K^{\top}", r"K_{\text{cat}}"),
    "attn.xv": (r"V_{\text{cat}} = \mathrm{RMS}_1(X)\,W_V^{\top}", r"V_{\text{cat}}"),
    "attn.q_heads": (r"Q^{\circ}_h = (Q_{\text{cat}})_{:,\,\text{columns of head }h}", r"Q^{\circ}"),
    "attn.k_heads": (r"K^{\circ}_g = (K_{\text{cat}})_{:,\,\text{columns of K/V head }g}", r"K^{\circ}"),
    "attn.v": (r"V_g = (V_{\text{cat}})_{:,\,\text{columns of K/V head }g}", "V"),
    "attn.q": (rf"Q_{{t,d}} = Q^{{\circ}}_{{t,d}}\cos\Theta_{{t,d}} + "
               rf"\mathrm{{rot}}(Q^{{\circ}}_t)_d\,\sin\Theta_{{t,d}},\ {ROT}", "Q"),
    "attn.k": (rf"K_{{s,d}} = K^{{\circ}}_{{s,d}}\cos\Theta_{{s,d}} + "
               rf"\mathrm{{rot}}(K^{{\circ}}_s)_d\,\sin\Theta_{{s,d}},\ {ROT}", "K"),
    "attn.k_rep": (r"K^{\text{rep}}_h = K_{\lfloor h/r \rfloor},\ r = H / H_{kv}", r"K^{\text{rep}}"),
    "attn.v_rep": (r"V^{\text{rep}}_h = V_{\lfloor h/r \rfloor},\ r = H / H_{kv}", r"V^{\text{rep}}"),
    "attn.scores": (r"S_h = Q_h\,(K^{\text{rep}}_h)^{\top}", "S"),
    "attn.context": (r"Z_h = A_h V^{\text{rep}}_h", "Z"),
    "attn.out": (r"O = Z_{\text{cat}}\,W_O^{\top}", "O"),
    "mlp.gate": (r"U_{\text{gate}} = \mathrm{RMS}_2(R)\,W_{\text{gate}}^{\top}", r"U_{\text{gate}}"),
    "mlp.up": (r"U_{\text{up}} = \mathrm{RMS}_2(R)\,W_{\text{up}}^{\top}", r"U_{\text{up}}"),
    "mlp.act": (r"G = \mathrm{SiLU}(U_{\text{gate}}) = U_{\text{gate}}\,\sigma(U_{\text{gate}}),\ "
                r"\sigma(u) = \tfrac{1}{1+e^{-u}}", "G"),
    "mlp.hidden": (r"\tilde G = G \odot U_{\text{up}}", r"\tilde G"),
    "mlp.out": (r"F = \tilde G\,W_{\text{down}}^{\top}", "F"),
    "logits": (r"\mathrm{logits} = \mathrm{RMS}_f(X'_{\text{last}})\,W_{te}^{\top}", r"\mathrm{logits}"),
    # backward
    "grad.ln_f.out": (rf"{D}\,\mathrm{{RMS}}_f}} = {D}\,\mathrm{{logits}}}}\,W_{{te}}", r"\nabla\mathrm{RMS}_f"),
    "grad.wte.from_logits": (r"\nabla W_{te}^{\text{out}} = \textstyle\sum_{b,t} \big(" + D
                             + r"\,\mathrm{logits}_t}\big)^{\top} \mathrm{RMS}_f(x_t)", r"\nabla W_{te}^{\text{out}}"),
    "grad.lm_head.weight": (r"\nabla W_{\text{out}} = \textstyle\sum_{b,t} \big(" + D
                            + r"\,\mathrm{logits}_t}\big)^{\top} \mathrm{RMS}_f(x_t)", r"\nabla W_{\text{out}}"),
    "grad.mlp.hidden": (rf"{D} \tilde G}} = {D} F}}\,W_{{\text{{down}}}}", r"\nabla\tilde G"),
    "grad.mlp.up": (rf"{D} U_{{\text{{up}}}}}} = {D} \tilde G}} \odot G", r"\nabla U_{\text{up}}"),
    "grad.mlp.act": (rf"{D} G}} = {D} \tilde G}} \odot U_{{\text{{up}}}}", r"\nabla G"),
    "grad.mlp.gate": (rf"{D} U_{{\text{{gate}}}}}} = {D} G}} \odot \sigma(U_{{\text{{gate}}}})\big(1 + "
                      r"U_{\text{gate}}\,(1 - \sigma(U_{\text{gate}}))\big)", r"\nabla U_{\text{gate}}"),
    "grad.ln_2.out.from_up": (rf"\nabla\mathrm{{RMS}}_2\big|_{{\text{{up}}}} = {D} U_{{\text{{up}}}}}}\,"
                              r"W_{\text{up}}", r"\nabla\mathrm{RMS}_2\big|_{\text{up}}"),
    "grad.ln_2.out.from_gate": (rf"\nabla\mathrm{{RMS}}_2\big|_{{\text{{gate}}}} = {D} U_{{\text{{gate}}}}}}\,"
                                r"W_{\text{gate}}", r"\nabla\mathrm{RMS}_2\big|_{\text{gate}}"),
    "grad.ln_2.out": (rf"{D}\,\mathrm{{RMS}}_2}} = \nabla\mathrm{{RMS}}_2\big|_{{\text{{gate}}}} + "
                      r"\nabla\mathrm{RMS}_2\big|_{\text{up}}", r"\nabla\mathrm{RMS}_2"),
    "grad.resid_1": (rf"{D} R}} = {D} X'}} + {D} R}}\Big|_{{\text{{via }}\mathrm{{RMS}}_2}}", r"\nabla R"),
    "grad.attn.merged": (rf"{D} Z_{{\text{{cat}}}}}} = {D} O}}\,W_O", r"\nabla Z_{\text{cat}}"),
    "grad.attn.weights": (rf"{D} A_h}} = {D} Z_h}}\,(V^{{\text{{rep}}}}_h)^{{\top}}", r"\nabla A"),
    "grad.attn.v_rep": (rf"{D} V^{{\text{{rep}}}}_h}} = A_h^{{\top}}\,{D} Z_h}}", r"\nabla V^{\text{rep}}"),
    "grad.attn.q": (rf"{D} Q_h}} = {D} S_h}}\,K^{{\text{{rep}}}}_h", r"\nabla Q"),
    "grad.attn.k_rep": (rf"{D} K^{{\text{{rep}}}}_h}} = \big({D} S_h}}\big)^{{\top}} Q_h", r"\nabla K^{\text{rep}}"),
    "grad.attn.v": (rf"{D} V_g}} = \textstyle\sum_{{h:\ \lfloor h/r \rfloor = g}} {D} V^{{\text{{rep}}}}_h}}",
                    r"\nabla V"),
    "grad.attn.k": (rf"{D} K_g}} = \textstyle\sum_{{h:\ \lfloor h/r \rfloor = g}} {D} K^{{\text{{rep}}}}_h}}",
                    r"\nabla K"),
    "grad.attn.k_heads": (rf"{D} K^{{\circ}}_{{s,d}}}} = g_{{s,d}}\cos\Theta_{{s,d}} - \mathrm{{rot}}(g_s \odot "
                          rf"\sin\Theta_s)_d,\ g = {D} K}}", r"\nabla K^{\circ}"),
    "grad.attn.q_heads": (rf"{D} Q^{{\circ}}_{{t,d}}}} = g_{{t,d}}\cos\Theta_{{t,d}} - \mathrm{{rot}}(g_t \odot "
                          rf"\sin\Theta_t)_d,\ g = {D} Q}}", r"\nabla Q^{\circ}"),
    "grad.attn.xv": (r"\nabla V_{\text{cat}} = \big[\nabla V_0\,|\,\cdots\,|\,\nabla V_{H_{kv}-1}\big]",
                     r"\nabla V_{\text{cat}}"),
    "grad.attn.xk": (r"\nabla K_{\text{cat}} = \big[\nabla K^{\circ}_0\,|\,\cdots\,|\,\nabla K^{\circ}_{H_{kv}-1}\big]",
                     r"\nabla K_{\text{cat}}"),
    "grad.attn.xq": (r"\nabla Q_{\text{cat}} = \big[\nabla Q^{\circ}_0\,|\,\cdots\,|\,\nabla Q^{\circ}_{H-1}\big]",
                     r"\nabla Q_{\text{cat}}"),
    "grad.ln_1.out.from_q": (r"\nabla\mathrm{RMS}_1\big|_Q = \nabla Q_{\text{cat}}\,W_Q",
                             r"\nabla\mathrm{RMS}_1\big|_Q"),
    "grad.ln_1.out.from_k": (r"\nabla\mathrm{RMS}_1\big|_K = \nabla K_{\text{cat}}\,W_K",
                             r"\nabla\mathrm{RMS}_1\big|_K"),
    "grad.ln_1.out.from_v": (r"\nabla\mathrm{RMS}_1\big|_V = \nabla V_{\text{cat}}\,W_V",
                             r"\nabla\mathrm{RMS}_1\big|_V"),
    "grad.ln_1.out.from_kv": (r"\nabla\mathrm{RMS}_1\big|_{KV} = \nabla\mathrm{RMS}_1\big|_K + "
                              r"\nabla\mathrm{RMS}_1\big|_V", r"\nabla\mathrm{RMS}_1\big|_{KV}"),
    "grad.ln_1.out": (rf"{D}\,\mathrm{{RMS}}_1}} = \nabla\mathrm{{RMS}}_1\big|_Q + \nabla\mathrm{{RMS}}_1\big|_{{KV}}",
                      r"\nabla\mathrm{RMS}_1"),
}
LLAMA_UNTIED: dict[str, tuple[str, str]] = {
    "logits": (r"\mathrm{logits} = \mathrm{RMS}_f(X'_{\text{last}})\,W_{\text{out}}^{\top}", r"\mathrm{logits}"),
    "grad.ln_f.out": (rf"{D}\,\mathrm{{RMS}}_f}} = {D}\,\mathrm{{logits}}}}\,W_{{\text{{out}}}}",
                      r"\nabla\mathrm{RMS}_f"),
}
RMSNORM = {  # an RMSNorm's records, by part, as LAYERNORM; {k}: 1, 2 or f
    "ms": (r"\nu_t = \tfrac{1}{C}\textstyle\sum_c x_{t,c}^2", r"\nu^{{\mathrm{{RMS}}_{k}}}", "row means of squares"),
    "xhat": (rf"\hat x_{{t,c}} = \dfrac{{x_{{t,c}}}}{{\sqrt{{\nu_t+{RMS_EPS}}}}}", r"\hat x^{{\mathrm{{RMS}}_{k}}}",
             "rows divided by their root mean square"),
    "out": (r"\mathrm{RMS}(x)_{t,c} = \gamma_c\,\hat x_{t,c}", r"\mathrm{{RMS}}_{{{k}}}(x)",
            "the RMSNorm's output: gain times x̂ (no shift)"),
}
RMSNORM_GRADS = {
    "weight": (rf"{D}\gamma_c}} = \textstyle\sum_{{b,t}} {D}\,\mathrm{{RMS}}(x)_{{t,c}}}}\,\hat x_{{t,c}}", None),
    "xhat": (rf"{D}\hat x_{{t,c}}}} = {D}\,\mathrm{{RMS}}(x)_{{t,c}}}}\,\gamma_c",
             r"\nabla\hat x^{{\mathrm{{RMS}}_{k}}}"),
}
RMS_BACKWARD = (rf"{D} x_{{t}}}} = \tfrac{{1}}{{\sqrt{{\nu_t+{RMS_EPS}}}}}\Big(g - \hat x_t\,"
                rf"\overline{{g\odot\hat x_t}}\Big),\ g = {D}\hat x_t}}")
LLAMA_MEANINGS: dict[str, str] = {
    "embed.out": "the input of the first block: the token embeddings (no position table)",
    "rope.cos": "cosines of the rotary angles, one per position and dimension",
    "rope.sin": "sines of the rotary angles, one per position and dimension",
    "attn.xq": "queries of every head, side by side, before rotation",
    "attn.xk": "keys of every key/value head, side by side, before rotation",
    "attn.xv": "values of every key/value head, side by side",
    "attn.q_heads": "queries, per head, before rotation", "attn.k_heads": "keys, per key/value head, before rotation",
    "attn.v": "values, per key/value head (row s: key position s)",
    "attn.q": "queries, per head, each pair of dimensions turned by its position's angle",
    "attn.k": "keys, per key/value head, each pair turned by its position's angle",
    "attn.k_rep": "keys repeated for every query head of their group",
    "attn.v_rep": "values repeated for every query head of their group",
    "attn.context": "weighted sums of the values, per head", "attn.out": "attention output, after the projection W_O",
    "mlp.gate": "feed-forward gate pre-activations", "mlp.up": "feed-forward up projection",
    "mlp.act": "the gate through SiLU", "mlp.hidden": "SwiGLU: SiLU of the gate times the up projection",
    "mlp.out": "feed-forward output, after the projection W_down",
    "grad.ln_f.out": "gradient of the final RMSNorm's output",
    "grad.ln_2.out.from_up": "the up projection's share of the gradient of RMS₂'s output",
    "grad.ln_2.out.from_gate": "the gate projection's share of the gradient of RMS₂'s output",
    "grad.ln_1.out.from_q": "the query projection's share of the gradient of RMS₁'s output",
    "grad.ln_1.out.from_k": "the key projection's share of the gradient of RMS₁'s output",
    "grad.ln_1.out.from_v": "the value projection's share of the gradient of RMS₁'s output",
    "grad.ln_1.out.from_kv": "the key and value projections' shares of the gradient of RMS₁'s output, summed",
    "grad.attn.k": "gradient of the keys: each K/V head's sum over its group of query heads",
    "grad.attn.v": "gradient of the values: each K/V head's sum over its group of query heads",
    "grad.attn.q_heads": "gradient of the queries before rotation: turned back by the same angle",
    "grad.attn.k_heads": "gradient of the keys before rotation: turned back by the same angle",
}
# the symbols a llama run adds to SIZES (the site lists them for a llama trace)
LLAMA_SIZES: list[tuple[str, str, str]] = [
    (r"H_{kv}", "key/value heads per block; each serves $r = H / H_{kv}$ query heads", "model.n_kv_heads"),
    (r"\theta_{\text{rope}}", "the rotary base: pair $j$ turns by $t\\,\\theta_{\\text{rope}}^{-2j/D}$ at position $t$",
     "model.rope_theta"),
    (RMS_EPS, "RMSNorm's guard against dividing by zero", "model.norm_eps"),
    ("g", "index of a key/value head (0-based)", ""),
    (r"\Theta_{t,d}", "the rotary angle of position $t$, dimension $d$ (the pair $d$, $d + D/2$ shares it)", ""),
]

# -- the optimizer ---------------------------------------------------------------------------------------------------
OPTIMIZER = {
    "opt.g": (r"g = \nabla\theta + \lambda\,\theta", "g"),
    "opt.buf": (r"\mathrm{buf}_k = \rho\,\mathrm{buf}_{k-1} + g_k \quad (\mathrm{buf}_1 = g_1)", r"\mathrm{buf}"),
    "opt.m": (r"m_k = \beta_1 m_{k-1} + (1-\beta_1)\,g_k", "m"),
    "opt.v": (r"v_k = \beta_2 v_{k-1} + (1-\beta_2)\,g_k^2", "v"),
    "opt.m_hat": (r"\hat m_k = m_k / (1-\beta_1^k)", r"\hat m"),
    "opt.v_hat": (r"\hat v_k = v_k / (1-\beta_2^k)", r"\hat v"),
}
OPT_MEANINGS = {
    "opt.g": "gradient plus the L2 weight-decay term", "opt.buf": "SGD's momentum buffer",
    "opt.m": "Adam's first moment: running mean of the gradient",
    "opt.v": "Adam's second moment: running mean of the squared gradient",
    "opt.m_hat": "bias-corrected first moment", "opt.v_hat": "bias-corrected second moment",
}
# the rules of the updates (engine/ops.py gives each update kind its rule with `update`)
ADAMW_UPDATE = r"\theta_k = \theta_{k-1}(1-\eta\lambda) - \eta\,\hat m_k / (\sqrt{\hat v_k}+\epsilon)"
ADAM_UPDATE = r"\theta_k = \theta_{k-1} - \eta\,\hat m_k / (\sqrt{\hat v_k}+\epsilon)"
SGD_UPDATE = r"\theta_k = \theta_{k-1} - \eta\,g_k"
SGD_MOMENTUM_UPDATE = r"\theta_k = \theta_{k-1} - \eta\,\mathrm{buf}_k"

# -- symbols that are not records: sizes, constants, indices (the symbols page lists them with the records) ------
# (LaTeX, meaning, where its value comes from: a config key, `trace` for a size read off the trace, or "")
SIZES: list[tuple[str, str, str]] = [
    (r"n_{\text{vocab}}", "vocabulary size: words the model knows", "model.vocab"),
    ("C", r"width of the residual stream, $d_{\text{model}}$", "model.d_model"),
    ("H", "attention heads per block", "model.n_heads"),
    ("D", "head size, $C / H$", "head_dim"),
    (r"d_{ff}", "width of the feed-forward layer", "model.d_ff"),
    (r"n_{\text{layer}}", "transformer blocks", "model.n_layers"),
    ("B", "texts in the batch", "texts"),
    ("T", "positions per text: the longest text's words", "positions"),
    ("N", "targets: positions with a next word to predict (padding excluded)", "targets"),
    (r"n_{\text{steps}}", "steps of the training run", "train_steps"),
    (r"\eta", "learning rate", "optimizer.lr"),
    (r"\lambda", "weight decay", "optimizer.weight_decay"),
    (r"\beta_1,\ \beta_2", "Adam's decay rates of its running means", "optimizer.betas"),
    (r"\epsilon", "Adam's guard against dividing by zero", "optimizer.eps"),
    (r"\rho", "SGD's momentum", "optimizer.momentum"),
    (EPS_LN, "LayerNorm's guard against dividing by zero", "eps_ln"),
    (r"\kappa", "GELU's cubic constant", "gelu_c"),
    (r"\theta", "any parameter (weight); $\\theta'$ after the step, $\\theta_k$ after step $k$", ""),
    (r"\alpha", "GELU's slope constant $\\sqrt{2/\\pi}$ (the tanh form of the derivation)", ""),
    (r"\hat\sigma", "a LayerNorm row's spread with its guard, $\\sqrt{\\sigma^2 + \\epsilon_{\\text{LN}}}$", ""),
    (r"\phi_t", "row $t$ of $\\mathrm{LN}_f(X'_{\\text{last}})$: the final features the logits are made from", ""),
    (r"X'_{\text{last}}", "the output of the last block, the input of $\\mathrm{LN}_f$", ""),
    (r"\nabla x", r"the gradient $\partial\mathcal L/\partial x$: always the shape of $x$", ""),
    ("b", "index of a text in the batch (0-based, like the trace; the pages say text $b+1$)", ""),
    ("h", "index of a head (0-based)", ""),
    ("t", "a position: the query position in attention", ""),
    ("s", "a key position (attention looks from $t$ at $s \\le t$)", ""),
    ("c,\\ d,\\ f", "indices of $d_{\\text{model}}$, of the head size, of $d_{ff}$", ""),
    ("v", "index of a vocabulary word", ""),
    ("j", "index of a column of $[Q|K|V]$, or of a generated word", ""),
    ("k", "optimizer step (1 is the recorded step) or step of the training run", ""),
    ("p", "index of a row of the position table in a calc block (elsewhere $p$ is a probability)", ""),
]
# the rows of SIZES a llama run has no use for (LayerNorm, GELU, the position table), and those it words its own way
GPT2_ONLY_SIZES = {EPS_LN, r"\kappa", r"\alpha", r"\hat\sigma", "p"}
LLAMA_SIZE_WORDS = {
    r"\phi_t": "row $t$ of $\\mathrm{RMS}_f(X'_{\\text{last}})$: the final features the logits are made from",
    r"X'_{\text{last}}": "the output of the last block, the input of $\\mathrm{RMS}_f$",
    "j": "index of a rotary pair (dimensions $j$ and $j + D/2$), or of a generated word",
}


def sizes(arch: str = "gpt2") -> list[tuple[str, str, str]]:
    """The sizes, constants and indices of a run of architecture `arch` (the symbols page's first table)."""
    if arch != "llama":
        return SIZES
    kept = [(tex, LLAMA_SIZE_WORDS.get(tex, words), key) for tex, words, key in SIZES if tex not in GPT2_ONLY_SIZES]
    return kept + LLAMA_SIZES


# -- the namers: each op kind's entry (engine/ops.py) names its records with one of these --------------------------
Namer = Callable[[str, Config], tuple[str, str]]


def _tabled(name: str, cfg: Config) -> tuple[str, str] | None:
    """A record of the tables above, by its name without its layer; None when no table has it."""
    rest = generic(name)
    if cfg.model.arch == "llama":
        found = _llama_tabled(rest, cfg)
        if found is not None:
            return found
    if not cfg.model.tie_embeddings and rest in UNTIED:
        return UNTIED[rest]
    if rest in NOTATION:
        return NOTATION[rest]
    ln, _, part = rest.partition(".")
    if ln in ("ln_1", "ln_2", "ln_f") and part in LAYERNORM:
        formula, symbol, _ = LAYERNORM[part]
        return formula, symbol.format(k=ln[3:])
    return None


def _llama_tabled(rest: str, cfg: Config) -> tuple[str, str] | None:
    """A llama record of LLAMA, LLAMA_UNTIED or RMSNORM; None for one whose formula is GPT-2's."""
    if not cfg.model.tie_embeddings and rest in LLAMA_UNTIED:
        return LLAMA_UNTIED[rest]
    if rest in LLAMA:
        return LLAMA[rest]
    ln, _, part = rest.partition(".")
    if ln in ("ln_1", "ln_2", "ln_f") and part in RMSNORM:
        formula, symbol, _ = RMSNORM[part]
        return formula, symbol.format(k=ln[3:])
    return None


def by_name(name: str, cfg: Config) -> tuple[str, str]:
    """A record of the tables above, else a gradient by its rules (a parameter's, a LayerNorm part's)."""
    found = _tabled(name, cfg)
    if found is not None:
        return found
    head, _, target = name.partition(".")
    if head == "grad":
        return _gradient(name, generic(target), cfg.model.arch)
    raise KeyError(f"no notation for record {name!r}: add it to engine/notation.py")


def parameter(name: str, cfg: Config) -> tuple[str, str]:
    """A parameter: how it is drawn (or read) and its symbol."""
    return init_formula(name, cfg), param_symbol(name)


def optimizer_record(name: str, cfg: Config) -> tuple[str, str]:
    """`opt.<kind>.<param>`: the optimizer's own quantity, one per weight (OPTIMIZER)."""
    return OPTIMIZER["opt." + name.split(".")[1]]


def update(rule: str, with_momentum: str | None = None) -> Namer:
    """The namer of `updated.<param>` records: `rule` (`with_momentum` when the config has momentum), and the
    parameter's symbol primed."""

    def named(name: str, cfg: Config) -> tuple[str, str]:
        formula = with_momentum if with_momentum is not None and cfg.optimizer.momentum else rule
        return formula, param_symbol(name.partition(".")[2]) + "'"

    return named


def through_layernorm(name: str, cfg: Config) -> tuple[str, str]:
    """The gradient of a LayerNorm's input, `grad.<stream>.via_ln` (or the last block's output, whose only
    consumer is LN_f)."""
    target = generic(name.partition(".")[2])
    stream = target.removesuffix(".via_ln")
    if target.endswith(".via_ln") and stream in VIA_LN:
        sym, k = VIA_LN[stream]
        return LN_BACKWARD, rf"\nabla {sym}\big|_{{\mathrm{{LN}}_{k}}}"
    return LN_BACKWARD, r"\nabla X'"


def through_rmsnorm(name: str, cfg: Config) -> tuple[str, str]:
    """The gradient of an RMSNorm's input, `grad.<stream>.via_ln` (or the last block's output, whose only consumer
    is RMS_f)."""
    target = generic(name.partition(".")[2])
    stream = target.removesuffix(".via_ln")
    if target.endswith(".via_ln") and stream in VIA_LN:
        sym, k = VIA_LN[stream]
        return RMS_BACKWARD, rf"\nabla {sym}\big|_{{\mathrm{{RMS}}_{k}}}"
    return RMS_BACKWARD, r"\nabla X'"


def stream_sum(name: str, cfg: Config) -> tuple[str, str]:
    """A sum: a record of the tables above, else the gradient of a residual stream, both branches' gradients
    summed."""
    found = _tabled(name, cfg)
    if found is not None:
        return found
    head, _, target = name.partition(".")
    if head != "grad":
        raise KeyError(f"no notation for record {name!r}: add it to engine/notation.py")
    norm = r"\mathrm{RMS}_1" if cfg.model.arch == "llama" else r"\mathrm{LN}_1"
    if generic(target) == "resid_2":  # a block's output that the next block reads
        return rf"{D} X'}} = {D} R}}_{{\text{{next}}}} + {D} X'}}\Big|_{{\text{{via }}{norm}}}", r"\nabla X'"
    if cfg.model.arch == "llama":
        return rf"{D} X}} = {D} R}} + {D} X}}\Big|_{{\text{{via }}{norm}}}", r"\nabla X"
    return RESIDUAL_GRAD


def meaning(name: str, tied: bool = True, arch: str = "gpt2") -> str:
    """What a record is, in a few words (the symbols page); `tied`: whether the output layer is the token table;
    `arch`: the model's architecture (`model.arch`)."""
    rest = generic(name)
    head, _, target = rest.partition(".")
    if arch == "llama":
        if rest in LLAMA_PARAM_MEANINGS and (tied or rest != "wte"):
            return LLAMA_PARAM_MEANINGS[rest]
        if rest in LLAMA_MEANINGS:
            return LLAMA_MEANINGS[rest]
        ln, _, part = rest.partition(".")
        if ln in LN_INPUT and part in RMSNORM:
            return f"{RMSNORM[part][2]} ({ln}, of {LN_INPUT[ln]})"
        if head == "grad" and target.endswith(".via_ln"):
            return f"the share of {generic(target.removesuffix('.via_ln'))}'s gradient that came back through the " \
                   "RMSNorm it feeds"
        if head == "grad" and (generic(target) in LLAMA_MEANINGS or target.partition(".")[0] in LN_INPUT):
            return f"gradient of {generic(target)}: {meaning(target, tied, arch)}"
    if not tied and rest in UNTIED_MEANINGS:
        return UNTIED_MEANINGS[rest]
    if rest in PARAM_MEANINGS:
        return PARAM_MEANINGS[rest]
    if rest in MEANINGS:
        return MEANINGS[rest]
    if head == "updated":
        return f"{target} after the step"
    if head == "opt":
        kind, _, param = target.partition(".")
        return f"{OPT_MEANINGS[f'opt.{kind}']}, for {generic(param)}"
    ln, _, part = rest.partition(".")
    if ln in LN_INPUT and part in LAYERNORM:
        return f"{LAYERNORM[part][2]} ({ln}, of {LN_INPUT[ln]})"
    if head == "grad":
        base = target.removesuffix(".via_ln")
        what = generic(base)
        if target.endswith(".via_ln"):
            return f"the share of {what}'s gradient that came back through the LayerNorm it feeds"
        if what in PARAM_MEANINGS or what in MEANINGS or what.partition(".")[0] in LN_INPUT:
            return f"gradient of {what}: {meaning(base, tied, arch)}"
        return f"gradient of {what}"
    raise KeyError(f"no meaning for record {name!r}: add it to engine/notation.py")


def _gradient(name: str, target: str, arch: str = "gpt2") -> tuple[str, str]:
    """The gradient of parameter or LayerNorm (RMSNorm) part `target` (its name without its layer)."""
    ln, _, part = target.partition(".")
    if arch == "llama" and target in PARAM_SYMBOLS:  # a norm's gain, or a matrix in (out, in) layout
        formula = RMSNORM_GRADS[part][0] if ln.startswith("ln_") else LLAMA_DW
        return formula, r"\nabla " + PARAM_SYMBOLS[target]
    if arch == "llama" and ln.startswith("ln_") and part in RMSNORM_GRADS:
        formula, symbol = RMSNORM_GRADS[part]
        return formula, (symbol or "").format(k=ln[3:])
    if target in PARAM_SYMBOLS:
        ln, _, part = target.partition(".")
        symbol = r"\nabla " + PARAM_SYMBOLS[target]
        if ln.startswith("ln_") and part in LAYERNORM_GRADS:
            return LAYERNORM_GRADS[part][0], symbol
        return (LINEAR_DW if part == "weight" or target.endswith(".weight") else LINEAR_DB), symbol
    ln, _, part = target.partition(".")
    if ln.startswith("ln_") and part in LAYERNORM_GRADS:
        formula, symbol = LAYERNORM_GRADS[part]
        return formula, (symbol or "").format(k=ln[3:])
    raise KeyError(f"no notation for record {name!r}: add it to engine/notation.py")


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
