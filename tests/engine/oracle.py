"""The independent oracle: Hugging Face GPT2LMHeadModel + torch.optim in float64.

Loads the engine's initial weights through the trace's `index` (HF state_dict keys, same layouts; an untied
output layer is `lm_head.weight`) and returns logits, loss, every gradient and the updated parameters, all as
NumPy arrays.
Nothing here imports the engine's model code: only the trace's numbers and config.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.set_default_dtype(torch.float64)


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
    as given (a checkpoint loaded with `from_pretrained`)."""
    cfg = trace.config
    keys = parameter_keys(trace)
    tied = cfg["model"].get("tie_embeddings", True)
    assert ("lm_head.weight" not in keys) == tied
    if model is None:
        model = hf_model(cfg, bos=int(trace["input_ids"][0, 0]))
        state = {k: torch.tensor(trace[trace.index[k]["initial"]]) for k in keys}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= ({"lm_head.weight"} if tied else set()), (missing, unexpected)
    assert (model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()) == tied
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
    seen: dict[str, torch.Tensor] = {}

    def keep(name, tensor):
        if tensor.requires_grad:
            tensor.retain_grad()
        seen[name] = tensor

    hooks = []

    def on_output(module, name, pick=lambda out: out):
        hooks.append(module.register_forward_hook(lambda m, i, o: keep(name, pick(o))))

    def on_input(module, name):
        hooks.append(module.register_forward_pre_hook(lambda m, i: keep(name, i[0])))

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
    out = model(input_ids=torch.tensor(trace["input_ids"]), output_attentions=True)
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
