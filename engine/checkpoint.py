"""A Hugging Face GPT-2 checkpoint as the model: `model: {from: PATH}` in a config.

PATH is a folder with `config.json`, `model.safetensors` and a byte-level BPE tokenizer (`tokenizer.json`,
or `vocab.json` + `merges.txt`), as `save_pretrained` or `huggingface-cli download gpt2` leave them. The sizes,
the vocabulary and the initial weights come from it; the texts are tokenized by its tokenizer. Weights are read
with `safetensors` (its NumPy API: no torch at run time) and converted to float64; tokens with `tokenizers`.
Every problem is a `CheckpointError` (a ConfigError): one line naming the folder, the file and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

SPACE = "␣"  # how a token's leading space shows on the pages
# What the engine computes: GPT-2's architecture. A checkpoint that differs is refused, not silently misread.
REQUIRED = {"activation_function": ("gelu_new",), "layer_norm_epsilon": (1e-5,), "scale_attn_weights": (True,),
            "scale_attn_by_inverse_layer_idx": (False,), "reorder_and_upcast_attn": (False,)}
BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers some GPT-2 checkpoints carry


class CheckpointError(ConfigError):
    """A checkpoint folder that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int
    n_positions: int
    vocab: tuple[str, ...]  # the tokenizer's tokens by id (byte-level form: "Ġcat")
    bos: int
    eos: int

    def encode(self, text: str) -> list[int]:
        return list(_tokenizer(self.folder).encode(text, add_special_tokens=False).ids)


def load(folder: str | Path, label: str) -> Checkpoint:
    """Read config.json and the tokenizer of a checkpoint folder (the weights are read by `weights`)."""
    path = Path(folder)
    where = f"{label}: model.from: {path}"
    if not path.is_dir():
        raise CheckpointError(f"{where}: {'is not a folder' if path.exists() else 'no such folder'}; give the folder "
                              "of a Hugging Face GPT-2 checkpoint (config.json, model.safetensors, tokenizer.json)")
    return _load(path.resolve(), where)


@cache
def _load(folder: Path, where: str) -> Checkpoint:
    conf = _json(folder / "config.json", where)
    if conf.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{where}/config.json: model_type is {conf.get('model_type')!r}; only gpt2 is supported")
    for key, allowed in REQUIRED.items():
        if key in conf and conf[key] not in allowed:
            raise CheckpointError(f"{where}/config.json: {key} is {conf[key]!r}; handstep computes GPT-2 with "
                                  f"{key} {allowed[0]!r}")
    sizes = {}
    for ours, theirs in (("d_model", "n_embd"), ("n_heads", "n_head"), ("n_layers", "n_layer"),
                         ("n_positions", "n_positions"), ("vocab_size", "vocab_size")):
        value = conf.get(theirs, conf.get("n_ctx") if theirs == "n_positions" else None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{where}/config.json: {theirs} must be a whole number ≥ 1, got {value!r}")
        sizes[ours] = value
    d_ff = conf.get("n_inner") or 4 * sizes["d_model"]
    if sizes["d_model"] % sizes["n_heads"]:
        raise CheckpointError(f"{where}/config.json: n_head {sizes['n_heads']} does not divide "
                              f"n_embd {sizes['d_model']}")
    tokens = _tokenizer(folder).get_vocab(with_added_tokens=True)
    vocab = [f"<unused {i}>" for i in range(sizes["vocab_size"])]
    for token, i in tokens.items():
        if i >= sizes["vocab_size"]:
            raise CheckpointError(f"{where}: the tokenizer's token {token!r} has id {i}, past vocab_size "
                                  f"{sizes['vocab_size']} of config.json; the two do not belong together")
        vocab[i] = token
    bos = conf.get("bos_token_id", tokens.get("<|endoftext|>"))
    eos = conf.get("eos_token_id", bos)
    if not isinstance(bos, int) or not 0 <= bos < sizes["vocab_size"]:
        raise CheckpointError(f"{where}/config.json: bos_token_id {bos!r} is not a token id; set it (GPT-2: 50256)")
    if not isinstance(eos, int) or not 0 <= eos < sizes["vocab_size"]:
        eos = bos
    return Checkpoint(folder, sizes["d_model"], sizes["n_heads"], int(d_ff), sizes["n_layers"], sizes["n_positions"],
                      tuple(vocab), bos, eos)


def _json(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{where}: {path.name} is missing (a Hugging Face checkpoint folder has it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: {path.name} cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: {path.name} is not a JSON object")
    return data


@cache
def _tokenizer(folder: Path) -> Any:
    from tokenizers import Tokenizer
    from tokenizers.implementations import ByteLevelBPETokenizer

    try:
        if (folder / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return ByteLevelBPETokenizer.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises plain Exceptions for bad files
        raise CheckpointError(f"{folder}: its tokenizer cannot be read ({str(exc).splitlines()[0]})") from None
    raise CheckpointError(f"{folder}: no tokenizer (tokenizer.json, or vocab.json and merges.txt) in the folder")


def weights(ck: Checkpoint, specs: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]],
            label: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float64, by record name (`specs`: model.param_specs)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    where = f"{label}: model.from: {ck.folder}"
    path = ck.folder / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{where}: model.safetensors is missing (save with safe_serialization=True)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: model.safetensors cannot be read ({exc})") from None
    by_key = {(k if k.startswith("transformer.") else "transformer." + k): v for k, v in tensors.items()
              if not k.endswith(BUFFERS) and k != "lm_head.weight"}
    out = {}
    for name, key, shape, _ in specs:
        value = by_key.get(key)
        if value is None:
            raise CheckpointError(f"{where}: model.safetensors has no tensor {key}")
        if tuple(value.shape) != shape:
            raise CheckpointError(f"{where}: {key} has shape {list(value.shape)}, config.json says {list(shape)}")
        out[name] = np.asarray(value, dtype=np.float64)
    return out


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet read backwards: each printable stand-in character -> its byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def readable(token: str) -> str:
    """A byte-level token as a reader sees it: `Ġcat` -> `␣cat`, `Ċ` -> `↵`, a control byte as its picture (`␛`);
    special tokens stay as they are."""
    decoder = _byte_decoder()
    if not token or any(ch not in decoder for ch in token):
        return token
    text = bytes(decoder[ch] for ch in token).decode("utf-8", errors="replace")
    return text.replace(" ", SPACE).replace("\n", "↵").replace("\t", "⇥").translate(CONTROL_PICTURES)


# GPT-2's vocabulary has a token for every byte: the other control characters are shown as their Unicode pictures
# (U+0000 as ␀, U+001B as ␛, DEL as ␡), never as themselves (invisible on a page, and KaTeX refuses them).
CONTROL_PICTURES = {**{c: 0x2400 + c for c in range(0x20)}, 0x7F: 0x2421}
