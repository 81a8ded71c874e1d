"""A Hugging Face GPT-2 or Llama checkpoint as the model: `model: {from: PATH}` in a config.

PATH is a folder with `config.json`, `model.safetensors` and a tokenizer (`tokenizer.json`, or a byte-level BPE's
`vocab.json` + `merges.txt`), as `save_pretrained` or `huggingface-cli download gpt2` leave them; config.json's
`model_type` (gpt2 or llama) says which architecture it is. The sizes, the vocabulary, whether the output layer is
tied to the token table (`tie_word_embeddings`), the BOS token, a Llama's key/value heads, rotary base and RMSNorm ε,
and the initial weights come from it; the texts are tokenized by its tokenizer (the `tokenizers` package). Weights
are read by `weights`, a reader of the safetensors format written out here (no torch, no safetensors package):
float64, float32, float16 and bfloat16 tensors become float64 exactly, any other dtype is refused. Every problem is a
`CheckpointError` (a ConfigError): one line naming the folder, the file and what to do.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, cut, echo, echo_key

SPACE = "␣"  # how a token's leading space shows on the pages
# What the engine computes: GPT-2's architecture. A checkpoint that differs is refused, not silently misread.
# gelu_pytorch_tanh is PyTorch's GELU with approximate="tanh": the formula of gelu_new (its values agree to an
# ulp, tests/engine/test_checkpoint.py); "gelu", "gelu_fast", "relu" and the others compute something else.
REQUIRED = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "layer_norm_epsilon": (1e-5,),
            "scale_attn_weights": (True,), "scale_attn_by_inverse_layer_idx": (False,),
            "reorder_and_upcast_attn": (False,)}
# And a Llama's (model.llama_forward): SwiGLU with SiLU, no biases, the default rotary embedding.
LLAMA_REQUIRED = {"hidden_act": ("silu",), "attention_bias": (False,), "mlp_bias": (False,)}
MODEL_TYPES = ("gpt2", "llama")
# config.json's names of the sizes, by model_type
SIZE_KEYS = {"gpt2": (("d_model", "n_embd"), ("n_heads", "n_head"), ("n_layers", "n_layer"),
                      ("n_positions", "n_positions"), ("vocab_size", "vocab_size")),
             "llama": (("d_model", "hidden_size"), ("n_heads", "num_attention_heads"),
                       ("n_layers", "num_hidden_layers"), ("n_positions", "max_position_embeddings"),
                       ("vocab_size", "vocab_size"), ("d_ff", "intermediate_size"))}


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
    tie: bool = True  # config.json's tie_word_embeddings: the output layer is the token table (GPT-2's default)
    arch: str = "gpt2"  # config.json's model_type
    n_kv_heads: int | None = None  # a Llama's num_key_value_heads, rope_theta and rms_norm_eps
    rope_theta: float | None = None
    norm_eps: float | None = None

    def encode(self, text: str) -> list[int]:
        return list(_memo(_tokenizer, self.folder).encode(text, add_special_tokens=False).ids)


def load(folder: str | Path, label: str) -> Checkpoint:
    """Read config.json and the tokenizer of a checkpoint folder (the weights are read by `weights`)."""
    path = Path(folder)
    where = f"{label}: model.from: {path}"
    if not path.is_dir():
        raise CheckpointError(f"{where}: {'is not a folder' if path.exists() else 'no such folder'}; give the folder "
                              "of a Hugging Face GPT-2 or Llama checkpoint (config.json, model.safetensors, "
                              "tokenizer.json)")
    return _memo(_load, path.resolve(), where)


# The files `_load` and `_tokenizer` read. What they made is kept in memory (a server builds again and again) under
# the stat numbers of these files, so an edit, even of the same size with its modification time set back (its change
# time cannot be), reads them again; a file changed within the last RACY_NS (times advance in ticks) is not kept.
READ_FILES = ("config.json", "tokenizer.json", "vocab.json", "merges.txt")
RACY_NS = 2_000_000_000


def _fingerprint(folder: Path) -> tuple[Any, ...] | None:
    """The stat numbers of READ_FILES in `folder`, or None when one changed too recently to be told from the next."""
    found: list[Any] = []
    now = time.time_ns()
    for name in READ_FILES:
        try:
            st = os.stat(folder / name)
        except OSError as err:
            found.append(err.errno)
            continue
        if now - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
            return None
        found.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
    return tuple(found)


def _memo(make: Any, folder: Path, *args: Any) -> Any:
    """`make(folder, *args, fingerprint)`, kept while the files it read are unchanged (`_fingerprint`)."""
    fingerprint = _fingerprint(folder)
    if fingerprint is None:
        return make.__wrapped__(folder, *args, None)
    return make(folder, *args, fingerprint)


@lru_cache(maxsize=8)
def _load(folder: Path, where: str, fingerprint: Any) -> Checkpoint:
    conf = _json(folder / "config.json", where)
    model_type = conf.get("model_type", "gpt2")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{where}/config.json: model_type is {echo(model_type)}; handstep reads "
                              f"{' and '.join(MODEL_TYPES)} checkpoints")
    llama = model_type == "llama"
    sizes = _sizes(conf, model_type, where)
    extra = _llama_keys(conf, sizes, where) if llama else {}
    # The vocabulary is made a word per id: a vocab_size no weights file could hold is refused before that (10**12
    # would fill the memory), once the file's header is known to be sound (its own damage is named first).
    # (A too large n_embd or n_layer is the budget's to name: engine.budget.)
    stored = folder / "model.safetensors"
    if stored.is_file():
        table = 2 * sizes["vocab_size"]  # bytes of a token table n_embd 1 wide, in the narrowest float read
        if table > SafetensorsFile(stored, f"{where}: model.safetensors").data_size:
            raise CheckpointError(f"{where}/config.json: vocab_size {sizes['vocab_size']} makes a token table of at "
                                  f"least {table:,} bytes, more than all of model.safetensors; give the config.json "
                                  "saved with these weights")
    try:
        tokens = _memo(_tokenizer, folder).get_vocab(with_added_tokens=True)
    except CheckpointError as exc:  # named by its folder alone: say which config names the folder, too
        raise CheckpointError(f"{where}: {str(exc).removeprefix(f'{folder}: ')}") from None
    vocab = [f"<unused {i}>" for i in range(sizes["vocab_size"])]
    for token, i in tokens.items():
        if i >= sizes["vocab_size"]:
            raise CheckpointError(f"{where}: the tokenizer's token {echo(token)} has id {i}, past vocab_size "
                                  f"{sizes['vocab_size']} of config.json; the two do not belong together")
        vocab[i] = token
    fallback = next((tokens[t] for t in ("<|endoftext|>", "<s>", "<|begin_of_text|>") if t in tokens), None)
    bos = conf.get("bos_token_id", fallback)
    eos = conf.get("eos_token_id", bos)
    if isinstance(eos, list) and eos:  # Llama 3 lists several end tokens: the first pads
        eos = eos[0]
    if not isinstance(bos, int) or isinstance(bos, bool) or not 0 <= bos < sizes["vocab_size"]:
        example = "Llama: the id of <s>" if llama else "GPT-2: 50256"
        raise CheckpointError(f"{where}/config.json: bos_token_id {echo(bos)} is not a token id; set it ({example})")
    if not isinstance(eos, int) or isinstance(eos, bool) or not 0 <= eos < sizes["vocab_size"]:
        eos = bos
    tie = conf.get("tie_word_embeddings", not llama)  # each class's default: GPT2Config ties, LlamaConfig does not
    if not isinstance(tie, bool):
        raise CheckpointError(f"{where}/config.json: tie_word_embeddings must be true or false, got {echo(tie)}")
    return Checkpoint(folder, sizes["d_model"], sizes["n_heads"], sizes["d_ff"], sizes["n_layers"],
                      sizes["n_positions"], tuple(vocab), bos, eos, tie, model_type, **extra)


def _whole(conf: dict[str, Any], key: str, where: str, value: Any = None) -> int:
    """config.json's `key` (or `value`), a whole number ≥ 1."""
    value = conf.get(key) if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CheckpointError(f"{where}/config.json: {key} must be a whole number ≥ 1, got {echo(value)}")
    return value


