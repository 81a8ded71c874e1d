"""A Hugging Face GPT-2 checkpoint as the model: `model: {from: PATH}` in a config.

PATH is a folder with `config.json`, `model.safetensors` and a byte-level BPE tokenizer (`tokenizer.json`,
or `vocab.json` + `merges.txt`), as `save_pretrained` or `huggingface-cli download gpt2` leave them. The sizes,
the vocabulary, whether the output layer is tied to the token table (`tie_word_embeddings`) and the initial weights
come from it; the texts are tokenized by its tokenizer (the `tokenizers` package). Weights are read by `weights`,
a reader of the safetensors format written out here (no torch, no safetensors package): float64, float32, float16
and bfloat16 tensors become float64 exactly, any other dtype is refused. Every problem is a `CheckpointError` (a
ConfigError): one line naming the folder, the file and what to do.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, cut, echo

SPACE = "␣"  # how a token's leading space shows on the pages
# What the engine computes: GPT-2's architecture. A checkpoint that differs is refused, not silently misread.
REQUIRED = {"activation_function": ("gelu_new",), "layer_norm_epsilon": (1e-5,), "scale_attn_weights": (True,),
            "scale_attn_by_inverse_layer_idx": (False,), "reorder_and_upcast_attn": (False,)}


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
    tie: bool = True  # config.json's tie_word_embeddings: the output layer is the token table (Hugging Face's default)

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
        raise CheckpointError(f"{where}/config.json: model_type is {echo(conf.get('model_type'))}; only gpt2 is "
                              "supported")
    for key, allowed in REQUIRED.items():
        if key in conf and conf[key] not in allowed:
            raise CheckpointError(f"{where}/config.json: {key} is {echo(conf[key])}; handstep computes GPT-2 with "
                                  f"{key} {allowed[0]!r}")
    sizes = {}
    for ours, theirs in (("d_model", "n_embd"), ("n_heads", "n_head"), ("n_layers", "n_layer"),
                         ("n_positions", "n_positions"), ("vocab_size", "vocab_size")):
        value = conf.get(theirs, conf.get("n_ctx") if theirs == "n_positions" else None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{where}/config.json: {theirs} must be a whole number ≥ 1, got {echo(value)}")
        sizes[ours] = value
    d_ff = conf.get("n_inner") or 4 * sizes["d_model"]
    if sizes["d_model"] % sizes["n_heads"]:
        raise CheckpointError(f"{where}/config.json: n_head {sizes['n_heads']} does not divide "
                              f"n_embd {sizes['d_model']}")
    tokens = _tokenizer(folder).get_vocab(with_added_tokens=True)
    vocab = [f"<unused {i}>" for i in range(sizes["vocab_size"])]
    for token, i in tokens.items():
        if i >= sizes["vocab_size"]:
            raise CheckpointError(f"{where}: the tokenizer's token {echo(token)} has id {i}, past vocab_size "
                                  f"{sizes['vocab_size']} of config.json; the two do not belong together")
        vocab[i] = token
    bos = conf.get("bos_token_id", tokens.get("<|endoftext|>"))
    eos = conf.get("eos_token_id", bos)
    if not isinstance(bos, int) or not 0 <= bos < sizes["vocab_size"]:
        raise CheckpointError(f"{where}/config.json: bos_token_id {echo(bos)} is not a token id; set it (GPT-2: 50256)")
    if not isinstance(eos, int) or not 0 <= eos < sizes["vocab_size"]:
        eos = bos
    tie = conf.get("tie_word_embeddings", True)
    if not isinstance(tie, bool):
        raise CheckpointError(f"{where}/config.json: tie_word_embeddings must be true or false, got {echo(tie)}")
    return Checkpoint(folder, sizes["d_model"], sizes["n_heads"], int(d_ff), sizes["n_layers"], sizes["n_positions"],
                      tuple(vocab), bos, eos, tie)


# GPT-2's config.json is under 1 KB; a larger one than this is not a model's configuration.
MAX_JSON_BYTES = 2**20


def _json(path: Path, where: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise CheckpointError(f"{where}: {path.name} is over {MAX_JSON_BYTES // 2**20} MiB, not the few lines of a "
                                  "model's configuration; give the checkpoint's own config.json")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{where}: {path.name} is missing (a Hugging Face checkpoint folder has it)") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: {path.name} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{where}: {path.name} is not UTF-8 text (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a number of over 4300 digits, deep nesting
        reason = cut(str(exc).splitlines()[0]) if isinstance(exc, json.JSONDecodeError) else \
            "nested too deeply" if isinstance(exc, RecursionError) else "a number of more than 4300 digits"
        raise CheckpointError(f"{where}: {path.name} is not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: {path.name} is not a JSON object")
    return data


@cache
def _tokenizer(folder: Path) -> Any:
    try:
        from tokenizers import Tokenizer
        from tokenizers.implementations import ByteLevelBPETokenizer
    except ImportError:
        raise CheckpointError(f"{folder}: reading a checkpoint's tokenizer needs the tokenizers package, which is "
                              "not installed; run `pip install tokenizers`") from None

    try:
        if (folder / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return ByteLevelBPETokenizer.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises plain Exceptions for bad files
        raise CheckpointError(f"{folder}: its tokenizer cannot be read ({cut(str(exc).splitlines()[0])})") from None
    raise CheckpointError(f"{folder}: no tokenizer (tokenizer.json, or vocab.json and merges.txt) in the folder")


def weights(ck: Checkpoint, specs: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]],
            label: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float64, by record name (`specs`: model.param_specs).

    A GPT-2 file may name a tensor with or without `transformer.` (the hub's `gpt2` has `h.0...`, `save_pretrained`
    writes `transformer.h.0...`); `lm_head.weight` is read only when the config unties it. A tied file may hold a
    copy of the token table under that name; one that differs is refused (transformers 4 ties it away, 5 keeps it
    untied: neither can be matched silently)."""
    where = f"{label}: model.from: {ck.folder}"
    path = ck.folder / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{where}: model.safetensors is missing (save with safe_serialization=True)")
    tensors = SafetensorsFile(path, f"{where}: model.safetensors")
    out, keys = {}, {}
    for name, key, shape, _ in specs:
        candidates = (key, key.removeprefix("transformer."))
        if key == "transformer.wte.weight" and ck.tie:  # a tied file may keep the shared matrix under this name alone
            candidates += ("lm_head.weight",)
        found = keys[key] = next((k for k in candidates if k in tensors.header), None)
        if found is None:
            hint = " (config.json says tie_word_embeddings: false, so the output layer is its own tensor)" \
                if key == "lm_head.weight" else ""
            raise CheckpointError(f"{where}: model.safetensors has no tensor {key}{hint}")
        if tensors.shape(found) != shape:
            raise CheckpointError(f"{where}: {key} has shape {list(tensors.shape(found))}, config.json says "
                                  f"{list(shape)}")
        out[name] = tensors.read(found)
    wte = keys.get("transformer.wte.weight")
    if ck.tie and wte and wte != "lm_head.weight" and "lm_head.weight" in tensors.header:
        if not tensors.same("lm_head.weight", wte):
            raise CheckpointError(f"{where}: model.safetensors holds an lm_head.weight that differs from {wte}, but "
                                  "config.json ties the two (tie_word_embeddings is true or not given); set "
                                  "tie_word_embeddings to false in config.json to use it as the output layer")
    return out


