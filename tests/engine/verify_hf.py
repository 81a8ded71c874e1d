"""`make verify`: compare a config's trace with Hugging Face (GPT2LMHeadModel, or LlamaForCausalLM for
`model.arch: llama`) + torch.optim and write the figures.

For the default config (configs/default.yaml) PyTorch's own numbers go into the repository,
configs/verification/default.json (`reference`: every compared tensor, float64): every site of the default config
works out its figures from them, from its first build and on any machine (NumPy's last bits differ between CPUs,
PyTorch's numbers do not move), and a test fails when the default trace no longer agrees with them
(tests/engine/test_shipped_verification.py). For any other config the figures go to build/verification.json
(git-ignored), shown only when its `trace_sha256` is the digest of the trace being built. The site build reads either
(site_build.data.checks); it never needs torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from oracle import is_llama, max_abs, oracle_activations, oracle_name, oracle_step  # noqa: E402

from engine import estimate, load_config, run  # noqa: E402
from engine.verify import config_digest, digest  # noqa: E402

# stock LlamaForCausalLM rounds these to float32 even in a float64 model (tests/engine/oracle.py, float64_llama)
FLOAT64_NOTE = " (its RMSNorm, rotary tables and attention softmax made float64 too)"


def verification(trace, reference: bool = False) -> dict:
    """The figures (max |engine - PyTorch| per tensor) for this trace; with `reference`, PyTorch's numbers too."""
    o = oracle_step(trace)
    torch_values = {"logits": o["logits"], "loss": o["loss"], "after.loss": o["after_loss"],
                    **oracle_activations(trace)}
    for key in o["keys"]:
        names = trace.index[key]
        torch_values[names["grad"]] = o["grads"][key]
        torch_values[names["updated"]] = o["updated"][key]
    optimizer = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[trace.config["optimizer"]["name"]]
    note = FLOAT64_NOTE if is_llama(trace.config) else ""
    data = {"format": "handstep-verification", "trace_sha256": digest(trace), "config_sha256": config_digest(trace),
            "oracle": f"transformers {transformers.__version__} {oracle_name(trace.config)} + torch "
                      f"{torch.__version__} torch.optim.{optimizer}, float64{note}",
            "max_abs_diff": {name: max_abs(value, trace[name]) for name, value in torch_values.items()}}
    if reference:  # the figures are worked out by each build, from these and its own trace
        del data["trace_sha256"]
        data["reference"] = {name: {"shape": list(np.shape(value)),
                                    "values": np.asarray(value, dtype=np.float64).ravel().tolist()}
                             for name, value in torch_values.items()}
    return data


ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
SHIPPED = ROOT / "configs" / "verification" / "default.json"  # the default config's comparison, committed
LOCAL = Path("build/verification.json")  # any other config's (git-ignored)


def default_out(config: str) -> Path:
    """Where the figures of `config` go: the shipped file for the default config, build/verification.json else."""
    return SHIPPED if Path(config).resolve() == DEFAULT_CONFIG else LOCAL


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(DEFAULT_CONFIG.relative_to(ROOT)))
    ap.add_argument("--out", help="where to write the figures (default: configs/verification/default.json for "
                                  "configs/default.yaml, build/verification.json for any other config)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="handstep-verify-") as folder:
        # a run the size of GPT-2 writes its values to a file as the site build does, not all into memory
        values = Path(folder) / "values.bin" if estimate(cfg).spills else None
        trace = run(cfg, values_path=values)
        out = Path(args.out) if args.out else default_out(args.config)
        data = verification(trace, reference=out.resolve() == SHIPPED)
        trace.release()
    figures = data.pop("max_abs_diff") if "reference" in data else data["max_abs_diff"]
    worst = max(figures.items(), key=lambda kv: kv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {os.path.relpath(out)}: {len(figures)} tensors checked against PyTorch, largest "
          f"difference {worst[1]:.1e} ({worst[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
