"""`make verify`: compare a config's trace with Hugging Face (GPT2LMHeadModel, or LlamaForCausalLM for
`model.arch: llama`) + torch.optim and write the figures.

The site build reads the file and shows the per-tensor figures next to each tensor when the file's
`trace_sha256` matches the trace it builds from; otherwise it says "not checked against PyTorch in this
build". The build itself never needs torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import transformers  # noqa: E402
from oracle import is_llama, max_abs, oracle_activations, oracle_name, oracle_step  # noqa: E402

from engine import estimate, load_config, run  # noqa: E402
from engine.verify import config_digest, digest  # noqa: E402

# stock LlamaForCausalLM rounds these to float32 even in a float64 model (tests/engine/oracle.py, float64_llama)
FLOAT64_NOTE = " (its RMSNorm, rotary tables and attention softmax made float64 too)"


def verification(trace) -> dict:
    o = oracle_step(trace)
    tensors = {"logits": max_abs(o["logits"], trace["logits"]), "loss": abs(o["loss"] - trace["loss"]),
               "after.loss": abs(o["after_loss"] - trace["after.loss"])}
    for name, value in oracle_activations(trace).items():
        tensors[name] = max_abs(value, trace[name])
    for key in o["keys"]:
        names = trace.index[key]
        tensors[names["grad"]] = max_abs(o["grads"][key], trace[names["grad"]])
        tensors[names["updated"]] = max_abs(o["updated"][key], trace[names["updated"]])
    optimizer = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[trace.config["optimizer"]["name"]]
    note = FLOAT64_NOTE if is_llama(trace.config) else ""
    return {"format": "handstep-verification", "trace_sha256": digest(trace), "config_sha256": config_digest(trace),
            "oracle": f"transformers {transformers.__version__} {oracle_name(trace.config)} + torch "
                      f"{torch.__version__} torch.optim.{optimizer}, float64{note}",
            "max_abs_diff": tensors}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--out", default="build/verification.json")
    args = ap.parse_args()
    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="handstep-verify-") as folder:
        # a run the size of GPT-2 writes its values to a file as the site build does, not all into memory
        values = Path(folder) / "values.bin" if estimate(cfg).spills else None
        trace = run(cfg, values_path=values)
        data = verification(trace)
        trace.release()
    worst = max(data["max_abs_diff"].items(), key=lambda kv: kv[1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(data['max_abs_diff'])} tensors checked against PyTorch, largest difference "
          f"{worst[1]:.1e} ({worst[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
