"""A config with full GPT-2-small shapes and random weights, for `make bench` and for trying the site at scale.

GPT-2 small: 12 blocks, 768 wide, 12 heads, 3072 in the MLP, 1,024 positions, a 50,257-word vocabulary. The
vocabulary is `<pad>`, `<bos>`, `<eos>` and 50,254 generated words (two or three syllables, so the pages read as
words, not numbers); the one text is 64 of them, so the step sees 64 tokens. Nothing here is committed as YAML:
`write(path)` writes the config (JSON, which YAML reads) where a benchmark wants it.

    .venv/bin/python -m benchmarks.gpt2_small /tmp/gpt2-small.yaml   # then: handstep build --config /tmp/...

`train_steps` is 0: the training-run page then shows the recorded step's loss before and after (two points, the
same step). One more step would add a full forward and backward pass (about 1.5 s and a full set of gradients
in memory) without adding anything the recorded step does not show; 0 keeps the benchmark about the site.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

VOCAB = 50_257
TOKENS = 64
SPECIAL = ("<pad>", "<bos>", "<eos>")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def words(n: int) -> list[str]:
    """n distinct generated words: every two-syllable word (bako, ...), then three-syllable ones."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    out: list[str] = []
    for size in itertools.count(2):
        for parts in itertools.product(syllables, repeat=size):
            out.append("".join(parts))
            if len(out) == n:
                return out
    raise AssertionError("unreachable")


def config(vocab: int = VOCAB, tokens: int = TOKENS, d_model: int = 768, n_heads: int = 12, d_ff: int = 3072,
           n_layers: int = 12, n_positions: int = 1024, train_steps: int = 0, seed: int = 0) -> dict:
    """The config as a dict (`engine.config.config_from_dict` reads it; so does `handstep build` as JSON/YAML)."""
    vocab_words = list(SPECIAL) + words(vocab - len(SPECIAL))
    # the text: `tokens` words spread over the whole vocabulary (a fixed stride, so rows of wte far apart are used)
    n = vocab - len(SPECIAL)
    text = " ".join(vocab_words[len(SPECIAL) + (i * 7919 + 11) % n] for i in range(tokens))
    return {"seed": seed, "train_steps": train_steps,
            "model": {"vocab": vocab_words, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
                      "n_layers": n_layers, "n_positions": n_positions, "init_std": 0.02},
            "data": {"texts": [text]}}


def write(path: str | Path, **sizes: int) -> Path:
    """Write the config to `path` (JSON is YAML) and return the path."""
    path = Path(path)
    path.write_text(json.dumps(config(**sizes)), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "gpt2-small.yaml"))
