"""A small GPT-2 checkpoint written with NumPy alone (no torch): config.json, model.safetensors and tokenizer.json,
for tests that need a `model.from` folder to break, edit or protect."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors format: an 8-byte little-endian header length, the JSON header (padded with spaces to a
    multiple of 8), then every tensor's little-endian bytes at its data_offsets."""
    header, blobs, offset = {}, [], 0
    for key, value in tensors.items():
        dtype = {np.dtype(np.float64): ("F64", "<f8")}.get(value.dtype, ("F32", "<f4"))
        data = np.ascontiguousarray(value, dtype=dtype[1]).tobytes()
        header[key] = {"dtype": dtype[0], "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_checkpoint(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A GPT-2 of 8 wide, 2 heads, 1 block, 16 positions and a byte-level BPE tokenizer; returns (config.json's
    dict, the tensors) for a case to break and write again."""
    from tokenizers.implementations import ByteLevelBPETokenizer

    folder.mkdir(parents=True)
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(["the cat sat on the mat", "the dog ran"], vocab_size=280, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    tok.save(str(folder / "tokenizer.json"))
    V, C, P = tok.get_vocab_size(), 8, 16
    eot = tok.token_to_id("<|endoftext|>")
    conf = {"model_type": "gpt2", "vocab_size": V, "n_embd": C, "n_layer": 1, "n_head": 2, "n_positions": P,
            "activation_function": "gelu_new", "bos_token_id": eot, "eos_token_id": eot}
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C), "h.0.ln_1.weight": (C,), "h.0.ln_1.bias": (C,),
              "h.0.attn.c_attn.weight": (C, 3 * C), "h.0.attn.c_attn.bias": (3 * C,),
              "h.0.attn.c_proj.weight": (C, C), "h.0.attn.c_proj.bias": (C,), "h.0.ln_2.weight": (C,),
              "h.0.ln_2.bias": (C,), "h.0.mlp.c_fc.weight": (C, 4 * C), "h.0.mlp.c_fc.bias": (4 * C,),
              "h.0.mlp.c_proj.weight": (4 * C, C), "h.0.mlp.c_proj.bias": (C,), "ln_f.weight": (C,),
              "ln_f.bias": (C,)}
    rng = np.random.default_rng(0)
    tensors = {f"transformer.{key}": rng.normal(0.0, 0.2, shape).astype(np.float32) for key, shape in shapes.items()}
    (folder / "config.json").write_text(json.dumps(conf), encoding="utf-8")
    write_safetensors(folder / "model.safetensors", tensors)
    return conf, tensors
