"""The independent oracle: Hugging Face GPT2LMHeadModel or LlamaForCausalLM + torch.optim in float64.

Loads the engine's initial weights through the trace's `index` (HF state_dict keys, same layouts; an untied
output layer is `lm_head.weight`) and returns logits, loss, every gradient and the updated parameters, all as
NumPy arrays.
Nothing here imports the engine's model code: only the trace's numbers and config.

A float64 LlamaForCausalLM (transformers 5) still computes three things in float32, which stops agreement with any
float64 computation near 1e-7: `LlamaRMSNorm.forward` casts its input to float32, `LlamaRotaryEmbedding` makes its
inverse frequencies (`inv_freq`, a buffer built at construction) and its cos/sin tables in float32, and
`eager_attention_forward` runs its softmax with `dtype=torch.float32`. `float64_llama` makes the three float64 and
changes nothing else: every RMSNorm and the rotary module get a `forward` of their own (the same formula as
modeling_llama.py's, without the casts), `inv_freq` is computed again in float64 from `rope_theta` and the head
size, and attention goes through `eager_float64`, Hugging Face's eager attention with its softmax in the model's
dtype, registered with transformers' own extension point (`AttentionInterface.register`, plus the eager mask for it
in `AttentionMaskInterface`) and chosen with `attn_implementation="eager_float64"`. The projections, repeat_kv,
rotate_half, apply_rotary_pos_emb, the MLP, the residuals and the causal mask are Hugging Face's own code.
"""

from __future__ import annotations

import types

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.llama import modeling_llama
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.set_default_dtype(torch.float64)
FLOAT64_ATTENTION = "eager_float64"


def eager_float64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """modeling_llama.eager_attention_forward with its softmax in the inputs' dtype (float64), not float32."""
    key_states = modeling_llama.repeat_kv(key, module.num_key_value_groups)
    value_states = modeling_llama.repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value_states).transpose(1, 2).contiguous(), weights


AttentionInterface.register(FLOAT64_ATTENTION, eager_float64)
AttentionMaskInterface.register(FLOAT64_ATTENTION, eager_mask)


