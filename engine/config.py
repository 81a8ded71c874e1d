"""Configuration: frozen dataclasses, YAML loading, and validation with one-line errors.

A config file may give only the keys it changes; every other key takes the default below,
which is exactly `configs/default.yaml` (a test keeps the two equal). Every error is a
`ConfigError` whose message names the file and the key: `configs/x.yaml: model.d_model: ...`.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import checkpoint
from .errors import ConfigError, cut, echo
from .errors import echo_key as _key

DEFAULT_VOCAB = ("<pad>", "<bos>", "<eos>", "the", "cat", "sat", "on", "mat", "dog", "ran")
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
OPTIMIZERS = ("adamw", "adam", "sgd")
ARCHS = ("gpt2", "llama")
LLAMA_KEYS = ("n_kv_heads", "rope_theta", "norm_eps")  # the keys only `model.arch: llama` has
LLAMA_ROPE_THETA = 10000.0  # Llama's (and Hugging Face LlamaConfig's) default rotary base
LLAMA_NORM_EPS = 1e-6  # Hugging Face LlamaConfig's rms_norm_eps
DECAY_RULES = ("matrices", "all")
# A config holds sizes, texts and at most a vocabulary: GPT-2's 50,257 words written out take 0.5 MiB
# (benchmarks/gpt2_small.py). A larger file is refused before it is parsed, and so is one whose YAML aliases make it
# larger once expanded: 400 bytes of nested aliases (a "billion laughs") stand for a billion strings.
MAX_CONFIG_BYTES = 4 * 2**20
# And so is one of more YAML values (each scalar, list, mapping and alias counts one) than this, counted from the
# parser's events before anything is built: GPT-2's vocabulary is 50,257 values, while a 4 MiB flow list of one-letter
# strings would be two million of them (a gigabyte of memory and tens of seconds to build).
MAX_CONFIG_NODES = 250_000
# A file libyaml refuses is parsed again by the pure-Python parser for its wording of the error, which takes seconds
# a megabyte: a larger file keeps libyaml's message.
REPARSE_MAX_CHARS = 2**20


@dataclass(frozen=True)
class ModelConfig:
    # Ten words: enough for a sentence and two distractors ("dog", "ran") that never appear,
    # so the page on embedding gradients can show rows that get a gradient only from the tied output layer.
    vocab: tuple[str, ...] | None = DEFAULT_VOCAB
    d_model: int = 16  # small enough to print every row of every matrix on a page
    n_heads: int = 2  # two heads show that heads differ, head size 8
    d_ff: int = 64  # GPT-2's 4 x d_model expansion
    n_layers: int = 1  # one block holds every kind of op; deeper stacks repeat it
    n_positions: int = 8  # the longest text the position table can hold
    # GPT-2 uses 0.02, which at d_model 16 makes every attention row within a few % of uniform: nothing
    # to see. 0.2 gives attention rows that clearly prefer some tokens (weights from about 0.05 to 0.4
    # in the last row), a starting loss near ln(10) (an unbiased guess over 10 words), and a loss that
    # visibly drops after one step. 0.3 starts over-confident (loss well above ln 10).
    init_std: float = 0.2
    # GPT-2 ties its output layer to the token table (logits = x · W_teᵀ). False: a separate output matrix,
    # `lm_head.weight` (vocab × d_model), drawn like W_te after every other weight. With `from`, the checkpoint's
    # config.json says (tie_word_embeddings, true unless given).
    tie_embeddings: bool = True
    # `from` in a config file: a Hugging Face GPT-2 checkpoint folder (engine.checkpoint) that sets the sizes,
    # the vocabulary and the initial weights. None: the sizes above and GPT-2's random initialisation.
    checkpoint: str | None = None
    checkpoint_dir: str | None = field(default=None, compare=False, repr=False)  # resolved, for reading
    # gpt2: Hugging Face GPT2LMHeadModel (LayerNorm, a learned position table, GELU, multi-head attention, biases).
    # llama: LlamaForCausalLM (RMSNorm, rotary positions, SwiGLU, grouped-query attention, no biases); it also sets
    # the three keys below, which GPT-2 does not have (None for gpt2), and an untied output layer by default.
    arch: str = "gpt2"
    n_kv_heads: int | None = None  # key/value heads, each shared by n_heads / n_kv_heads query heads (default n_heads)
    rope_theta: float | None = None  # the rotary base: pair j of a head turns by t · rope_theta^(-2j/D) at position t
    norm_eps: float | None = None  # RMSNorm's ε under the square root (GPT-2's LayerNorm keeps its fixed 1e-5)

    @property
    def kv_heads(self) -> int:
        """Heads of keys and values: n_kv_heads (llama), or n_heads (GPT-2: every query head has its own)."""
        return self.n_kv_heads or self.n_heads


@dataclass(frozen=True)
class DataConfig:
    texts: tuple[str, ...] = ("the cat sat on the mat",)  # six words: six next-word predictions


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adamw"  # adamw | adam | sgd, each exactly as torch.optim defines it
    lr: float = 0.01  # large enough that one step visibly lowers the loss
    betas: tuple[float, float] = (0.9, 0.999)  # torch's defaults
    eps: float = 1e-8  # torch's default
    weight_decay: float = 0.01  # torch AdamW's default
    decay: str = "matrices"  # only 2-D weights decay, as GPT-2/nanoGPT training does; "all" decays every tensor
    momentum: float = 0.0  # sgd only


@dataclass(frozen=True)
class Config:
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train_steps: int = 200  # a separate run that records the loss per step
    source: str = field(default="", compare=False, repr=False)  # the file it came from, for error messages

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (lists instead of tuples), without `source`: a trace does not depend on paths."""
        d = _listify(asdict(self))
        d.pop("source")
        model = d["model"]
        model.pop("checkpoint_dir")
        folder = model.pop("checkpoint")
        if folder is not None:  # as the config file writes it
            model["from"] = folder
            model.pop("init_std")
        if model["arch"] == "gpt2":  # GPT-2's dict (and so its traces) as it always was
            for key in ("arch", *LLAMA_KEYS):
                model.pop(key)
            if model["tie_embeddings"]:  # the default is not written
                model.pop("tie_embeddings")
        else:  # every llama key written out, the architecture first
            d["model"] = {"arch": model.pop("arch"), **model}
        return d


