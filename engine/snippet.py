"""The whole step in about 20 lines of PyTorch, generated from a trace's config (shown on the summary page,
run by a test). It loads the initial weights from the site's trace.json and compares with the engine."""

from __future__ import annotations


def pytorch_snippet(config: dict, trace_file: str = "trace.json", bos: int | None = None) -> str:
    """The program's text; `bos` is the id every input starts with (a Hugging Face checkpoint's own BOS token,
    `<|endoftext|>` for GPT-2), by default the word-level vocabulary's `<bos>`."""
    m, o = config["model"], config["optimizer"]
    bos = m["vocab"].index("<bos>") if bos is None else int(bos)
    eos = m["vocab"].index("<eos>") if "<eos>" in m["vocab"] else bos
    tied = m.get("tie_embeddings", True)  # an untied output layer is the trace's lm_head.weight
    untie = "" if tied else ", tie_word_embeddings=False"
    llama = m.get("arch") == "llama"
    prefix = '"model."' if llama else '"transformer."'
    keys = prefix if tied else f'({prefix}, "lm_head.")'
    table = "model.embed_tokens" if llama else "transformer.wte"
    load = f"  # lm_head is tied to {table}" if tied else "  # lm_head.weight: its own matrix, untied"
    if o["name"] == "sgd":
        make_opt = f"torch.optim.SGD(groups, lr={o['lr']!r}, momentum={o['momentum']!r})"
    else:
        cls = "AdamW" if o["name"] == "adamw" else "Adam"
        make_opt = f"torch.optim.{cls}(groups, lr={o['lr']!r}, betas={tuple(o['betas'])!r}, eps={o['eps']!r})"
    head = _llama_model(m, bos, eos, tied, trace_file) if llama else f'''import json, torch, torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_default_dtype(torch.float64)
trace = json.load(open({trace_file!r}))
rec = {{r["name"]: r for r in trace["records"]}}
model = GPT2LMHeadModel(GPT2Config(
    vocab_size={len(m["vocab"])}, n_positions={m["n_positions"]}, n_embd={m["d_model"]}, n_layer={m["n_layers"]},
    n_head={m["n_heads"]}, n_inner={m["d_ff"]}, activation_function="gelu_new", layer_norm_epsilon=1e-5,
    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id={bos}, eos_token_id={eos}{untie})).eval()
'''
    return head + f'''tensors = {{k: rec[v["initial"]] for k, v in trace["index"].items() if k.startswith({keys})}}
weights = {{k: torch.tensor(r["value"]) for k, r in tensors.items()}}
decays = {{k for k, r in tensors.items() if r["meta"]["decays"]}}  # which tensors decay: the engine's one rule
model.load_state_dict(weights, strict=False){load}
ids, targets = torch.tensor(rec["input_ids"]["value"]), torch.tensor(rec["targets"]["value"])
logits = model(input_ids=ids).logits
loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)  # float64, mean over targets
loss.backward()
params = dict(model.named_parameters())
groups = [{{"params": [p for k, p in params.items() if k in decays], "weight_decay": {o["weight_decay"]!r}}},
          {{"params": [p for k, p in params.items() if k not in decays], "weight_decay": 0.0}}]
{make_opt}.step()
print("loss: torch", loss.item(), "handstep", rec["loss"]["value"])
for key, names in trace["index"].items():
    if key in params:
        diff = (params[key].detach() - torch.tensor(rec[names["updated"]]["value"])).abs().max().item()
        print(f"{{key:40}} updated, max |torch - handstep| = {{diff:.1e}}")
'''


def _llama_model(m: dict, bos: int, eos: int, tied: bool, trace_file: str) -> str:
    """The start of the llama program: LlamaForCausalLM, with the two places where Hugging Face works in float32 even
    in a float64 model (RMSNorm, the rotary tables) replaced by the same formulas in float64; SDPA attention keeps the
    inputs' dtype."""
    D = m["d_model"] // m["n_heads"]
    return f'''import json, torch, torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama as hf

torch.set_default_dtype(torch.float64)
def rms_norm(self, x):  # Hugging Face's RMSNorm and rotary tables are float32 even in float64: here, float64
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
def rotary(self, x, position_ids):
    angle = position_ids[..., None] * (1.0 / {m["rope_theta"]!r} ** (torch.arange(0, {D}, 2) / {D}))
    return torch.cat((angle, angle), -1).cos(), torch.cat((angle, angle), -1).sin()
hf.LlamaRMSNorm.forward, hf.LlamaRotaryEmbedding.forward = rms_norm, rotary
trace = json.load(open({trace_file!r}))
rec = {{r["name"]: r for r in trace["records"]}}
model = LlamaForCausalLM(LlamaConfig(
    vocab_size={len(m["vocab"])}, hidden_size={m["d_model"]}, intermediate_size={m["d_ff"]},
    num_hidden_layers={m["n_layers"]}, num_attention_heads={m["n_heads"]}, num_key_value_heads={m["n_kv_heads"]},
    max_position_embeddings={m["n_positions"]}, rms_norm_eps={m["norm_eps"]!r}, rope_theta={m["rope_theta"]!r},
    tie_word_embeddings={tied}, bos_token_id={bos}, eos_token_id={eos}, attn_implementation="sdpa")).eval()
'''
