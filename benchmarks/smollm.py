"""A config with SmolLM-135M's shapes (a Llama-architecture model) and random weights, for `make bench`.

SmolLM-135M: 30 blocks, 576 wide, 9 query heads sharing 3 key/value heads, a 1,536-wide SwiGLU, a 49,152-word
vocabulary, tied embeddings. The words are generated as for GPT-2 small (benchmarks/gpt2_small.py), and the one text
is 64 of them. The real checkpoint's config is configs/smollm.yaml (docs/llama.md says how to download it).

    .venv/bin/python -m benchmarks.smollm /tmp/smollm.yaml   # then: handstep build --config /tmp/smollm.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import gpt2_small


def config(tokens: int = 64, seed: int = 0) -> dict:
    cfg = gpt2_small.config(vocab=49_152, tokens=tokens, d_model=576, n_heads=9, d_ff=1536, n_layers=30,
                            n_positions=2048, seed=seed)
    cfg["model"].update({"arch": "llama", "n_kv_heads": 3, "rope_theta": 10_000.0, "norm_eps": 1e-5,
                         "tie_embeddings": True})
    return cfg


def write(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(config()), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "smollm.yaml"))