def _sizes(conf: dict[str, Any], model_type: str, where: str) -> dict[str, int]:
    """The sizes, as config.json names them for its model_type, checked."""
    required = LLAMA_REQUIRED if model_type == "llama" else REQUIRED
    name = "Llama" if model_type == "llama" else "GPT-2"
    for key, allowed in required.items():
        if key in conf and conf[key] not in allowed:
            raise CheckpointError(f"{where}/config.json: {key} is {echo(conf[key])}; handstep computes {name} with "
                                  f"{key} {allowed[0]!r}")
    sizes = {}
    for ours, theirs in SIZE_KEYS[model_type]:
        old_name = conf.get("n_ctx") if theirs == "n_positions" else None  # GPT-2's older name of n_positions
        sizes[ours] = _whole(conf, theirs, where, conf.get(theirs, old_name))
    if model_type == "gpt2":
        d_ff = conf.get("n_inner")
        if d_ff is None:
            d_ff = 4 * sizes["d_model"]
        elif not isinstance(d_ff, int) or isinstance(d_ff, bool) or d_ff < 1:  # Hugging Face takes 0 as a width of 0
            raise CheckpointError(f"{where}/config.json: n_inner must be a whole number ≥ 1 or null (4 × n_embd), got "
                                  f"{echo(d_ff)}")
        sizes["d_ff"] = int(d_ff)
    heads, width = dict(SIZE_KEYS[model_type])["n_heads"], dict(SIZE_KEYS[model_type])["d_model"]
    if sizes["d_model"] % sizes["n_heads"]:
        raise CheckpointError(f"{where}/config.json: {heads} {sizes['n_heads']} does not divide "
                              f"{width} {sizes['d_model']}")
    return sizes