def _rmsnorm_float64(self, hidden_states):
    """LlamaRMSNorm.forward without its cast to float32."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rotary_float64(self, x, position_ids):
    """LlamaRotaryEmbedding.forward (default rope) in float64: the angles, then cos and sin, without float32."""
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def float64_llama(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """`model` (already float64, built with attn_implementation="eager_float64") with its RMSNorms and rotary tables
    in float64 (see the module's docstring)."""
    conf = model.config
    assert conf._attn_implementation == FLOAT64_ATTENTION, conf._attn_implementation
    assert conf.rope_parameters["rope_type"] == "default", conf.rope_parameters
    head = conf.hidden_size // conf.num_attention_heads
    for module in model.modules():
        if isinstance(module, modeling_llama.LlamaRMSNorm):
            module.forward = types.MethodType(_rmsnorm_float64, module)
        elif isinstance(module, modeling_llama.LlamaRotaryEmbedding):
            theta = conf.rope_parameters["rope_theta"]
            module.inv_freq = 1.0 / (theta ** (torch.arange(0, head, 2, dtype=torch.float64) / head))
            module.forward = types.MethodType(_rotary_float64, module)
    return model


def hf_llama(cfg: dict, bos: int | None = None) -> LlamaForCausalLM:
    """LlamaForCausalLM of the config's shape, float64 throughout (`float64_llama`). No pad token: an embedding's
    padding_idx would freeze that row's gradient, which the engine (like GPT-2) computes in full."""
    m = cfg["model"]
    vocab = m["vocab"]
    bos = vocab.index("<bos>") if bos is None else bos
    conf = LlamaConfig(vocab_size=len(vocab), hidden_size=m["d_model"], intermediate_size=m["d_ff"],
                       num_hidden_layers=m["n_layers"], num_attention_heads=m["n_heads"],
                       num_key_value_heads=m["n_kv_heads"], max_position_embeddings=m["n_positions"],
                       rms_norm_eps=m["norm_eps"], rope_theta=m["rope_theta"], hidden_act="silu",
                       attention_bias=False, mlp_bias=False, tie_word_embeddings=m["tie_embeddings"],
                       pad_token_id=None, bos_token_id=bos,
                       eos_token_id=vocab.index("<eos>") if "<eos>" in vocab else bos,
                       attn_implementation=FLOAT64_ATTENTION)
    return float64_llama(LlamaForCausalLM(conf).to(torch.float64).eval())


def is_llama(cfg: dict) -> bool:
    return cfg["model"].get("arch", "gpt2") == "llama"


def oracle_name(cfg: dict) -> str:
    """The Hugging Face class the oracle runs for this config."""
    return "LlamaForCausalLM" if is_llama(cfg) else "GPT2LMHeadModel"


def hf_model(cfg: dict, bos: int | None = None) -> GPT2LMHeadModel:
    """GPT-2 of the config's shape; `bos` is the id every input starts with (a checkpoint's vocabulary has no
    `<bos>`: GPT-2 starts from `<|endoftext|>`). The ids only label the model: no computation reads them."""
    m = cfg["model"]
    vocab = m["vocab"]
    bos = vocab.index("<bos>") if bos is None else bos
    conf = GPT2Config(vocab_size=len(vocab), n_positions=m["n_positions"], n_embd=m["d_model"],
                      n_layer=m["n_layers"], n_head=m["n_heads"], n_inner=m["d_ff"],
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      layer_norm_epsilon=1e-5, bos_token_id=bos,
                      eos_token_id=vocab.index("<eos>") if "<eos>" in vocab else bos,
                      tie_word_embeddings=m.get("tie_embeddings", True))
    return GPT2LMHeadModel(conf).to(torch.float64).eval()  # eval: no dropout anywhere


def parameter_keys(trace) -> list[str]:
    """The trace's parameters under their Hugging Face names (`transformer.*`, and `lm_head.weight` when untied)."""
    return [k for k, v in trace.index.items() if isinstance(v, dict)]


def oracle_step(trace, model: GPT2LMHeadModel | None = None) -> dict:
    """One forward, backward and optimizer step in PyTorch: from the trace's initial weights, or from `model`
    as given (a checkpoint loaded with `from_pretrained`; a Llama one made float64 with `float64_llama`)."""
    cfg = trace.config
    keys = parameter_keys(trace)
    tied = cfg["model"].get("tie_embeddings", True)
    assert ("lm_head.weight" not in keys) == tied
    if model is None:
        make = hf_llama if is_llama(cfg) else hf_model
        model = make(cfg, bos=int(trace["input_ids"][0, 0]))
        state = {k: torch.tensor(trace[trace.index[k]["initial"]]) for k in keys}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= ({"lm_head.weight"} if tied else set()), (missing, unexpected)
    assert (model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()) == tied
    assert set(keys) == set(dict(model.named_parameters())), "every parameter of the model is a tensor of the trace"

    ids = torch.tensor(trace["input_ids"])
    targets = torch.tensor(trace["targets"])
    logits = model(input_ids=ids).logits  # (B, T, V), float64
    # HF's own loss shifts labels and runs in float32: compute cross-entropy here in float64.
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    named = dict(model.named_parameters())
    grads = {k: named[k].grad.detach().numpy().copy() for k in keys}

    opt = cfg["optimizer"]
    decay = [p for k, p in named.items() if opt["decay"] == "all" or p.ndim >= 2]
    no_decay = [p for k, p in named.items() if not (opt["decay"] == "all" or p.ndim >= 2)]
    groups = [{"params": decay, "weight_decay": opt["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    if opt["name"] == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])
    elif opt["name"] == "adam":
        optimizer = torch.optim.Adam(groups, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"])
    else:
        optimizer = torch.optim.SGD(groups, lr=opt["lr"], momentum=opt["momentum"])
    optimizer.step()
    updated = {k: named[k].detach().numpy().copy() for k in keys}
    with torch.no_grad():
        after = model(input_ids=ids).logits
        after_loss = F.cross_entropy(after.reshape(-1, after.shape[-1]), targets.reshape(-1), ignore_index=-100)
    return {"logits": logits.detach().numpy(), "loss": loss.item(), "grads": grads, "updated": updated,
            "after_loss": after_loss.item(), "keys": keys}


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def oracle_activations(trace) -> dict:
    """Intermediate values and their gradients from Hugging Face, captured with hooks, keyed by trace name (GPT-2's
    below, Llama's in `llama_activations`)."""
    return (llama_activations if is_llama(trace.config) else gpt2_activations)(trace)


def _capture(model, trace):
    """(on_output, on_input, finish): hooks that keep a module's output or input under a trace name, and
    `finish(out)`, which runs the loss backward and returns every kept value and the gradient of each the trace has."""
    seen: dict[str, torch.Tensor] = {}
    hooks = []

    def keep(name, tensor):
        if tensor.requires_grad:
            tensor.retain_grad()
        seen[name] = tensor

    def on_output(module, name, pick=lambda out: out):
        hooks.append(module.register_forward_hook(lambda m, i, o: keep(name, pick(o))))

    def on_input(module, name):
        hooks.append(module.register_forward_pre_hook(lambda m, i: keep(name, i[0])))

    def finish(out):
        for i, att in enumerate(out.attentions):
            keep(f"L{i}.attn.weights", att)
        keep("logits", out.logits)
        targets = torch.tensor(trace["targets"])
        loss = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        for h in hooks:
            h.remove()
        values = {name: t.detach().numpy().copy() for name, t in seen.items()}
        for name, t in seen.items():
            if t.grad is not None and f"grad.{name}" in trace:
                values[f"grad.{name}"] = t.grad.detach().numpy().copy()
        return values

    return on_output, on_input, finish


def llama_activations(trace) -> dict:
    """Forward: embed.out, the rotary tables, and per layer ln_1.out, attn.xq/xk/xv, attn.weights, attn.merged,
    attn.out, resid_1, ln_2.out, mlp.gate/up/act/hidden, mlp.out, resid_2; then ln_f.out and logits. Backward:
    grad.<name> for the ones the engine records a gradient of."""
    cfg = trace.config
    model = hf_llama(cfg, bos=int(trace["input_ids"][0, 0]))
    model.load_state_dict({k: torch.tensor(trace[trace.index[k]["initial"]]) for k in parameter_keys(trace)},
                          strict=False)
    on_output, on_input, finish = _capture(model, trace)
    t = model.model
    on_output(t.embed_tokens, "embed.out")
    on_output(t.rotary_emb, "rope.cos", pick=lambda out: out[0][0])  # (1, T, D): one table for the batch
    on_output(t.rotary_emb, "rope.sin", pick=lambda out: out[1][0])
    for i, block in enumerate(t.layers):
        P = f"L{i}."
        on_output(block.input_layernorm, P + "ln_1.out")
        for part in "qkv":
            on_output(getattr(block.self_attn, f"{part}_proj"), P + f"attn.x{part}")
        on_input(block.self_attn.o_proj, P + "attn.merged")
        on_output(block.self_attn.o_proj, P + "attn.out")
        on_input(block.post_attention_layernorm, P + "resid_1")
        on_output(block.post_attention_layernorm, P + "ln_2.out")
        on_output(block.mlp.gate_proj, P + "mlp.gate")
        on_output(block.mlp.up_proj, P + "mlp.up")
        on_output(block.mlp.act_fn, P + "mlp.act")
        on_input(block.mlp.down_proj, P + "mlp.hidden")
        on_output(block.mlp.down_proj, P + "mlp.out")
        on_output(block, P + "resid_2", pick=lambda out: out[0] if isinstance(out, tuple) else out)
    on_output(t.norm, "ln_f.out")
    return finish(model(input_ids=torch.tensor(trace["input_ids"]), output_attentions=True))


def gpt2_activations(trace) -> dict:
    """Intermediate values and their gradients from Hugging Face, captured with hooks, keyed by trace name.

    Forward: embed.out, and per layer ln_1.out, attn.qkv, attn.weights, attn.merged, attn.out, resid_1,
    ln_2.out, mlp.fc, mlp.gelu, mlp.out, resid_2; then ln_f.out and logits. Backward: grad.<name> for the
    ones the engine records a gradient of.
    """
    cfg = trace.config
    model = hf_model(cfg, bos=int(trace["input_ids"][0, 0]))
    model.config._attn_implementation = "eager"  # returns attention weights
    keys = parameter_keys(trace)
    model.load_state_dict({k: torch.tensor(trace[trace.index[k]["initial"]]) for k in keys}, strict=False)
    on_output, on_input, finish = _capture(model, trace)
    t = model.transformer
    on_output(t.drop, "embed.out")
    for i, block in enumerate(t.h):
        P = f"L{i}."
        on_output(block.ln_1, P + "ln_1.out")
        on_output(block.attn.c_attn, P + "attn.qkv")
        on_input(block.attn.c_proj, P + "attn.merged")
        on_output(block.attn.c_proj, P + "attn.out")
        on_input(block.ln_2, P + "resid_1")
        on_output(block.ln_2, P + "ln_2.out")
        on_output(block.mlp.c_fc, P + "mlp.fc")
        on_output(block.mlp.act, P + "mlp.gelu")
        on_output(block.mlp.c_proj, P + "mlp.out")
        on_output(block, P + "resid_2", pick=lambda out: out[0] if isinstance(out, tuple) else out)
    on_output(t.ln_f, "ln_f.out")
    return finish(model(input_ids=torch.tensor(trace["input_ids"]), output_attentions=True))
