"""The recorded ops the model is written in: each computes with `engine.layers` and records what it made.

A `Tape` holds every value of one pass by record name (the backward pass reads the forward's values from
it) and hands each new value to `record(name, value, op=..., inputs=..., axes=..., **meta)`: the trace's
recorder, a check for NaN/Inf, or nothing (the training run). `meta` carries every constant an explanation
of one element needs (ε, the scale, the GELU constants, the einsum of a contraction), so nothing downstream
repeats a literal. Names are strings throughout: an op takes the names of its inputs and returns the name
of its output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import layers as L

EPS = 1e-5  # LayerNorm epsilon, as GPT-2
BT = ("batch", "tokens")
BTC = ("batch", "tokens", "d_model")
BHTD = ("batch", "heads", "tokens", "head_dim")
BHSD = ("batch", "heads", "keys", "head_dim")  # keys and values: their token axis indexes key positions s
BHTS = ("batch", "heads", "tokens", "keys")
GTD = ("batch", "kv_heads", "tokens", "head_dim")  # Llama's keys before repeat_kv: one per key/value head
GSD = ("batch", "kv_heads", "keys", "head_dim")
OUT_AXIS = {"c_attn": "qkv", "c_fc": "d_ff"}  # the output axis of each linear layer (else d_model)


class Tape:
    def __init__(self, values: dict[str, np.ndarray], axes: dict[str, tuple[str, ...]],
                 record: Callable[..., Any] | None = None) -> None:
        self.v = dict(values)  # record name -> value
        self.axes = dict(axes)
        self.record = record
        self.grads: dict[str, np.ndarray] = {}  # parameter -> its gradient, as the backward pass makes them

    def put(self, name: str, value: Any, *, op: str, inputs: tuple[str, ...] | list[str], axes: tuple[str, ...],
            **meta: Any) -> str:
        self.v[name] = value
        self.axes[name] = tuple(axes)
        if self.record is not None:
            self.record(name, value, op=op, inputs=tuple(inputs), axes=tuple(axes), **meta)
        return name

    def param_grad(self, param: str, value: np.ndarray, **how: Any) -> str:
        """Record the gradient of a parameter and keep it for the optimizer."""
        self.grads[param] = value
        return self.put(f"grad.{param}", value, **how)

    # -- forward ops ------------------------------------------------------------------------------------------
    def embed(self, ids: str) -> str:
        tok, pos, x = L.embedding_forward(self.v["wte"], self.v["wpe"], self.v[ids])
        self.put("embed.tok", tok, op="embedding", inputs=("wte", ids), axes=BTC)
        self.put("embed.pos", pos, op="embedding", inputs=("wpe",), axes=("tokens", "d_model"))
        return self.put("embed.out", x, op="add", inputs=("embed.tok", "embed.pos"), axes=BTC)

    def layernorm(self, ln: str, x: str) -> str:
        mean, var, xhat, out = L.layernorm_forward(self.v[x], self.v[f"{ln}.weight"], self.v[f"{ln}.bias"], EPS)
        self.put(f"{ln}.mean", mean, op="mean", inputs=(x,), axes=BT)
        self.put(f"{ln}.var", var, op="var", inputs=(x, f"{ln}.mean"), axes=BT)
        self.put(f"{ln}.xhat", xhat, op="normalize", inputs=(x, f"{ln}.mean", f"{ln}.var"), axes=BTC, eps=EPS)
        return self.put(f"{ln}.out", out, op="affine", inputs=(f"{ln}.xhat", f"{ln}.weight", f"{ln}.bias"),
                        axes=BTC)

    def linear(self, out: str, x: str, layer: str) -> str:
        w, b = f"{layer}.weight", f"{layer}.bias"
        axes = self.axes[x][:-1] + (OUT_AXIS.get(layer.rsplit(".", 1)[-1], "d_model"),)
        return self.put(out, L.linear_forward(self.v[x], self.v[w], self.v[b]), op="linear", inputs=(x, w, b),
                        axes=axes, einsum="bti,io->bto")

    def split_qkv(self, a: str, qkv: str, n_heads: int) -> tuple[str, str, str]:
        q, k, v = (self.put(f"{a}.{key}", value, op="split_heads", inputs=(qkv,), axes=BHTD if key == "q" else BHSD,
                            part=part, n_heads=n_heads)
                   for part, (key, value) in enumerate(zip("qkv", L.split_qkv(self.v[qkv], n_heads))))
        return q, k, v

    def scores(self, out: str, q: str, k: str) -> str:
        return self.put(out, L.scores_forward(self.v[q], self.v[k]), op="matmul", inputs=(q, k), axes=BHTS,
                        einsum="bhtd,bhsd->bhts")

    def scale(self, out: str, x: str, head_dim: int) -> str:
        factor = 1.0 / math.sqrt(head_dim)
        return self.put(out, self.v[x] * factor, op="scale", inputs=(x,), axes=self.axes[x], factor=factor,
                        factor_tex=rf"\sqrt{{{head_dim}}}", divide=True)

    def causal_mask(self, out: str, x: str) -> str:
        return self.put(out, L.causal_mask_forward(self.v[x]), op="causal_mask", inputs=(x,), axes=BHTS)

    def softmax(self, out: str, x: str) -> str:
        return self.put(out, L.softmax_forward(self.v[x]), op="softmax", inputs=(x,), axes=self.axes[x])

    def context(self, out: str, weights: str, v: str) -> str:
        return self.put(out, L.context_forward(self.v[weights], self.v[v]), op="matmul", inputs=(weights, v),
                        axes=BHTD, einsum="bhts,bhsd->bhtd")

    def merge_heads(self, out: str, x: str) -> str:
        return self.put(out, L.merge_heads(self.v[x]), op="merge_heads", inputs=(x,), axes=BTC)

    def gelu(self, out: str, x: str) -> str:
        return self.put(out, L.gelu_forward(self.v[x]), op="gelu", inputs=(x,), axes=self.axes[x], k=L.GELU_K,
                        c=L.GELU_C)

    def add(self, out: str, a: str, b: str) -> str:
        return self.put(out, self.v[a] + self.v[b], op="add", inputs=(a, b), axes=self.axes[a])

    def logits(self, x: str, w: str) -> str:
        """`x @ w.T`: `w` is the token table (tied, GPT-2) or the output layer's own `lm_head.weight`."""
        return self.put("logits", L.logits_forward(self.v[x], self.v[w]), op="matmul", inputs=(x, w),
                        axes=("batch", "tokens", "vocab"), einsum="btc,vc->btv")

    def cross_entropy(self, logits: str, targets: str) -> str:
        probs, target_prob, per_token, loss = L.cross_entropy_forward(self.v[logits], self.v[targets])
        self.put("probs", probs, op="softmax", inputs=(logits,), axes=("batch", "tokens", "vocab"))
        self.put("loss.target_prob", target_prob, op="gather", inputs=("probs", targets), axes=BT)
        self.put("loss.per_token", per_token, op="cross_entropy", inputs=(logits, targets), axes=BT)
        return self.put("loss", np.float64(loss), op="loss_mean", inputs=("loss.per_token", targets), axes=())

    # -- backward ops: the gradient of record X is the record `grad.X` ---------------------------------------------
    def cross_entropy_backward(self, probs: str, targets: str) -> str:
        return self.put("grad.logits", L.cross_entropy_backward(self.v[probs], self.v[targets]),
                        op="cross_entropy_backward", inputs=(probs, targets), axes=("batch", "tokens", "vocab"))

    def logits_backward(self, dlogits: str, x: str, w: str) -> str:
        """The gradients of `logits = x @ w.T`: of x (returned) and of w. The tied token table's output-side share
        is `grad.wte.from_logits` (embed_backward adds the input side); an untied `lm_head.weight` gets its own."""
        dx, dw = L.logits_backward(self.v[dlogits], self.v[x], self.v[w])
        dxname = self.put(f"grad.{x}", dx, op="matmul", inputs=(dlogits, w), axes=BTC, einsum="btv,vc->btc")
        how = dict(op="matmul", inputs=(dlogits, x), axes=("vocab", "d_model"), einsum="btv,btc->vc")
        if w == "wte":
            self.put("grad.wte.from_logits", dw, **how)
        else:
            self.param_grad(w, dw, **how)
        return dxname

    def layernorm_backward(self, ln: str, dout: str, x: str, dx: str) -> str:
        """Records the gradients of the LayerNorm's weight, bias and x̂, and of its input x as `dx`."""
        dxhat, dxv, dw, db = L.layernorm_backward(self.v[dout], self.v[f"{ln}.xhat"], self.v[f"{ln}.var"],
                                                  self.v[f"{ln}.weight"], EPS)
        self.param_grad(f"{ln}.weight", dw, op="sum", inputs=(dout, f"{ln}.xhat"), axes=("d_model",),
                        einsum="btc,btc->c")
        self.param_grad(f"{ln}.bias", db, op="sum", inputs=(dout,), axes=("d_model",), einsum="btc->c")
        self.put(f"grad.{ln}.xhat", dxhat, op="mul", inputs=(dout, f"{ln}.weight"), axes=BTC, einsum="btc,c->btc")
        return self.put(dx, dxv, op="layernorm_backward", inputs=(f"grad.{ln}.xhat", f"{ln}.xhat", f"{ln}.var"),
                        axes=BTC, eps=EPS, x=x)

    def linear_backward(self, dout: str, x: str, layer: str) -> str:
        """The gradients of `out = x @ W + b`: of x (returned), and of W and b (kept for the optimizer)."""
        w, b = f"{layer}.weight", f"{layer}.bias"
        dx, dw, db = L.linear_backward(self.v[dout], self.v[x], self.v[w])
        out_axis = self.axes[w][-1]
        dxname = self.put(f"grad.{x}", dx, op="matmul", inputs=(dout, w), axes=self.axes[x], einsum="bto,io->bti")
        self.param_grad(w, dw, op="matmul", inputs=(x, dout), axes=(self.axes[x][-1], out_axis),
                        einsum="bti,bto->io")
        self.param_grad(b, db, op="sum", inputs=(dout,), axes=(out_axis,), einsum="bto->o")
        return dxname

    def gelu_backward(self, dout: str, x: str) -> str:
        return self.put(f"grad.{x}", L.gelu_backward(self.v[dout], self.v[x]), op="gelu_backward",
                        inputs=(dout, x), axes=self.axes[x], k=L.GELU_K, c=L.GELU_C)

    def split_heads_backward(self, dmerged: str, out: str, n_heads: int) -> str:
        return self.put(out, L.split_heads(self.v[dmerged], n_heads), op="split_heads", inputs=(dmerged,),
                        axes=BHTD, part=None, n_heads=n_heads)

    def context_backward(self, dcontext: str, weights: str, v: str) -> tuple[str, str]:
        dw, dv = L.context_backward(self.v[dcontext], self.v[weights], self.v[v])
        dwn = self.put(f"grad.{weights}", dw, op="matmul", inputs=(dcontext, v), axes=BHTS, einsum="bhtd,bhsd->bhts")
        dvn = self.put(f"grad.{v}", dv, op="matmul", inputs=(weights, dcontext), axes=BHSD, einsum="bhts,bhtd->bhsd")
        return dwn, dvn

    def softmax_backward(self, dout: str, y: str, out: str) -> str:
        return self.put(out, L.softmax_backward(self.v[dout], self.v[y]), op="softmax_backward", inputs=(dout, y),
                        axes=BHTS)

    def causal_mask_backward(self, dout: str, out: str) -> str:
        return self.put(out, L.causal_mask_backward(self.v[dout]), op="mask_backward", inputs=(dout,), axes=BHTS)

    def scale_backward(self, dout: str, out: str, head_dim: int) -> str:
        factor = 1.0 / math.sqrt(head_dim)
        return self.put(out, self.v[dout] * factor, op="scale", inputs=(dout,), axes=BHTS, factor=factor,
                        factor_tex=rf"\sqrt{{{head_dim}}}", divide=True)

    def scores_backward(self, dscores: str, q: str, k: str) -> tuple[str, str]:
        dq, dk = L.scores_backward(self.v[dscores], self.v[q], self.v[k])
        dqn = self.put(f"grad.{q}", dq, op="matmul", inputs=(dscores, k), axes=BHTD, einsum="bhts,bhsd->bhtd")
        dkn = self.put(f"grad.{k}", dk, op="matmul", inputs=(dscores, q), axes=BHSD, einsum="bhts,bhtd->bhsd")
        return dqn, dkn

    def merge_qkv(self, out: str, dq: str, dk: str, dv: str, n_heads: int) -> str:
        return self.put(out, L.merge_qkv(self.v[dq], self.v[dk], self.v[dv]), op="merge_qkv", inputs=(dq, dk, dv),
                        axes=("batch", "tokens", "qkv"), n_heads=n_heads)

    def add_grads(self, out: str, a: str, b: str) -> str:
        """Where a value fed two branches, its gradient is the sum of theirs."""
        return self.put(out, self.v[a] + self.v[b], op="add", inputs=(a, b), axes=self.axes[a])

    def embed_backward(self, dx: str, ids: str, tied: bool = True) -> None:
        """The gradients of the two tables: wpe's, and wte's scatter-add; when wte is also the output layer (tied),
        that is its input-side share, added to the output side's."""
        vocab, positions = len(self.v["wte"]), len(self.v["wpe"])
        dwte_in, dwpe = L.embedding_backward(self.v[dx], self.v[ids], vocab, positions)
        self.param_grad("wpe", dwpe, op="embedding_backward", inputs=(dx,), axes=("positions", "d_model"))
        self._token_table_grad(dwte_in, dx, ids, tied)

    def _token_table_grad(self, dwte_in: np.ndarray, dx: str, ids: str, tied: bool) -> None:
        if not tied:
            self.param_grad("wte", dwte_in, op="embedding_backward", inputs=(dx, ids), axes=("vocab", "d_model"))
            return
        self.put("grad.wte.from_embed", dwte_in, op="embedding_backward", inputs=(dx, ids), axes=("vocab", "d_model"))
        self.param_grad("wte", self.v["grad.wte.from_logits"] + dwte_in, op="add",
                        inputs=("grad.wte.from_logits", "grad.wte.from_embed"), axes=("vocab", "d_model"))

    # -- Llama's ops (model.llama_forward / llama_backward) -----------------------------------------------------------
    def token_embed(self, ids: str) -> str:
        """The input of the first block: the token table's rows, no position table (positions enter by rotation)."""
        return self.put("embed.out", L.token_embedding_forward(self.v["wte"], self.v[ids]), op="embedding",
                        inputs=("wte", ids), axes=BTC)

    def rope_tables(self, T: int, D: int, theta: float) -> tuple[str, str]:
        cos, sin = L.rope_tables(T, D, theta)
        axes = ("tokens", "head_dim")
        return (self.put("rope.cos", cos, op="rope_table", inputs=(), axes=axes, fn="cos", theta=theta),
                self.put("rope.sin", sin, op="rope_table", inputs=(), axes=axes, fn="sin", theta=theta))

    def rmsnorm(self, ln: str, x: str, eps: float) -> str:
        ms, xhat, out = L.rmsnorm_forward(self.v[x], self.v[f"{ln}.weight"], eps)
        self.put(f"{ln}.ms", ms, op="mean_square", inputs=(x,), axes=BT)
        self.put(f"{ln}.xhat", xhat, op="rms_normalize", inputs=(x, f"{ln}.ms"), axes=BTC, eps=eps)
        return self.put(f"{ln}.out", out, op="mul", inputs=(f"{ln}.xhat", f"{ln}.weight"), axes=BTC,
                        einsum="btc,c->btc")

    def project(self, out: str, x: str, layer: str) -> str:
        """`x @ W.T` with W in nn.Linear's (out, in) layout, no bias."""
        w = f"{layer}.weight"
        return self.put(out, L.projection_forward(self.v[x], self.v[w]), op="matmul", inputs=(x, w),
                        axes=self.axes[x][:-1] + self.axes[w][:1], einsum="bti,oi->bto")

    def split_heads(self, out: str, x: str, n_heads: int, kv: bool = False) -> str:
        return self.put(out, L.split_heads(self.v[x], n_heads), op="split_heads", inputs=(x,),
                        axes=(GSD if kv else BHTD), part=None, n_heads=n_heads)

    def rope(self, out: str, x: str) -> str:
        return self.put(out, L.rope_forward(self.v[x], self.v["rope.cos"], self.v["rope.sin"]), op="rope",
                        inputs=(x, "rope.cos", "rope.sin"), axes=self.axes[x])

    def repeat_kv(self, out: str, x: str, n_rep: int) -> str:
        return self.put(out, L.repeat_kv_forward(self.v[x], n_rep), op="repeat_kv", inputs=(x,),
                        axes=("batch", "heads") + self.axes[x][2:], n_rep=n_rep)

    def swiglu(self, M: str, gate: str, up: str) -> str:
        act, hidden = L.swiglu_forward(self.v[gate], self.v[up])
        self.put(f"{M}.act", act, op="silu", inputs=(gate,), axes=self.axes[gate])
        return self.put(f"{M}.hidden", hidden, op="mul", inputs=(f"{M}.act", up), axes=self.axes[gate],
                        einsum="btf,btf->btf")

    def rmsnorm_backward(self, ln: str, dout: str, x: str, dx: str, eps: float) -> str:
        """Records the gradients of the RMSNorm's weight and x̂, and of its input x as `dx`."""
        dxhat, dxv, dw = L.rmsnorm_backward(self.v[dout], self.v[f"{ln}.xhat"], self.v[f"{ln}.ms"],
                                            self.v[f"{ln}.weight"], eps)
        self.param_grad(f"{ln}.weight", dw, op="sum", inputs=(dout, f"{ln}.xhat"), axes=("d_model",),
                        einsum="btc,btc->c")
        self.put(f"grad.{ln}.xhat", dxhat, op="mul", inputs=(dout, f"{ln}.weight"), axes=BTC, einsum="btc,c->btc")
        return self.put(dx, dxv, op="rmsnorm_backward", inputs=(f"grad.{ln}.xhat", f"{ln}.xhat", f"{ln}.ms"),
                        axes=BTC, eps=eps, x=x)

    def project_backward(self, dout: str, x: str, layer: str, dx: str | None = None) -> str:
        """The gradients of `out = x @ W.T`: of x (returned; named `dx`, else grad.x) and of W (kept)."""
        w = f"{layer}.weight"
        dxv, dw = L.projection_backward(self.v[dout], self.v[x], self.v[w])
        dxname = self.put(dx or f"grad.{x}", dxv, op="matmul", inputs=(dout, w), axes=self.axes[x],
                          einsum="bto,oi->bti")
        self.param_grad(w, dw, op="matmul", inputs=(dout, x), axes=self.axes[w], einsum="bto,bti->oi")
        return dxname

    def swiglu_backward(self, M: str, dhidden: str, gate: str, up: str) -> tuple[str, str]:
        """The gradients of `hidden = SiLU(gate) * up`: of up and of the SiLU's output (each the other factor times
        dhidden), then of the gate (through SiLU); returns (grad of gate, grad of up)."""
        act = f"{M}.act"
        dup, dact, dgate = L.swiglu_backward(self.v[dhidden], self.v[gate], self.v[up], self.v[act])
        dup_name = self.put(f"grad.{up}", dup, op="mul", inputs=(dhidden, act), axes=self.axes[up],
                            einsum="btf,btf->btf")
        self.put(f"grad.{act}", dact, op="mul", inputs=(dhidden, up), axes=self.axes[act], einsum="btf,btf->btf")
        dgate_name = self.put(f"grad.{gate}", dgate, op="silu_backward", inputs=(f"grad.{act}", gate),
                              axes=self.axes[gate])
        return dgate_name, dup_name

    def repeat_kv_backward(self, dout: str, out: str, n_rep: int) -> str:
        return self.put(out, L.repeat_kv_backward(self.v[dout], n_rep), op="repeat_kv_backward", inputs=(dout,),
                        axes=GSD, n_rep=n_rep)

    def rope_backward(self, dout: str, out: str) -> str:
        return self.put(out, L.rope_backward(self.v[dout], self.v["rope.cos"], self.v["rope.sin"]),
                        op="rope_backward", inputs=(dout, "rope.cos", "rope.sin"), axes=self.axes[dout])

    def merge_heads_grad(self, out: str, dheads: str) -> str:
        """The gradient of a head split: the heads' gradients side by side again."""
        return self.put(out, L.merge_heads(self.v[dheads]), op="merge_heads", inputs=(dheads,),
                        axes=self.axes[out.removeprefix("grad.")])

    def token_embed_backward(self, dx: str, ids: str, tied: bool) -> None:
        """The token table's gradient: the scatter-add of the first block's input gradient; when the table is also
        the output layer (tied), that is its input-side share, added to the output side's."""
        self._token_table_grad(L.token_embedding_backward(self.v[dx], self.v[ids], len(self.v["wte"])), dx, ids, tied)