# -- the safetensors format -----------------------------------------------------------------------------------------
# An 8-byte little-endian header length n, n bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
# "__metadata__": {...}}, then the tensors' bytes, little-endian, row-major, at their offsets from the end of the
# header. These dtypes are read (bfloat16 is the upper half of a float32: shifted into place, it is that float32);
# every value of each is exactly a float64.
FLOATS = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
MAX_HEADER = 100_000_000  # bytes of JSON: the limit of the safetensors format itself
CONVERT = 1 << 20  # values converted at a time (no temporary the size of GPT-2's 38.6M-entry token table)


class SafetensorsFile:
    """The header of a `.safetensors` file, checked against the file's size; tensors read one at a time from a
    memory map, so a 500 MB file is never held twice. Every problem is a CheckpointError naming `where`."""

    def __init__(self, path: Path, where: str) -> None:
        self.path, self.where = path, where
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                raw = f.read(8)
                n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
                if n < 2 or n > min(MAX_HEADER, size - 8):
                    self._bad(f"its first 8 bytes give a header of {n} bytes, but the file has {size}; "
                              "the file is damaged or not safetensors" if n >= 0 else
                              f"it has {size} bytes, fewer than the 8 of a header length")
                text = f.read(n)
        except OSError as exc:
            raise CheckpointError(f"{where} cannot be read ({exc.strerror or exc})") from None
        try:
            header = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            self._bad(f"its header is not JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        if not isinstance(header, dict):
            self._bad("its header is not a JSON object")
        header.pop("__metadata__", None)
        self.header: dict[str, Any] = header
        self.start, self.data_size = 8 + n, size - 8 - n

    def _bad(self, message: str):
        raise CheckpointError(f"{self.where}: {message}; save the model again with save_pretrained")

    def _entry(self, name: str) -> tuple[str, tuple[int, ...], int, int]:
        entry = self.header[name]
        if not isinstance(entry, dict):
            self._bad(f"the header entry of {name} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            self._bad(f"the header entry of {name} has no dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            self._bad(f"the shape of {name} is {echo(shape)}, not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            self._bad(f"the data_offsets of {name} are {echo(offsets)}, not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= self.data_size:
            self._bad(f"{name} lies at bytes {begin} to {end} of the data, which has {self.data_size}")
        return dtype, tuple(shape), begin, end

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name)[1]

    def same(self, a: str, b: str) -> bool:
        """Whether tensors a and b hold the same values (compared a slice at a time when stored alike)."""
        (dtype_a, shape_a, begin_a, _), (dtype_b, shape_b, begin_b, _) = self._entry(a), self._entry(b)
        if shape_a != shape_b:
            return False
        if dtype_a != dtype_b or dtype_a not in FLOATS:
            return bool(np.array_equal(self.read(a), self.read(b)))
        stored, count = FLOATS[dtype_a], math.prod(shape_a)
        if count == 0:
            return True
        x, y = (np.memmap(self.path, dtype=stored, mode="r", offset=self.start + at, shape=(count,))
                for at in (begin_a, begin_b))
        return all(np.array_equal(x[at:at + CONVERT], y[at:at + CONVERT]) for at in range(0, count, CONVERT))

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as float64, exactly; a dtype other than a float is refused, naming the tensor."""
        dtype, shape, begin, end = self._entry(name)
        stored = FLOATS.get(dtype)
        if stored is None:
            raise CheckpointError(f"{self.where}: tensor {name} has dtype {dtype}; handstep reads float weights only "
                                  "(F64, F32, F16, BF16): save the model with float weights (model.float() before "
                                  "save_pretrained)")
        count = math.prod(shape)
        if end - begin != count * stored.itemsize:
            self._bad(f"{name} is {dtype} of shape {list(shape)}, {count * stored.itemsize} bytes, but its "
                      f"data_offsets span {end - begin}")
        out = np.empty(shape, dtype=np.float64)
        if count == 0:
            return out
        try:
            data = np.memmap(self.path, dtype=stored, mode="r", offset=self.start + begin, shape=(count,))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.where} cannot be read ({exc})") from None
        flat = out.reshape(-1)
        wide = np.empty(min(count, CONVERT), dtype=np.uint32) if dtype == "BF16" else None
        with np.errstate(invalid="ignore"):  # a signalling NaN widens to a NaN, not to a warning
            for at in range(0, count, CONVERT):
                part = data[at:at + CONVERT]
                if wide is not None:  # bfloat16: the 16 upper bits of a float32
                    bits = wide[:len(part)]
                    bits[:] = part
                    bits <<= 16
                    part = bits.view(np.float32)
                flat[at:at + CONVERT] = part
        del data
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
    """A byte-level token as a reader sees it: `Ġcat` -> `␣cat`, `Ċ` -> `↵`, a control byte as its picture (`␛`), a
    combining mark with no letter before it on a dotted circle (`◌́`); special tokens stay as they are, but for
    control characters."""
    decoder = _byte_decoder()
    if not token or any(ch not in decoder for ch in token):
        return _on_circle(token.translate(CONTROL_PICTURES))
    text = bytes(decoder[ch] for ch in token).decode("utf-8", errors="replace")
    return _on_circle(text.replace(" ", SPACE).replace("\n", "↵").replace("\t", "⇥").translate(CONTROL_PICTURES))


def _on_circle(text: str) -> str:
    """A token that starts with a combining mark (a BPE token may be just the accent of `é` written as e + U+0301),
    on U+25CC, as the Unicode charts show such marks: alone, the mark has nothing to sit on, and KaTeX refuses it."""
    return f"\u25cc{text}" if text and unicodedata.category(text[0]).startswith("M") else text


# GPT-2's vocabulary has a token for every byte: the other control characters are shown as their Unicode pictures
# (U+0000 as ␀, U+001B as ␛, DEL as ␡), never as themselves (invisible on a page, and KaTeX refuses them).
CONTROL_PICTURES = {**{c: 0x2400 + c for c in range(0x20)}, 0x7F: 0x2421}