def _llama_keys(conf: dict[str, Any], sizes: dict[str, int], where: str) -> dict[str, Any]:
    """n_kv_heads, rope_theta and norm_eps of a Llama config.json; a head size, rotary variant or grouping the
    engine does not compute is refused."""
    heads = sizes["n_heads"]
    head = sizes["d_model"] // heads
    given = conf.get("head_dim")
    if given is not None and given != head:
        raise CheckpointError(f"{where}/config.json: head_dim {echo(given)} differs from hidden_size / "
                              f"num_attention_heads = {head}; handstep's heads are hidden_size / num_attention_heads "
                              "wide")
    if head % 2:
        raise CheckpointError(f"{where}/config.json: heads of hidden_size / num_attention_heads = {head} dimensions; "
                              "rotary embeddings turn pairs of dimensions, so the size must be even")
    kv = conf.get("num_key_value_heads")
    kv = heads if kv is None else _whole(conf, "num_key_value_heads", where)
    if heads % kv:
        raise CheckpointError(f"{where}/config.json: num_key_value_heads {kv} does not divide num_attention_heads "
                              f"{heads}")
    scaling = conf.get("rope_scaling")
    params = conf.get("rope_parameters")  # transformers 5 writes {"rope_theta": ..., "rope_type": "default"}
    for key, value in (("rope_scaling", scaling), ("rope_parameters", params)):
        if value is None:
            continue
        kind = value.get("rope_type", value.get("type")) if isinstance(value, dict) else value
        if kind not in ("default", None) or (key == "rope_scaling" and set(value) - {"rope_type", "type"}):
            raise CheckpointError(f"{where}/config.json: {key} is {echo(value)}; handstep computes the default "
                                  "rotary embedding only (no scaling): use a checkpoint without it")
    theta = params.get("rope_theta", conf.get("rope_theta", 10000.0)) if isinstance(params, dict) else \
        conf.get("rope_theta", 10000.0)
    eps = conf.get("rms_norm_eps", 1e-6)
    for key, value in (("rope_theta", theta), ("rms_norm_eps", eps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise CheckpointError(f"{where}/config.json: {key} must be a number > 0, got {echo(value)}")
    return {"n_kv_heads": kv, "rope_theta": float(theta), "norm_eps": float(eps)}


# GPT-2's config.json is under 1 KB; a larger one than this is not a model's configuration.
MAX_JSON_BYTES = 2**20


def _json(path: Path, where: str) -> dict[str, Any]:
    try:
        _regular(path, where)
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


def _regular(path: Path, where: str) -> None:
    """Refuse `path` unless it is a regular file (or a link to one): a FIFO would block a read forever, a device
    never ends, a folder cannot be read. FileNotFoundError when there is nothing there (a dangling link too)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link that leads back to itself
            raise CheckpointError(f"{where}: {path.name} is a symbolic link that loops; replace it with the file") \
                from None
        raise
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise CheckpointError(f"{where}: {path.name} is {what}, not a file; put the checkpoint's own {path.name} there")


@lru_cache(maxsize=8)
def _tokenizer(folder: Path, fingerprint: Any) -> Any:
    try:
        from tokenizers import Tokenizer
        from tokenizers.implementations import ByteLevelBPETokenizer
    except ImportError:
        raise CheckpointError(f"{folder}: reading a checkpoint's tokenizer needs the tokenizers package, which is "
                              "not installed; run `pip install tokenizers`") from None

    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        if os.path.lexists(folder / name):
            try:
                _regular(folder / name, str(folder))
            except FileNotFoundError:
                pass
    files = "tokenizer.json" if (folder / "tokenizer.json").is_file() else "vocab.json and merges.txt"
    try:
        if (folder / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return ByteLevelBPETokenizer.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises plain Exceptions for bad files
        reason = cut(str(exc).splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{folder}: its tokenizer ({files}) cannot be read ({reason}); give the checkpoint's "
                              "own tokenizer files") from None
    raise CheckpointError(f"{folder}: no tokenizer (tokenizer.json, or vocab.json and merges.txt) in the folder")


def weights(ck: Checkpoint, specs: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]],
            label: str) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float64, by record name (`specs`: model.param_specs).

    A GPT-2 file may name a tensor with or without `transformer.` (the hub's `gpt2` has `h.0...`, `save_pretrained`
    writes `transformer.h.0...`), a Llama's with or without `model.`; `lm_head.weight` is read only when the config
    unties it. A tied file may hold a copy of the token table under that name; one that differs is refused
    (transformers 4 ties it away, 5 keeps it untied: neither can be matched silently)."""
    where = f"{label}: model.from: {ck.folder}"
    path = ck.folder / "model.safetensors"
    try:
        _regular(path, where)
    except FileNotFoundError:
        if (ck.folder / "model.safetensors.index.json").exists():
            raise CheckpointError(f"{where}: the weights are split into shards (model.safetensors.index.json); "
                                  "handstep reads one model.safetensors: save the model again with "
                                  "save_pretrained(folder, max_shard_size=\"100GB\")") from None
        old = " (there is only pytorch_model.bin)" if (ck.folder / "pytorch_model.bin").exists() else ""
        raise CheckpointError(f"{where}: model.safetensors is missing{old}; save the model with "
                              "save_pretrained(folder, safe_serialization=True)") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: model.safetensors cannot be read ({exc.strerror or exc})") from None
    tensors = SafetensorsFile(path, f"{where}: model.safetensors")
    prefix, table = ("model.", "model.embed_tokens.weight") if ck.arch == "llama" else \
        ("transformer.", "transformer.wte.weight")
    out, keys = {}, {}
    for name, key, shape, _ in specs:
        candidates = (key, key.removeprefix(prefix))
        if key == table and ck.tie:  # a tied file may keep the shared matrix under this name alone
            candidates += ("lm_head.weight",)
        present = [k for k in dict.fromkeys(candidates[:2]) if k in tensors.header]
        if len(present) == 2 and not tensors.same(*present):  # which one a loader takes differs between versions
            raise CheckpointError(f"{where}: model.safetensors holds both {present[0]} and {present[1]}, with "
                                  "different values; keep one of them")
        found = keys[key] = next((k for k in candidates if k in tensors.header), None)
        if found is None:
            hint = " (config.json says tie_word_embeddings: false, so the output layer is its own tensor)" \
                if key == "lm_head.weight" else ""
            raise CheckpointError(f"{where}: model.safetensors has no tensor {key}{hint}")
        if tensors.shape(found) != shape:
            raise CheckpointError(f"{where}: {key} has shape {list(tensors.shape(found))}, config.json says "
                                  f"{list(shape)}")
        out[name] = tensors.read(found)
    wte = keys.get(table)
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
# Bytes per value of every dtype of the format (a dtype not listed is checked only if a tensor of it is read).
ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
              "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
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
        except (ValueError, RecursionError) as exc:  # also a number of over 4300 digits
            self._bad(f"its header is not JSON ({cut(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__})")
        if not isinstance(header, dict):
            self._bad("its header is not a JSON object")
        metadata = header.pop("__metadata__", None)
        if metadata is not None and (not isinstance(metadata, dict)
                                     or not all(isinstance(v, str) for v in metadata.values())):
            self._bad(f"its __metadata__ is {echo(metadata)}, not an object of strings")
        self.header: dict[str, Any] = header
        self.start, self.data_size = 8 + n, size - 8 - n
        self._check_layout()

    def _check_layout(self) -> None:
        """What the safetensors library checks before Hugging Face reads a file: every entry is a tensor whose bytes
        fit its dtype and shape, and the tensors fill the data from its first byte to its last, none overlapping
        another (two names on the same bytes, or bytes no tensor owns, are a damaged file, which Hugging Face
        refuses too)."""
        spans = []
        for name in self.header:
            dtype, shape, begin, end = self._entry(name)
            width = ITEM_BYTES.get(dtype)
            if width is not None and end - begin != math.prod(shape) * width:
                self._bad(f"{echo_key(name)} is {dtype} of shape {list(shape)}, {math.prod(shape) * width} "
                          f"bytes, but its data_offsets span {end - begin}")
            spans.append((begin, end, name))
        at = 0
        for begin, end, name in sorted(spans):
            if begin > at:
                self._bad(f"bytes {at} to {begin} of its data belong to no tensor")
            if begin < at:
                self._bad(f"{echo_key(name)} starts at byte {begin} of the data, inside another tensor (which ends at "
                          f"byte {at})")
            at = end
        if at != self.data_size:
            self._bad(f"its tensors end at byte {at} of the data, which has {self.data_size}")

    def _bad(self, message: str):
        raise CheckpointError(f"{self.where}: {message}; save the model again with save_pretrained")

    def _entry(self, name: str) -> tuple[str, tuple[int, ...], int, int]:
        entry = self.header[name]
        if not isinstance(entry, dict):
            self._bad(f"the header entry of {echo_key(name)} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            self._bad(f"the header entry of {echo_key(name)} has no dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            self._bad(f"the shape of {echo_key(name)} is {echo(shape)}, not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            self._bad(f"the data_offsets of {echo_key(name)} are {echo(offsets)}, not [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= self.data_size:
            self._bad(f"{echo_key(name)} lies at bytes {begin} to {end} of the data, which has {self.data_size}")
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