def _listify(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_listify(v) for v in obj]
    return obj


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optimizer": OptimizerConfig}
TOP_KEYS = ("seed", "model", "data", "optimizer", "train_steps")


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"duplicate key {echo(key)}")
        self.key, self.line, self.first = key, line, first


class _Checks:
    """What handstep adds to YAML's safe loader: YAML 1.2 floats (`1e-3` is a number, not a string) and no
    duplicate keys.

    PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent (`1.0e-3`); a subclass gets its
    own copy of the resolver table, so yaml.SafeLoader itself is left as it was.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden, as YAML says
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key] + 1)
                    seen[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    continue
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (4300)
            raise yaml.constructor.ConstructorError(None, None, "this integer has too many digits",
                                                    node.start_mark) from None

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # e.g. the date 2024-13-45: a line number, not a traceback
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({exc})",
                                                    node.start_mark) from None


class _Loader(_Checks, yaml.SafeLoader):
    """The pure-Python loader: its error messages are the ones a config's author reads."""


class _FastLoader(_Checks, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same loader over libyaml's parser (when installed): a 50,257-word vocabulary in a config reads in
    a fraction of a second, not 10 s. A file it refuses is read again by _Loader for the message."""


# The YAML 1.2 core schema's floats that YAML 1.1 reads as strings: an exponent without a dot or without
# a sign (1e-3, 3e4, 1E-5, 1.0e5, -2e-1), and a sign before a leading dot (-.5). `.5` and `1.0e-3` were
# floats already.
for _cls in (_Loader, _FastLoader):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$|^[-+]\.[0-9][0-9_]*$"),
        list("-+0123456789."),
    )
    _cls.add_constructor("tag:yaml.org,2002:int", _cls.construct_yaml_int)


def load_config(path: str | Path | None = None, seed: int | None = None) -> Config:
    """Read a YAML config (or the defaults when path is None); `seed` overrides the file's seed."""
    if path is None:
        return config_from_dict({}, "<defaults>", seed=seed)
    return config_from_dict(read_mapping(path), str(path), seed=seed)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a config file holds, read as load_config reads it (sizes, aliases, duplicate keys and YAML 1.2
    floats checked) but not yet validated: what `config_from_dict` takes, for a caller that changes a few keys."""
    label = str(path)
    text = _read(Path(path), label)
    try:
        try:
            raw = _parse(text, _FastLoader, label)
        except (yaml.YAMLError, RecursionError):
            if len(text) > REPARSE_MAX_CHARS:
                raise
            raw = _parse(text, _Loader, label)  # the same, with the messages a reader gets
    except _DuplicateKey as exc:
        raise ConfigError(f"{label}:{exc.line}: duplicate key {echo(exc.key)} (first given at line {exc.first}); "
                          "keep one") from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(label, text, exc)) from None
    except RecursionError:
        raise ConfigError(f"{label}: YAML nested too deeply; a config needs two levels") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: the top level must be a mapping of keys such as seed, model, data")
    return raw


def _parse(text: str, loader_class: type, label: str) -> Any:
    """`yaml.load(text)`, refusing a document whose aliases expand it past MAX_CONFIG_BYTES before anything is
    constructed from it."""
    _count_nodes(text, label)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "*" in text:  # no alias without one
            _check_aliases(node, label)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _count_nodes(text: str, label: str, limit: int | None = None) -> None:
    """Refuse a document of more than `limit` (MAX_CONFIG_NODES) values, counting the parser's events and stopping
    at the first past the limit (250,000 events: a fraction of a second); a syntax error is left to the loader."""
    limit = MAX_CONFIG_NODES if limit is None else limit
    parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    kinds = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)
    n = 0
    try:
        while parser.check_event():
            if isinstance(parser.get_event(), kinds):
                n += 1
                if n > limit:
                    raise ConfigError(f"{label}: holds more than {limit:,} YAML values (each string, number, list "
                                      "and mapping counts one; GPT-2's 50,257-word vocabulary is about 50,000): not "
                                      "a config; give the right file, or shorten its lists")
    except yaml.YAMLError:
        return  # the loader reports it, with its line
    finally:
        parser.dispose()


def _check_aliases(root: yaml.Node, label: str) -> None:
    """Refuse aliases that expand the document past MAX_CONFIG_BYTES, or that loop back into themselves.

    PyYAML's composer gives an alias its anchor's node, so the composed document is a graph no larger than the file,
    and the values built from it share their lists the same way; but whatever reads them as a tree (the checks, an
    error message quoting a value, a merge `<<: *base`) sees the expansion. The expanded size (a scalar: its length
    plus one; a collection: one plus its items') of each node is counted once, so this takes time in proportion to
    the file, whatever the expansion.
    """
    limit = MAX_CONFIG_BYTES
    size: dict[int, int] = {}
    open_: set[int] = set()  # collections whose items are being counted: meeting one again is a loop
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            size[key] = len(node.value) + 1
            continue
        items = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        if done:
            open_.discard(key)
            size[key] = min(limit + 1, 1 + sum(size[id(item)] for item in items))
        elif key not in size:
            if key in open_:
                raise ConfigError(f"{label}:{node.start_mark.line + 1}: a YAML alias here refers back to the "
                                  "collection that holds it, a loop no config needs; write the value out")
            open_.add(key)
            stack.append((node, True))
            stack.extend((item, False) for item in items if id(item) not in size)
    if size[id(root)] <= limit:
        return
    path, node = [], root
    while isinstance(node, yaml.MappingNode):  # down the keys to the value that is too large
        big = next(((k, v) for k, v in node.value if size[id(v)] > limit), None)
        if big is None or not isinstance(big[0], yaml.ScalarNode):
            break
        path.append(_key(big[0].value))
        node = big[1]
    where = f"{'.'.join(path)}: " if path else ""
    raise ConfigError(f"{label}: {where}YAML aliases (*name) expand {'this value' if path else 'the file'} to more "
                      f"than {_mib(limit)}, more than a whole config file may hold; write the values out or use "
                      "fewer aliases")


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _read(p: Path, label: str) -> str:
    """The file's text, or a ConfigError naming what is wrong with the path."""
    try:
        if p.is_dir():
            raise ConfigError(f"{label}: is a directory, not a config file "
                              "(give a YAML file such as configs/default.yaml)")
        if not p.exists():
            if p.is_symlink():  # a link to nothing, or one that loops: "not found" would send the user looking for it
                raise ConfigError(f"{label}: is a symbolic link to nothing (or to itself); point it at a YAML file, "
                                  "or give the file itself")
            raise ConfigError(f"{label}: file not found (give an existing YAML file, e.g. configs/default.yaml)")
        if not p.is_file():
            raise ConfigError(f"{label}: is not a regular file (give a YAML file such as configs/default.yaml)")
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{label}: is {_mib(size)}, more than the {_mib(MAX_CONFIG_BYTES)} a config file may "
                              "be (sizes, texts and a vocabulary: GPT-2's 50,257 words take 0.5 MiB); give the right "
                              "file, or shorten it")
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except PermissionError:
        raise ConfigError(f"{label}: cannot be read (permission denied); make it readable "
                          "or give another file") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or exc}); give a readable YAML file") from None


def _yaml_message(label: str, text: str, exc: yaml.YAMLError) -> str:
    """`file:LINE: YAML syntax error: problem (context at line N)`, the line clipped to the file's last line."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{min(mark.line + 1, max(1, len(text.splitlines())))}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    problem = cut(problem)  # it may quote the text (an unknown tag), which may be 4 MiB long
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    extra = f" ({context} that starts at line {min(cmark.line + 1, max(1, len(text.splitlines())))})" \
        if context and cmark is not None else ""
    return f"{label}{where}: YAML syntax error: {problem}{extra}"


def config_from_dict(raw: dict[str, Any], label: str = "<config>", seed: int | None = None) -> Config:
    """Merge `raw` over the defaults, validate, and return a Config."""
    err = _errors(label)
    for key in raw:
        if key not in TOP_KEYS:
            err(_key(key), f"unknown key (known: {', '.join(TOP_KEYS)})")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        given = raw.get(name, {})
        if given is None:
            given = {}
        if not isinstance(given, dict):
            err(name, f"must be a mapping, got {_kind(given)}")
        known = [("from" if k == "checkpoint" else k) for k in cls.__dataclass_fields__ if k != "checkpoint_dir"]
        for key in given:
            if key not in known:
                err(f"{name}.{_key(key)}", f"unknown key (known: {', '.join(known)})")
        sections[name] = dict(given)

    cfg_seed = _integer(raw.get("seed", Config.seed), "seed", err, minimum=0)
    if seed is not None:
        cfg_seed = _integer(seed, "--seed", err, minimum=0)
    train_steps = _integer(raw.get("train_steps", Config.train_steps), "train_steps", err, minimum=0)
    data = _data(sections["data"], err)
    vocab_given = "vocab" in sections["model"] or "texts" not in sections["data"]
    if "from" in sections["model"]:
        model = _checkpoint_model(sections["model"], data, err, label)
    else:
        model = _model(sections["model"], data, err, vocab_given=vocab_given)
    optimizer = _optimizer(sections["optimizer"], err)
    return Config(seed=cfg_seed, model=model, data=data, optimizer=optimizer, train_steps=train_steps, source=label)


def _errors(label: str):
    def err(key: str, message: str):
        raise ConfigError(f"{label}: {key}: {message}")

    return err


def _words(words: list[str], most: int = 10) -> str:
    """`a, b, c`: the first `most` words (each as `_key` names it), then `and 1,234 more`."""
    shown = ", ".join(_key(w) for w in words[:most])
    return shown + (f" and {len(words) - most:,} more" if len(words) > most else "")


# What a page cannot show of config text: KaTeX refuses control characters, private-use characters and a combining
# mark with no letter before it (a lone surrogate is not even text), and a control character in HTML is invisible.
# Right-to-left text and bidi controls are fine: the pages isolate them (site_build.format.needs_isolation).
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]")
_WORD_START = re.compile(r"(?:^|(?<=\s))[^\x00-\x7f]")  # the first character of a word, when it is not ASCII


def _showable(text: str, key: str, err, whitespace: bool) -> None:
    """Refuse, naming the key and the position, a character of config text that no page can show (`whitespace`:
    a tab, newline or carriage return is allowed, as the space between words)."""
    for found in _UNSHOWABLE.finditer(text):
        ch = found.group()
        if whitespace and ch in "\t\n\r":
            continue
        what = {"Cs": "half of a UTF-16 surrogate pair, not a character",
                "Co": "a private-use character"}.get(unicodedata.category(ch), "a control character")
        err(key, f"character {found.start() + 1} is U+{ord(ch):04X} ({what}, which no page can show); remove it")
    for found in _WORD_START.finditer(text):
        ch = found.group()
        if unicodedata.category(ch).startswith("M"):
            name = unicodedata.name(ch, "a combining mark").lower()
            err(key, f"character {found.start() + 1} is U+{ord(ch):04X} ({name}) at the start of a word, a combining "
                "mark with no letter to mark, which no page can show; put it after its letter or remove it")


def _showable_words(words: list[str], key: str, err) -> None:
    """`_showable` for every word of a list (`key[i]`), in one pass over them all when none is refused (GPT-2's
    50,257 words: 20 ms, not 170)."""
    joined = " ".join(words)
    if _UNSHOWABLE.search(joined) or any(unicodedata.category(m.group()).startswith("M")
                                         for m in _WORD_START.finditer(joined)):
        for i, word in enumerate(words):
            _showable(word, f"{key}[{i}]", err, whitespace=False)


def _kind(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "a mapping", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _integer(value: Any, key: str, err, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        err(key, f"must be an integer, got {_kind(value)} {echo(value)}")
    if value < minimum:
        err(key, f"must be ≥ {minimum}, got {echo(value)}")
    return value


def _number(value: Any, key: str, err) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        err(key, f"must be a number, got {_kind(value)} {echo(value)}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:  # float() of it overflows
        try:
            digits = f"{len(str(abs(value)))}"
        except ValueError:  # more than Python writes out (4300 digits)
            digits = "thousands of"
        err(key, f"must be finite, got an integer of {digits} digits, beyond the largest float (1.8e308)")
    if not math.isfinite(value):
        err(key, f"must be finite, got {value}")
    return float(value)


def _data(given: dict[str, Any], err) -> DataConfig:
    texts = given.get("texts", list(DataConfig.texts))
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        err("data.texts", "must be a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            err(f"data.texts[{i}]", f"must be a string, got {_kind(t)}")
        if not t.split():
            err(f"data.texts[{i}]", "is empty; give at least one word")
        _showable(t, f"data.texts[{i}]", err, whitespace=True)
    return DataConfig(texts=tuple(texts))


def _model(given: dict[str, Any], data: DataConfig, err, vocab_given: bool) -> ModelConfig:
    d = ModelConfig()
    arch = _arch(given, err)
    sizes = {}
    for key in ("d_model", "n_heads", "d_ff", "n_layers", "n_positions"):
        sizes[key] = _integer(given.get(key, getattr(d, key)), f"model.{key}", err, minimum=1)
    if sizes["d_model"] < 2:
        err("model.d_model",
            f"must be ≥ 2 (a LayerNorm over one number always outputs its bias), got {sizes['d_model']}")
    if sizes["d_model"] % sizes["n_heads"]:
        err("model.n_heads", f"{echo(sizes['n_heads'])} does not divide d_model {echo(sizes['d_model'])}")
    init_std = _number(given.get("init_std", d.init_std), "model.init_std", err)
    if init_std <= 0:
        err("model.init_std", f"must be > 0, got {init_std}")

    vocab = given.get("vocab", list(DEFAULT_VOCAB) if vocab_given else None)
    words_in_order = [w for t in data.texts for w in t.split()]
    if vocab is None:
        vocab = list(SPECIAL_TOKENS) + list(dict.fromkeys(w for w in words_in_order if w not in SPECIAL_TOKENS))
    if not isinstance(vocab, list) or not all(isinstance(w, str) and w for w in vocab):
        err("model.vocab", "must be a list of non-empty strings")
    if "vocab" in given:
        _showable_words(vocab, "model.vocab", err)
    dupes = sorted(w for w, n in Counter(vocab).items() if n > 1)
    if dupes:
        err("model.vocab", f"duplicate words: {_words(dupes)}")
    for special in ("<pad>", "<bos>"):
        if special not in vocab:
            err("model.vocab", f"must contain {special}")
    known = set(vocab)
    missing = list(dict.fromkeys(w for w in words_in_order if w not in known))
    if missing:
        err("model.vocab", f"missing words used in data.texts: {_words(missing)} (add them to the vocab)")
    for i, t in enumerate(data.texts):
        n = len(t.split())
        if n > sizes["n_positions"]:
            err(f"data.texts[{i}]",
                f"has {n} words but model.n_positions is {echo(sizes['n_positions'])}; shorten it or raise "
                "n_positions")
    tie = given.get("tie_embeddings", d.tie_embeddings if arch == "gpt2" else False)
    if not isinstance(tie, bool):
        err("model.tie_embeddings", f"must be true or false, got {_kind(tie)} {echo(tie)}")
    llama = _llama(given, sizes, err) if arch == "llama" else {}
    return ModelConfig(vocab=tuple(vocab), init_std=init_std, tie_embeddings=tie, arch=arch, **sizes, **llama)


def _arch(given: dict[str, Any], err) -> str:
    """`model.arch`, and no llama-only key beside gpt2."""
    arch = given.get("arch", ModelConfig.arch)
    if arch not in ARCHS:
        err("model.arch", f"unknown architecture {echo(arch)} (choose one of: {', '.join(ARCHS)})")
    if arch == "gpt2":
        for key in LLAMA_KEYS:
            if key in given:
                err(f"model.{key}", "is a key of model.arch: llama, which GPT-2 does not have; remove it, or set "
                    "model.arch: llama")
    return arch


def _llama(given: dict[str, Any], sizes: dict[str, int], err) -> dict[str, Any]:
    """n_kv_heads, rope_theta and norm_eps of a llama config, checked against the sizes."""
    heads = sizes["n_heads"]
    if (sizes["d_model"] // heads) % 2:
        err("model.n_heads", f"gives heads of d_model / n_heads = {sizes['d_model'] // heads}, an odd size; rotary "
            "position embeddings turn pairs of dimensions, so a llama head needs an even size")
    kv = _integer(given.get("n_kv_heads", heads), "model.n_kv_heads", err, minimum=1)
    if heads % kv:
        err("model.n_kv_heads", f"{echo(kv)} does not divide n_heads {heads}: each key/value head serves the same "
            f"number of query heads (choose a divisor of {heads})")
    theta = _number(given.get("rope_theta", LLAMA_ROPE_THETA), "model.rope_theta", err)
    if theta <= 0:
        err("model.rope_theta", f"must be > 0 (the base of the rotary angles), got {theta}")
    eps = _number(given.get("norm_eps", LLAMA_NORM_EPS), "model.norm_eps", err)
    if eps <= 0:
        err("model.norm_eps", f"must be > 0 (it keeps RMSNorm from dividing by zero), got {eps}")
    return {"n_kv_heads": kv, "rope_theta": theta, "norm_eps": eps}


def _checkpoint_model(given: dict[str, Any], data: DataConfig, err, label: str) -> ModelConfig:
    """`model: {from: PATH}`: the architecture, sizes, vocabulary and weights from a Hugging Face checkpoint folder."""
    folder = given["from"]
    if not isinstance(folder, str) or not folder.strip():
        err("model.from", f"must be the path of a checkpoint folder, got {_kind(folder)} {echo(folder)}")
    for key in given:
        if key == "tie_embeddings":
            err("model.tie_embeddings", "is given beside model.from, whose config.json says whether the output layer "
                "is tied (tie_word_embeddings); remove it")
        if key in ("arch", *LLAMA_KEYS):
            err(f"model.{key}", "is given beside model.from, whose config.json says the architecture and its keys "
                "(model_type, num_key_value_heads, rope_theta, rms_norm_eps); remove it")
        if key != "from":
            err(f"model.{_key(key)}", "is given beside model.from, whose checkpoint sets the sizes, the vocabulary "
                "and the initial weights; remove it")
    path = Path(folder)
    if not path.is_absolute() and not path.exists() and Path(label).parent.joinpath(path).exists():
        path = Path(label).parent / path  # relative to the config file, when not to the current folder
    ck = checkpoint.load(path, label)
    for i, text in enumerate(data.texts):
        n = len(ck.encode(text))
        if n > ck.n_positions:
            err(f"data.texts[{i}]", f"is {n} tokens long but the checkpoint's n_positions is {ck.n_positions}; "
                "shorten it")
        if n == 0:
            err(f"data.texts[{i}]", "has no tokens; give some text")
    return ModelConfig(vocab=ck.vocab, d_model=ck.d_model, n_heads=ck.n_heads, d_ff=ck.d_ff, n_layers=ck.n_layers,
                       n_positions=ck.n_positions, tie_embeddings=ck.tie, checkpoint=folder,
                       checkpoint_dir=str(ck.folder), arch=ck.arch, n_kv_heads=ck.n_kv_heads,
                       rope_theta=ck.rope_theta, norm_eps=ck.norm_eps)


def _optimizer(given: dict[str, Any], err) -> OptimizerConfig:
    d = OptimizerConfig()
    name = given.get("name", d.name)
    if name not in OPTIMIZERS:
        err("optimizer.name", f"unknown optimizer {echo(name)} (choose one of: {', '.join(OPTIMIZERS)})")
    lr = _number(given.get("lr", d.lr), "optimizer.lr", err)
    if lr <= 0:
        err("optimizer.lr", f"must be > 0, got {lr}")
    betas = given.get("betas", list(d.betas))
    if not isinstance(betas, list) or len(betas) != 2:
        err("optimizer.betas", f"must be a list of two numbers, got {echo(betas)}")
    betas = tuple(_number(b, f"optimizer.betas[{i}]", err) for i, b in enumerate(betas))
    for i, b in enumerate(betas):
        if not 0 <= b < 1:
            err(f"optimizer.betas[{i}]", f"must be in [0, 1), got {b}")
    eps = _number(given.get("eps", d.eps), "optimizer.eps", err)
    if eps <= 0:
        err("optimizer.eps", f"must be > 0, got {eps}")
    wd = _number(given.get("weight_decay", d.weight_decay), "optimizer.weight_decay", err)
    if wd < 0:
        err("optimizer.weight_decay", f"must be ≥ 0, got {wd}")
    decay = given.get("decay", d.decay)
    if decay not in DECAY_RULES:
        err("optimizer.decay", f"must be one of: {', '.join(DECAY_RULES)}, got {echo(decay)}")
    momentum = _number(given.get("momentum", d.momentum), "optimizer.momentum", err)
    if momentum < 0:
        err("optimizer.momentum", f"must be ≥ 0, got {momentum}")
    return OptimizerConfig(name=name, lr=lr, betas=betas, eps=eps, weight_decay=wd, decay=decay, momentum=momentum)
